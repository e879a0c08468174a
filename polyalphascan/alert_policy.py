"""Which changes alert a sink, and how fast a sink may be sent to (pure; no I/O).

- `SinkFilter`: the opportunities a sink wants (kinds, guaranteed only, minimum net profit,
  minimum executable size).
- `AlertGate`: de-duplication. An opportunity alerts once, then not again until it went away
  (removed, or no longer profitable) and came back; dipping under a sink's own minimum while
  still profitable does not re-arm it (no alert storm around a threshold).
- `TokenBucket` and `backoff`: a sink's rate limit and the wait between failed attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from polyalphascan.opportunities import Change, Opportunity

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
