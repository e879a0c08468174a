"""Change stream entries shaped like the portfolio sink's (schema 1, and schema 2's extra fields),
for the tests of the stream's consumers (alerts, history)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis


def portfolio(cid: str, *, kind: str = "all_no", guaranteed: bool = True, profit: float = 0.05,
              size: float = 40.0, net_profit: float | None = None, updated_ms: int | None = None,
              question: str = "Will Alice win?", slug: str | None = None) -> dict[str, Any]:
    legs = [
        {"market_id": "m1", "side": "NO", "token_id": "t1", "ask": 0.40, "ask_size": size,
         "question": question, "event_id": "e1"},
        {"market_id": "m2", "side": "NO", "token_id": "t2", "ask": 0.55, "ask_size": size * 2,
         "question": "Will Bob win?", "event_id": "e1"},
    ]
    if slug:
        for leg in legs:
            leg["event_slug"] = slug
    data: dict[str, Any] = {
        "id": cid, "kind": kind, "guaranteed": guaranteed, "legs": legs, "cost": 0.95, "payout": 1.0,
        "profit": profit, "profit_pct": profit / 0.95 * 100, "coverage": 1.0, "loss_probability": 0.0,
        "expected_profit": profit, "tier": 1, "size_at_profit": size,
        "updated_ms": updated_ms if updated_ms is not None else int(time.time() * 1000) - 50,
        "explanation": "rule all_no",
    }
    if net_profit is not None:  # schema 2 (issue 16): dollars net of fees at the executable size
        data["net_profit"] = net_profit
        for leg in legs:
            leg["shares"], leg["limit"] = size, leg["ask"]
    return data


def upsert(client: redis.Redis, stream: str, cid: str, **kw: Any) -> str:
    return client.xadd(stream, {"op": "upsert", "id": cid, "data": orjson.dumps(portfolio(cid, **kw))}).decode()


def remove(client: redis.Redis, stream: str, cid: str, reason: str = "market_closed") -> str:
    return client.xadd(stream, {"op": "remove", "id": cid, "data": "", "reason": reason}).decode()
