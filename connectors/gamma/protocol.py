"""The Gamma wire format: event/market JSON parsed into typed records, defensively. Pure.

Real Gamma quirks handled: `outcomes`, `outcomePrices`, `clobTokenIds` are JSON-encoded
strings (sometimes real arrays); numbers come as strings; `negRiskAugmented` (event) and
`negRiskOther` (market) are undocumented but live, and decide exhaustiveness; v2 markets
(`version: "v2"`) take their asset ids from `positionIds` (a real array) even when legacy `clobTokenIds` is there;
missing optional fields. The execution terms (`parse_terms`: tick, minimum order, fee fields)
are read tolerantly: a missing or unreadable one takes the conservative value, never fails the
record. A record that cannot be parsed raises `GammaParseError` naming
the id, so the caller counts and skips it and keeps the rest of the page.

`GammaError` is the root of every Gamma failure (parse errors here; HTTP and retry failures in
`connectors.gamma.client`), so a caller can tell Gamma trouble from a bug with one `except`.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import orjson

from polyalphascan.records import Event, Market, MarketTerms


class GammaError(Exception):
    """Anything Gamma made impossible: an unreadable record, an HTTP error, a request given up."""


class GammaParseError(GammaError, ValueError):
    """One record (event or market) that cannot be read; `record_id` is its id as far as legible."""

    def __init__(self, record_id: str, reason: str) -> None:
        super().__init__(f"record {record_id or '?'}: {reason}")
        self.record_id = record_id
        self.reason = reason


def raw_event_id(raw: Any) -> int:
    """The numeric id of a raw listing record, or -1 when it has none (paging and the watermark
    compare ids before anything is parsed)."""
    try:
        return int(raw.get("id"))
    except (AttributeError, TypeError, ValueError):
        return -1


def decode_body(content: bytes) -> tuple[Any, bool]:
    """A response body as JSON, and whether it needed the tolerant decoder. orjson refuses a
    whole page for one lone surrogate escape ("\\ud800") in one title; the standard decoder
    accepts it (the text fields are cleaned at parse time), so one bad title never costs the
    page. Raises orjson's `JSONDecodeError` (a ValueError) when neither can read it."""
    try:
        return orjson.loads(content), False
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(content.decode(errors="replace")), True  # bytes.decode: UTF-8
        except ValueError:
            raise exc from None


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
    """A number, or None for anything that is not one (None and "" included)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _is_true(value: Any) -> bool:
    """Only an explicit true: `negRisk` claims exclusivity, so anything unclear claims none."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


#: The tick and the minimum order when Gamma does not give a usable one (every real record seen
#: has `orderMinSize` 5; the tick is 0.01 or 0.001).
DEFAULT_TICK, DEFAULT_MIN_SIZE = 0.01, 5.0
#: The taker fee rate assumed for a market that charges fees (`feesEnabled` true) without a
#: readable `feeSchedule`: the 1000 bps base fee real fee-charging records carry, above every
#: published category rate, so the edge is never overstated.
UNKNOWN_FEE_RATE = 0.10


def _finite(value: Any) -> float | None:
    """A finite number (JSON number or numeric string), else None (bool, NaN, inf, text)."""
    if isinstance(value, bool):
        return None
    v = _opt_num(value)
    return v if v is not None and v == v and abs(v) != float("inf") else None


def parse_terms(raw: dict[str, Any], neg_risk: bool, end_date: str | None) -> MarketTerms:
    """A market's execution terms from its Gamma record. Never raises: a bad tick is the default
    tick, a bad minimum the default minimum; a fee-charging market whose schedule cannot be read
    is charged `UNKNOWN_FEE_RATE` (a market is fee-free only when it says so, or says nothing
    about fees at all)."""
    tick = _finite(raw.get("orderPriceMinTickSize"))
    if tick is None or not 0.0 < tick <= 0.1:
        tick = DEFAULT_TICK
    min_size = _finite(raw.get("orderMinSize"))
    if min_size is None or min_size < 0:
        min_size = DEFAULT_MIN_SIZE
    enabled_raw = raw.get("feesEnabled")
    schedule = raw.get("feeSchedule")
    rate, exponent = 0.0, 1.0
    if isinstance(schedule, dict):
        r, e = _finite(schedule.get("rate")), _finite(schedule.get("exponent", 1))
        if r is not None and r >= 0 and e is not None and 0 < e <= 10:
            rate, exponent = r, e
        elif enabled_raw is not False:
            rate = UNKNOWN_FEE_RATE
    elif _is_true(enabled_raw) or enabled_raw is True:
        rate = UNKNOWN_FEE_RATE
    if enabled_raw is False or (isinstance(enabled_raw, str) and enabled_raw.strip().lower() == "false"):
        rate = 0.0
    return MarketTerms(
        tick=tick,
        min_size=min_size,
        fees_enabled=rate > 0,
        fee_rate=rate,
        fee_exponent=exponent,
        fee_type=_text(raw.get("feeType"), MAX_LABEL),
        taker_base_fee_bps=_finite(raw.get("takerBaseFee")) or 0.0,
        maker_base_fee_bps=_finite(raw.get("makerBaseFee")) or 0.0,
        neg_risk_fee_bps=_finite(raw.get("negRiskFeeBips")) or 0.0,
        neg_risk=neg_risk,
        end_date=end_date,
    )


_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits that fit a signed 64-bit integer
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters, lone surrogates
#: Longest texts kept (real ones are far shorter); a longer one is cut, never rejected.
MAX_TITLE, MAX_LABEL, MAX_DESCRIPTION = 300, 120, 4000


def _text(value: Any, cap: int) -> str:
    """Market text as data: a string (or number), control characters blanked, at most `cap` long."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return _CONTROL.sub(" ", str(value)[: cap * 2])[:cap].strip()


def _ident(value: Any) -> str:
    """A Gamma id ("16282", or the number 16282), or "" for anything else ("²", 5,000 digits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return ""
    value = value.strip()
    return value if _ID.fullmatch(value) else ""


def _opt_text(value: Any) -> str | None:
    """An optional text field (dates): anything but a non-empty string is absent."""
    return value if isinstance(value, str) and value else None


def parse_market(raw: dict[str, Any], event_id: str, event_neg_risk: bool = False) -> Market:
    if not isinstance(raw, dict):
        raise GammaParseError("", "market is not an object")
    mid = _ident(raw.get("id"))
    if not mid:
        raise GammaParseError(_text(raw.get("id"), 40), "market id missing or not a plain number")
    try:
        version = str(raw.get("version") or "").lower() or "v1"
        if version == "v2" and raw.get("positionIds") is not None:
            ids = [str(x) for x in decode_list(raw.get("positionIds"))]
        else:
            ids = [str(x) for x in decode_list(raw.get("clobTokenIds"))]
        prices = decode_list(raw.get("outcomePrices"))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise GammaParseError(mid, f"bad list field: {exc}") from None
    if len(ids) != 2 or not all(ids):
        raise GammaParseError(mid, f"expected 2 asset ids, got {len(ids)}")
    question = _text(raw.get("question"), MAX_TITLE)
    if not question:
        raise GammaParseError(mid, "market without question")
    try:
        neg_risk = _is_true(raw.get("negRisk")) if "negRisk" in raw else event_neg_risk
        end_date = _opt_text(raw.get("endDate"))
        return Market(
            id=mid,
            event_id=event_id,
            question=question,
            slug=_text(raw.get("slug"), MAX_TITLE),
            condition_id=_text(raw.get("conditionId"), MAX_LABEL),
            yes_token=ids[0],
            no_token=ids[1],
            group_item_title=_text(raw.get("groupItemTitle"), MAX_LABEL),
            group_item_threshold=_text(raw.get("groupItemThreshold"), MAX_LABEL) or None,
            description=_text(raw.get("description"), MAX_DESCRIPTION),
            end_date=end_date,
            created_at=_opt_text(raw.get("createdAt")),
            active=_bool(raw.get("active"), True),
            closed=_bool(raw.get("closed"), False),
            neg_risk=neg_risk,
            neg_risk_other=_bool(raw.get("negRiskOther"), False),
            neg_risk_market_id=_text(raw.get("negRiskMarketID"), MAX_LABEL),
            liquidity=_num(raw.get("liquidityNum", raw.get("liquidity"))),
            volume=_num(raw.get("volumeNum", raw.get("volume"))),
            yes_price=_opt_num(prices[0]) if len(prices) > 0 else None,
            no_price=_opt_num(prices[1]) if len(prices) > 1 else None,
            version=version,
            terms=parse_terms(raw, neg_risk, end_date),
        )
    except (TypeError, ValueError) as exc:
        raise GammaParseError(mid, f"bad field: {exc}") from None


def parse_event(raw: dict[str, Any]) -> Event:
    """A Gamma event with its markets. Markets that fail to parse fail the event (so it is
    retried whole on the next poll rather than half-registered)."""
    if not isinstance(raw, dict):
        raise GammaParseError("", "event is not an object")
    eid = _ident(raw.get("id"))
    if not eid:
        raise GammaParseError(_text(raw.get("id"), 40), "event id missing or not a plain number")
    title = _text(raw.get("title"), MAX_TITLE)
    if not title:
        raise GammaParseError(eid, "event without title")
    markets_raw = raw.get("markets") or []
    if not isinstance(markets_raw, list):
        raise GammaParseError(eid, "markets is not a list")
    neg_risk = _is_true(raw.get("negRisk"))
    markets = tuple(parse_market(m, eid, neg_risk) for m in markets_raw)
    nr_fee = _finite(raw.get("negRiskFeeBips"))  # an event field: its markets' conversion fee
    if nr_fee:
        markets = tuple(m if m.terms.neg_risk_fee_bps else
                        replace(m, terms=replace(m.terms, neg_risk_fee_bps=nr_fee)) for m in markets)
    tags_raw = raw.get("tags")
    tags = tuple(_text(t.get("slug"), MAX_LABEL) for t in tags_raw if isinstance(t, dict)) \
        if isinstance(tags_raw, list) else ()
    return Event(
        id=eid,
        slug=_text(raw.get("slug"), MAX_TITLE),
        title=title,
        description=_text(raw.get("description"), MAX_DESCRIPTION),
        end_date=_opt_text(raw.get("endDate")),
        created_at=_opt_text(raw.get("createdAt")),
        updated_at=_opt_text(raw.get("updatedAt")),
        neg_risk=neg_risk,
        neg_risk_augmented=raw.get("negRiskAugmented") not in (None, False, "false", "False"),
        active=_bool(raw.get("active"), True),
        closed=_bool(raw.get("closed"), False),
        tags=tags,
        markets=markets,
    )
