"""The CLI's read-side commands against a real Redis holding portfolios and metrics."""

from __future__ import annotations

import orjson
import redis
from typer.testing import CliRunner

from connectors.redis.portfolio_sink import PortfolioWriter
from connectors.redis.metrics_writer import MetricsWriter
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from polyalphascan_app.cli import app
from polyalphascan.metrics import MetricsRegistry
from tests.test_portfolio_sink import make_change


def test_top_once_and_monitor(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, RedisKeys("pas"))
    good, meh = make_change("1", "2", 0.40, 0.55, 1), make_change("3", "4", 0.50, 0.53, 1)
    writer.write_now({good.quote.cover_id: good, meh.quote.cover_id: meh})
    writer.close()
    registry = MetricsRegistry()
    registry.group("ws").set("connections", 7)
    MetricsWriter(redis_server.url, "pas", registry).write_once()
    runner = CliRunner()
    top = runner.invoke(app, ["top", "--once", "--redis-url", redis_server.url])
    assert top.exit_code == 0, top.output
    assert "Q1?" in top.output and "+0.050" in top.output and "-0.030" in top.output
    only = runner.invoke(app, ["top", "--once", "--profitable", "--redis-url", redis_server.url])
    assert "Q1?" in only.output and "Q3?" not in only.output
    mon = runner.invoke(app, ["monitor", "--redis-url", redis_server.url])
    report = orjson.loads(mon.output)
    assert report["pipeline"]["portfolios_found"] == 2 and report["pipeline"]["websocket_connections"] >= 7


def test_read_commands_need_a_real_redis_url() -> None:
    result = CliRunner().invoke(app, ["monitor"])
    assert result.exit_code == 2 and "pass --redis-url" in result.output
    down = CliRunner().invoke(app, ["monitor", "--redis-url", "redis://127.0.0.1:1/0"])
    assert down.exit_code == 2 and "cannot read Redis" in down.output


def test_market_text_is_printed_as_data_never_as_markup() -> None:
    """A question holding rich markup ("[/bold]", "[red]") used to crash `top` and the demo."""
    import io

    from rich.console import Console

    from polyalphascan_app.top_table import render_table

    hostile = "Will X [/bold] happen [red]by[/red] June? [link=http://x]y[/link]"
    row = {"kind": "timeframe", "guaranteed": True, "cost": 0.97, "payout": 1.0, "profit": 0.03, "profit_pct": 3.09,
           "coverage": 1.0, "tier": 1, "size_at_profit": 10, "updated_ms": 0,
           "legs": [{"side": "YES", "question": hostile, "market_id": "1", "ask": 0.5}]}
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(render_table([row], now_ms=0))
    assert hostile[:48] in out.getvalue()


def test_top_table_shows_size_net_profit_and_annualised_return() -> None:
    import io

    from rich.console import Console

    from polyalphascan_app.top_table import render_table

    row = {"kind": "all_no", "guaranteed": True, "cost": 1.95, "payout": 2.0, "profit": 0.05, "profit_pct": 2.56,
           "coverage": 1.0, "tier": 1, "size_at_profit": 80.5, "net_profit": 8.2, "annualised": 0.6834,
           "updated_ms": 0, "legs": [{"side": "NO", "question": "A?", "market_id": "1", "ask": 0.7}]}
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(render_table([row, {**row, "annualised": None}], now_ms=0))
    text = out.getvalue()
    assert "size at profit" in text and "net profit $" in text and "annualised" in text
    assert "80.50" in text and "+8.20" in text and "+68.3%" in text and "—" in text
