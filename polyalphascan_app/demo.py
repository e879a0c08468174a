"""The demo: stand-ins + embedded Redis + the flow, printing live opportunities.

Everything runs on loopback in this process: a generated market universe served by the
Gamma, CLOB WebSocket and OpenAI-compatible stand-ins, an embedded redis-server, the
scanner flow, a market-activity driver (new events, new markets, closures) and a printer
that tails the portfolio change stream.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import orjson
import redis
from rich.console import Console
from rich.markup import escape

from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from flows.scanner import build_flow
from flows.runtime import run_flow, start_runtime
from polyalphascan.logs import get_logger
from polyalphascan.settings import Settings, load_settings
from polyalphascan_app.history import figures_line, read_figures, read_lives, summary_table
from polyalphascan_app.top_table import render_table, top_portfolios
from standins.launcher import MarketActivity, StandIns

log = get_logger(__name__)


class OpportunityPrinter:
    """Tails the change stream; prints opportunities appearing, repriced and going away."""

    def __init__(self, redis_url: str, prefix: str, console: Console, stop: threading.Event, *,
                 table_every: float = 15.0) -> None:
        self.stop = stop
        self.client = redis.Redis.from_url(redis_url)
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.console = console
        self.table_every = table_every
        self.known: dict[str, float] = {}  # profitable portfolio id -> last profit printed
        self._thread = threading.Thread(target=self._run, name="demo-printer", daemon=True)

    def start(self) -> "OpportunityPrinter":
        self._thread.start()
        return self

    def _line(self, tag: str, style: str, data: dict[str, Any]) -> None:
        legs = " + ".join(f"{leg['side']} {escape(str(leg.get('question') or leg['market_id'])[:50])}"
                          for leg in data["legs"][:2])  # market text is data, never rich markup
        more = f" (+{len(data['legs']) - 2} legs)" if len(data["legs"]) > 2 else ""
        self.console.print(
            f"[{style}]{tag:<9}[/] {escape(str(data['kind'])):<9} cost {data['cost']:.3f} payout {data['payout']:.0f} "
            f"profit {data['profit']:+.3f} ({data['profit_pct']:+.1f}%) size {data['size_at_profit']:.0f}  {legs}{more}"
        )

    def _run(self) -> None:
        last_id = "0-0"
        last_table = time.monotonic()
        while not self.stop.is_set():
            try:
                resp = self.client.xread({self.keys.changes: last_id}, count=500, block=500)
            except redis.RedisError:
                time.sleep(0.5)
                continue
            for _stream, entries in resp or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    cid = fields[b"id"].decode()
                    if fields[b"op"] == b"remove":
                        if self.known.pop(cid, None) is not None:
                            self.console.print(f"[yellow]GONE     [/] {escape(cid)} "
                                               f"({escape(fields.get(b'reason', b'').decode())})")
                        continue
                    data = orjson.loads(fields[b"data"])
                    if data["profit"] > 1e-9:
                        if cid not in self.known:
                            self._line("NEW", "bold green", data)
                        elif abs(self.known[cid] - data["profit"]) > 1e-9:
                            self._line("REPRICED", "cyan", data)
                        self.known[cid] = data["profit"]
                    elif self.known.pop(cid, None) is not None:
                        self._line("CLOSED", "yellow", data)
            if time.monotonic() - last_table > self.table_every:
                last_table = time.monotonic()
                try:
                    total = self.client.zcard(self.keys.ranking)
                    rows = top_portfolios(self.client, self.prefix, 10, profitable_only=True)
                except redis.RedisError:
                    continue
                self.console.print(render_table(rows, title=f"top opportunities — {total} portfolios priced live"))
                line = figures_line(read_figures(self.client, self.prefix))  # issue 18: live history figures
                if line:
                    self.console.print(f"[bold]{escape(line)}[/]", soft_wrap=True)


def run_demo(settings: Settings, *, events: int, seed: int, duration: float) -> None:
    console = Console() if sys.stdout.isatty() else Console(width=170)
    with EmbeddedRedis() as redis_server, StandIns(seed=seed, n_events=events, clob_rate=100.0) as standins:
        overrides: dict[str, Any] = settings.model_dump()
        overrides.update(standins.settings_overrides())
        overrides.update(redis_url=redis_server.url, poll_interval_seconds=2.0, full_reconcile_every=3,
                         snapshot_interval_seconds=1)
        demo_settings = load_settings(**overrides)
        summary = standins.universe.summary()
        console.print(f"[bold]polyalphascan demo[/] — universe seed {seed}: {summary}")
        console.print(f"stand-ins: {standins.urls()}  redis: {redis_server.url}", soft_wrap=True)
        console.print(
            f"watch from another terminal: polyalphascan top --redis-url {redis_server.url}   |   "
            f"polyalphascan monitor --redis-url {redis_server.url}"
        )
        runtime = start_runtime(demo_settings)
        scope = runtime.scope
        OpportunityPrinter(redis_server.url, demo_settings.redis_key_prefix, console, scope.stop).start()
        activity = MarketActivity(standins, interval=4.0, seed=seed).start()
        if duration > 0:
            threading.Timer(duration, scope.request_stop, args=("demo duration reached",)).start()
        try:
            run_flow(build_flow(demo_settings, redis_server.url, scope=scope), runtime)
        finally:
            scope.stop.set()
            activity.stop()
            client = redis.Redis.from_url(redis_server.url)
            keys = RedisKeys(demo_settings.redis_key_prefix)
            truth = standins.universe.ground_truth()
            riskless = sum(1 for cid in truth.profitable if truth.covers[cid].guaranteed)
            console.print(
                f"[bold]stopped[/]: {client.zcard(keys.ranking)} portfolios live, "
                f"{client.zcard(keys.opportunities)} guaranteed opportunities + {client.zcard(keys.llm_opportunities)} "
                f"LLM ones; universe ground truth has {riskless} + {len(truth.profitable) - riskless}"
            )
            lives = read_lives(client, demo_settings.redis_key_prefix)  # issue 18: the opportunity history
            console.print(summary_table(lives, f"opportunity history: {len(lives)} lives"))
            line = figures_line(read_figures(client, demo_settings.redis_key_prefix))
            if line:
                console.print(escape(line), soft_wrap=True)
