"""Opportunities as the change stream tells them, for the programs downstream of Redis (alert
delivery, opportunity history): pure logic, no I/O.

- `parse_change` turns one stream entry (`op`, `id`, `data`, `reason`) into a typed
  `Change`, or raises `MalformedChange` (the caller counts it and goes on).
- `Opportunity` is the part of a portfolio a trader acts on, read tolerantly across schema
  versions: net profit is `net_profit` when the data has it (schema 2: dollars net of fees at
  the executable size), else `profit` (schema 1: per share-set); the executable size is
  `max_profitable_size` or `size_at_profit`, whichever is present.
- `SinkFilter` and `AlertGate`: which changes raise an alert on one sink. An opportunity
  alerts once, then not again until it went away (removed, or no longer profitable) and came
  back.
- `LifeBook`: each opportunity's life (first seen, last seen, peak and final net profit, size,
  kind, why it ended) and `figures`: opportunities per hour by kind, lifetime and detection
  latency percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
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


# ------------------------------------------------------------------ alert filters and de-duplication


@dataclass(frozen=True, slots=True)
class SinkFilter:
    """Which opportunities a sink wants. Empty `kinds` = every kind."""

    kinds: frozenset[str] = frozenset()
    guaranteed_only: bool = True
    min_net_profit: float = 0.0
    min_size: float = 0.0

    def passes(self, o: Opportunity) -> bool:
        return (
            o.profitable
            and (not self.kinds or o.kind in self.kinds)
            and (o.guaranteed or not self.guaranteed_only)
            and o.net_profit >= self.min_net_profit
            and o.size >= self.min_size
        )


@dataclass(frozen=True, slots=True)
class Decision:
    send: bool
    alerted_add: str | None = None  # id to add to the sink's alerted set
    alerted_remove: str | None = None  # id to take out of it


NOTHING = Decision(False)


class AlertGate:
    """One sink's de-duplication: `alerted` holds the opportunities this sink has alerted that
    have not gone away since. An opportunity alerts when it passes the filter and is not in
    the set; it leaves the set when it is removed or stops being profitable (falling below the
    sink's own thresholds while still profitable does not re-arm it: no alert storm around a
    threshold). `decide` is pure given the set; `apply` updates it."""

    def __init__(self, flt: SinkFilter, alerted: Iterable[str] = ()) -> None:
        self.filter = flt
        self.alerted: set[str] = set(alerted)

    def decide(self, change: Change) -> Decision:
        cid = change.id
        if change.op == "remove" or change.opportunity is None or not change.opportunity.profitable:
            return Decision(False, alerted_remove=cid) if cid in self.alerted else NOTHING
        if cid in self.alerted or not self.filter.passes(change.opportunity):
            return NOTHING
        return Decision(True, alerted_add=cid)

    def apply(self, d: Decision) -> None:
        if d.alerted_add is not None:
            self.alerted.add(d.alerted_add)
        if d.alerted_remove is not None:
            self.alerted.discard(d.alerted_remove)


class TokenBucket:
    """A rate limit: `rate` sends per second, bursts of `burst`. Pure: the caller passes the
    clock and sleeps for what `wait` returns; `block_until` honours a server's Retry-After."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.at: float | None = None
        self.blocked_until = 0.0

    def wait(self, now: float) -> float:
        """Seconds to wait before the next send (0: send now, and a token is taken)."""
        if self.at is None:
            self.at = now
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if now < self.blocked_until:
            return self.blocked_until - now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def block_until(self, until: float) -> None:
        self.blocked_until = max(self.blocked_until, until)


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff before retry `attempt` (1-based), capped."""
    return min(cap, initial * (2 ** max(0, attempt - 1)))


# ------------------------------------------------------------------ opportunity history


@dataclass(slots=True)
class Life:
    """One opportunity's life: from the first profitable upsert to its end."""

    id: str
    kind: str
    guaranteed: bool
    first_ms: int  # stream time of the first profitable upsert
    last_ms: int  # stream time of the last upsert while alive
    detect_ms: int | None  # stream time − the exchange time of the price that made it (ms)
    first_net: float
    peak_net: float
    final_net: float
    size: float  # executable size at the last profitable upsert
    peak_size: float
    updates: int = 1
    end_ms: int | None = None
    end_reason: str | None = None

    @property
    def life_id(self) -> str:
        return f"{self.id}@{self.first_ms}"

    @property
    def lifetime_ms(self) -> int:
        return (self.end_ms if self.end_ms is not None else self.last_ms) - self.first_ms

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Life":
        d = orjson.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(slots=True)
class LifeStep:
    """What one change did to the book: a life opened or updated (`open`), or ended (`ended`)."""

    open: Life | None = None
    ended: Life | None = None
    closed_id: str | None = None  # the id whose open life went away (ended)


class LifeBook:
    """The open lives by opportunity id. `step` applies one change (in stream order)."""

    def __init__(self, open_lives: Iterable[Life] = ()) -> None:
        self.open: dict[str, Life] = {life.id: life for life in open_lives}

    def step(self, change: Change) -> LifeStep:
        life = self.open.get(change.id)
        o = change.opportunity
        if change.op == "remove" or o is None:
            if life is None:
                return LifeStep()
            return self._end(life, change.entry_ms, change.reason)
        if not o.profitable:
            if life is None:
                return LifeStep()
            return self._end(life, change.entry_ms, REPRICED_AWAY)
        if life is None:
            detect = change.entry_ms - o.updated_ms if o.updated_ms else None
            life = Life(o.id, o.kind, o.guaranteed, change.entry_ms, change.entry_ms,
                        detect if detect is not None and detect >= 0 else None,
                        o.net_profit, o.net_profit, o.net_profit, o.size, o.size)
            self.open[o.id] = life
            return LifeStep(open=life)
        life.last_ms = max(life.last_ms, change.entry_ms)
        life.final_net = o.net_profit
        life.peak_net = max(life.peak_net, o.net_profit)
        life.size = o.size
        life.peak_size = max(life.peak_size, o.size)
        life.updates += 1
        return LifeStep(open=life)

    def _end(self, life: Life, at_ms: int, reason: str) -> LifeStep:
        del self.open[life.id]
        life.end_ms = max(at_ms, life.first_ms)
        life.end_reason = reason
        return LifeStep(ended=life, closed_id=life.id)


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Figures:
    window_s: float
    started: int
    started_per_hour_by_kind: dict[str, float]
    ended: int
    ended_by_reason: dict[str, int]
    open: int
    lifetime_s_p50: float | None
    lifetime_s_p90: float | None
    detect_ms_p50: float | None
    detect_ms_p90: float | None
    detect_ms_p99: float | None
    computed_ms: int = 0
    by_kind: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(life: Life) -> str:
    return life.kind if life.guaranteed or life.kind == "llm" else f"{life.kind} (llm)"


def figures(ended: Iterable[Life], open_lives: Iterable[Life], now_ms: int, window_ms: int) -> Figures:
    """Live figures over the last `window_ms`: lives started in the window (ended or still open)
    per hour by kind, lifetimes of the lives that ended in the window, detection latency of the
    lives started in it."""
    since = now_ms - window_ms
    ended_in = [life for life in ended if life.end_ms is not None and life.end_ms >= since]
    open_list = list(open_lives)
    started = [life for life in ended_in if life.first_ms >= since] + [life for life in open_list if life.first_ms >= since]
    hours = window_ms / 3_600_000
    per_kind: dict[str, float] = {}
    for life in started:
        per_kind[_label(life)] = per_kind.get(_label(life), 0) + 1
    lifetimes = [life.lifetime_ms / 1000 for life in ended_in]
    detects = [float(life.detect_ms) for life in started if life.detect_ms is not None]
    reasons: dict[str, int] = {}
    for life in ended_in:
        reasons[life.end_reason or "?"] = reasons.get(life.end_reason or "?", 0) + 1
    by_kind: dict[str, dict[str, float | None]] = {}
    for kind in sorted({_label(life) for life in ended_in}):
        lt = [life.lifetime_ms / 1000 for life in ended_in if _label(life) == kind]
        by_kind[kind] = {"ended": len(lt), "lifetime_s_p50": _r(percentile(lt, 0.5)),
                         "lifetime_s_p90": _r(percentile(lt, 0.9))}
    return Figures(
        window_s=window_ms / 1000,
        started=len(started),
        started_per_hour_by_kind={k: round(v / hours, 2) for k, v in sorted(per_kind.items())},
        ended=len(ended_in),
        ended_by_reason=dict(sorted(reasons.items())),
        open=len(open_list),
        lifetime_s_p50=_r(percentile(lifetimes, 0.5)),
        lifetime_s_p90=_r(percentile(lifetimes, 0.9)),
        detect_ms_p50=_r(percentile(detects, 0.5)),
        detect_ms_p90=_r(percentile(detects, 0.9)),
        detect_ms_p99=_r(percentile(detects, 0.99)),
        computed_ms=now_ms,
        by_kind=by_kind,
    )


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def summary_rows(lives: Iterable[Life]) -> list[dict[str, Any]]:
    """One row per kind (plus 'all'): lives, how they ended ('open': not yet), lifetime p50/p90 of
    the ended ones, peak net p50/max, peak size p50."""
    groups: dict[str, list[Life]] = {}
    for life in lives:
        groups.setdefault(_label(life), []).append(life)
        groups.setdefault("all", []).append(life)
    rows = []
    for kind in sorted(groups, key=lambda k: (k == "all", k)):
        ls = groups[kind]
        lt = [life.lifetime_ms / 1000 for life in ls if life.end_ms is not None]  # open lives have no lifetime yet
        peaks = [life.peak_net for life in ls]
        reasons: dict[str, int] = {}
        for life in ls:
            reasons[life.end_reason or "open"] = reasons.get(life.end_reason or "open", 0) + 1
        rows.append({"kind": kind, "lives": len(ls), "lifetime_s_p50": _r(percentile(lt, 0.5)),
                     "lifetime_s_p90": _r(percentile(lt, 0.9)), "peak_net_p50": _r(percentile(peaks, 0.5)),
                     "peak_net_max": _r(max(peaks)), "size_p50": _r(percentile([life.peak_size for life in ls], 0.5)),
                     "end_reasons": dict(sorted(reasons.items()))})
    return rows


CSV_COLUMNS = ("id", "kind", "guaranteed", "first_ms", "last_ms", "end_ms", "lifetime_s", "end_reason",
               "first_net", "peak_net", "final_net", "size", "peak_size", "updates", "detect_ms")


def csv_row(life: Life) -> list[Any]:
    return [life.id, life.kind, int(life.guaranteed), life.first_ms, life.last_ms, life.end_ms,
            round(life.lifetime_ms / 1000, 3), life.end_reason or "open", life.first_net, life.peak_net,
            life.final_net, life.size, life.peak_size, life.updates, life.detect_ms]
