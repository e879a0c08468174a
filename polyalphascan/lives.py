"""Each opportunity's life and the live figures over them (pure; no I/O).

- `LifeBook`: from the change stream, each opportunity's life — first seen, last seen, peak
  and final net profit, size, kind, and why it ended (repriced away, market closed, filtered,
  crossed book).
- `figures`: opportunities per hour by kind, median and p90 lifetime, detection latency
  percentiles; `summary_rows` and `csv_row` for `polyalphascan history`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from polyalphascan.opportunities import REPRICED_AWAY, Change

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
