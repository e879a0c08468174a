"""Opportunities as the change stream tells them, for the programs downstream of Redis (alert
delivery, opportunity history): pure logic, no I/O.

- `parse_change` turns one stream entry (`op`, `id`, `data`, `reason`) into a typed
  `Change`, or raises `MalformedChange` (the caller counts it and goes on).
- `Opportunity` is the part of a portfolio a trader acts on, read tolerantly across schema
  versions: net profit is `net_profit` when the data has it (schema 2: dollars net of fees at
  the executable size), else `profit` (schema 1: per share-set); the executable size is
  `max_profitable_size` or `size_at_profit`, whichever is present.

Who reads them: `polyalphascan.alert_policy` (which changes alert a sink) and
`polyalphascan.lives` (each opportunity's life and the live figures).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

#: below this a profit is zero (the sink's own threshold)
PROFIT_EPS = 1e-9
#: the remove reasons the sink writes; anything else is kept as given, bounded
REMOVE_REASONS = ("market_closed", "filtered", "crossed_book")
#: why a life ended: one of REMOVE_REASONS, or the price moved the profit away
REPRICED_AWAY = "repriced_away"
MAX_ID = 256
MAX_DATA = 1_000_000


class MalformedChange(ValueError):
    """A stream entry that is not a change the sink writes; `kind` names what was wrong."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Leg:
    side: str
    market_id: str
    token_id: str
    question: str
    ask: float
    shares: float | None = None
    limit: float | None = None
    slug: str | None = None  # event slug when the data carries one (a link to polymarket.com)


@dataclass(frozen=True, slots=True)
class Opportunity:
    id: str
    kind: str
    guaranteed: bool
    net_profit: float
    size: float
    cost: float
    payout: float
    updated_ms: int
    legs: tuple[Leg, ...]
    net_is_total: bool  # True: net_profit is dollars at `size` (schema 2); False: per share-set

    @property
    def profitable(self) -> bool:
        return self.net_profit > PROFIT_EPS


@dataclass(frozen=True, slots=True)
class Change:
    entry_id: str
    entry_ms: int  # the stream entry's time (Redis clock, ms)
    op: Literal["upsert", "remove"]
    id: str
    opportunity: Opportunity | None  # upserts only
    reason: str  # removes only ("" on upserts)


def entry_ms(entry_id: str) -> int:
    """The millisecond part of a stream entry id ('1700000000000-3' -> 1700000000000)."""
    head, _, _ = entry_id.partition("-")
    if not head.isdigit() or len(head) > 16:
        raise MalformedChange("bad_entry_id", entry_id[:40])
    return int(head)


def _text(fields: Mapping[Any, Any], name: str) -> str | None:
    raw = fields.get(name)
    if raw is None:
        raw = fields.get(name.encode())
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise MalformedChange("bad_encoding", name) from None
    return str(raw)


def _number(d: Mapping[str, Any], *names: str, default: float | None = None) -> float:
    for name in names:
        v = d.get(name)
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    if default is None:
        raise MalformedChange("missing_number", "/".join(names))
    return default


def _opt(d: Mapping[str, Any], name: str) -> float | None:
    v = d.get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _leg(raw: Any) -> Leg:
    if not isinstance(raw, dict):
        raise MalformedChange("bad_leg")
    slug = raw.get("event_slug") or raw.get("slug")
    return Leg(
        side=str(raw.get("side", ""))[:8],
        market_id=str(raw.get("market_id", ""))[:MAX_ID],
        token_id=str(raw.get("token_id", ""))[:MAX_ID],
        question=str(raw.get("question") or "")[:1000],
        ask=_number(raw, "ask", default=float("nan")),
        shares=_opt(raw, "shares"),
        limit=_opt(raw, "limit"),
        slug=str(slug)[:MAX_ID] if isinstance(slug, str) and slug else None,
    )


def opportunity_from_data(cover_id: str, data: Mapping[str, Any]) -> Opportunity:
    """The trader's view of a portfolio JSON (any schema version; see the module docstring)."""
    legs = data.get("legs")
    if not isinstance(legs, list) or not legs:
        raise MalformedChange("no_legs")
    net_is_total = isinstance(data.get("net_profit"), (int, float)) and not isinstance(data.get("net_profit"), bool)
    updated = data.get("updated_ms")
    return Opportunity(
        id=cover_id,
        kind=str(data.get("kind", "?"))[:32],
        guaranteed=data.get("guaranteed") is True,
        net_profit=_number(data, "net_profit", "profit"),
        size=_number(data, "max_profitable_size", "size_at_profit", default=0.0),
        cost=_number(data, "cost"),
        payout=_number(data, "payout", default=0.0),
        updated_ms=int(updated) if isinstance(updated, (int, float)) and not isinstance(updated, bool)
        and 0 <= updated < 2**53 else 0,
        legs=tuple(_leg(raw) for raw in legs[:50]),
        net_is_total=net_is_total,
    )


def parse_change(entry_id: str | bytes, fields: Mapping[Any, Any]) -> Change:
    """One entry of the change stream as written by the portfolio sink."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms = entry_ms(eid)
    op = _text(fields, "op")
    cid = _text(fields, "id")
    if not cid or len(cid) > MAX_ID:
        raise MalformedChange("bad_id")
    if op == "remove":
        reason = (_text(fields, "reason") or "unknown")[:64]
        return Change(eid, ms, "remove", cid, None, reason)
    if op != "upsert":
        raise MalformedChange("bad_op", str(op)[:20])
    raw = fields.get("data", fields.get(b"data"))
    if not raw or len(raw) > MAX_DATA:
        raise MalformedChange("bad_data", "empty or too large")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedChange("bad_json") from None
    if not isinstance(data, dict):
        raise MalformedChange("bad_json", "not an object")
    return Change(eid, ms, "upsert", cid, opportunity_from_data(cid, data), "")
