"""Parse Gamma event/market JSON into typed records, defensively.

Real Gamma quirks handled: `outcomes`, `outcomePrices`, `clobTokenIds` are JSON-encoded
strings (sometimes real arrays); numbers come as strings; v2 markets (`version: "v2"`) take
their asset ids from `positionIds` (a real array) even when legacy `clobTokenIds` is there;
missing optional fields. A record that cannot be parsed raises `GammaParseError` naming
the id, so the caller counts and skips it and keeps the rest of the page.
"""

from __future__ import annotations

from typing import Any

import orjson

from polyalphascan.records import Event, Market


class GammaParseError(ValueError):
    def __init__(self, record_id: str, reason: str) -> None:
        super().__init__(f"record {record_id or '?'}: {reason}")
        self.record_id = record_id
        self.reason = reason


def decode_list(value: Any) -> list[Any]:
    """A list given either as a real array or as a JSON-encoded string."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        decoded = orjson.loads(value)
        if isinstance(decoded, list):
            return decoded
    raise ValueError(f"not a list: {str(value)[:40]!r}")


def _num(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    return float(value)


def _opt_num(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def parse_market(raw: dict[str, Any], event_id: str, event_neg_risk: bool = False) -> Market:
    mid = _str(raw.get("id"))
    if not isinstance(raw, dict) or not mid:
        raise GammaParseError(mid, "market without id")
    try:
        version = _str(raw.get("version") or "v1").lower()
        if version == "v2" and raw.get("positionIds") is not None:
            ids = [str(x) for x in decode_list(raw.get("positionIds"))]
        else:
            ids = [str(x) for x in decode_list(raw.get("clobTokenIds"))]
        prices = decode_list(raw.get("outcomePrices"))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise GammaParseError(mid, f"bad list field: {exc}") from None
    if len(ids) != 2 or not all(ids):
        raise GammaParseError(mid, f"expected 2 asset ids, got {len(ids)}")
    question = _str(raw.get("question"))
    if not question:
        raise GammaParseError(mid, "market without question")
    try:
        return Market(
            id=mid,
            event_id=event_id,
            question=question,
            slug=_str(raw.get("slug")),
            condition_id=_str(raw.get("conditionId")),
            yes_token=ids[0],
            no_token=ids[1],
            group_item_title=_str(raw.get("groupItemTitle")).strip(),
            group_item_threshold=_str(raw.get("groupItemThreshold")) or None,
            description=_str(raw.get("description")),
            end_date=raw.get("endDate") or None,
            created_at=raw.get("createdAt") or None,
            active=_bool(raw.get("active"), True),
            closed=_bool(raw.get("closed"), False),
            neg_risk=_bool(raw.get("negRisk"), event_neg_risk),
            liquidity=_num(raw.get("liquidityNum", raw.get("liquidity"))),
            volume=_num(raw.get("volumeNum", raw.get("volume"))),
            yes_price=_opt_num(prices[0]) if len(prices) > 0 else None,
            no_price=_opt_num(prices[1]) if len(prices) > 1 else None,
            version=version,
        )
    except (TypeError, ValueError) as exc:
        raise GammaParseError(mid, f"bad field: {exc}") from None


def parse_event(raw: dict[str, Any]) -> Event:
    """A Gamma event with its markets. Markets that fail to parse fail the event (so it is
    retried whole on the next poll rather than half-registered)."""
    if not isinstance(raw, dict):
        raise GammaParseError("", "event is not an object")
    eid = _str(raw.get("id"))
    if not eid or not eid.strip().isdigit():
        raise GammaParseError(eid, "event id missing or not numeric")
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        raise GammaParseError(eid, "event without title")
    markets_raw = raw.get("markets") or []
    if not isinstance(markets_raw, list):
        raise GammaParseError(eid, "markets is not a list")
    neg_risk = _bool(raw.get("negRisk"), False)
    markets = tuple(parse_market(m, eid, neg_risk) for m in markets_raw)
    tags = tuple(_str(t.get("slug")) for t in (raw.get("tags") or []) if isinstance(t, dict))
    return Event(
        id=eid,
        slug=_str(raw.get("slug")),
        title=title.strip(),
        description=_str(raw.get("description")),
        end_date=raw.get("endDate") or None,
        created_at=raw.get("createdAt") or None,
        updated_at=raw.get("updatedAt") or None,
        neg_risk=neg_risk,
        active=_bool(raw.get("active"), True),
        closed=_bool(raw.get("closed"), False),
        tags=tags,
        markets=markets,
    )
