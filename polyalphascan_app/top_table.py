"""The live terminal table of the best portfolios (`polyalphascan top`, and the demo)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis
from rich.markup import escape
from rich.table import Table

from connectors.redis.layout import RedisKeys


def top_portfolios(client: redis.Redis, prefix: str, n: int = 20, *, profitable_only: bool = False) -> list[dict[str, Any]]:
    """The `n` best portfolios: by net profit among opportunities, else by expected profit."""
    keys = RedisKeys(prefix)
    zkey = keys.opportunities if profitable_only else keys.ranking
    ids = client.zrevrange(zkey, 0, n - 1)
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for cid in ids:
        pipe.hget(keys.portfolio(cid.decode()), "data")
    return [orjson.loads(raw) for raw in pipe.execute() if raw]


def _legs(p: dict[str, Any]) -> str:
    parts = []
    for leg in p["legs"][:3]:
        q = str(leg.get("question") or leg["market_id"])
        parts.append(f"{leg['side']} {escape(q[:48])} @ {leg['ask']:.3f}")  # market text is data, not markup
    if len(p["legs"]) > 3:
        parts.append(f"… +{len(p['legs']) - 3} legs")
    return "\n".join(parts)


def render_table(portfolios: list[dict[str, Any]], *, now_ms: int | None = None, title: str = "") -> Table:
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    table = Table(title=title or "polyalphascan — top portfolios", expand=True)
    for col, kw in (
        ("kind", {}), ("legs (side, question, ask)", {"ratio": 1}), ("cost", {"justify": "right"}),
        ("payout", {"justify": "right"}), ("profit", {"justify": "right"}), ("profit %", {"justify": "right"}),
        ("coverage", {"justify": "right"}), ("tier", {"justify": "right"}), ("size at profit", {"justify": "right"}),
        ("net profit $", {"justify": "right"}), ("annualised", {"justify": "right"}), ("age", {"justify": "right"}),
    ):
        table.add_column(col, **kw)
    for p in portfolios:
        profit = p["profit"]
        style = "bold green" if profit > 1e-9 else None
        age_s = max(0.0, (now_ms - int(p.get("updated_ms") or now_ms)) / 1000)
        table.add_row(
            p["kind"] + ("" if p["guaranteed"] else " (llm)"),
            _legs(p),
            f"{p['cost']:.3f}",
            f"{p['payout']:.2f}",
            f"{profit:+.3f}",
            f"{p['profit_pct']:+.2f}",
            f"{p['coverage']:.3f}",
            str(p["tier"]),
            f"{p['size_at_profit']:.2f}",
            f"{p.get('net_profit') or 0.0:+.2f}",
            f"{ann * 100:+.1f}%" if (ann := p.get("annualised")) is not None else "—",
            f"{age_s:.0f}s",
            style=style,
        )
    return table
