"""Per-item isolation for the flow's steps: a record that makes a step raise is counted,
logged and dropped, and the flow goes on.

Bytewax ends the whole dataflow when a step raises, and Gamma serves the same record again
after a restart, so one malformed record would crash-loop the scanner. Every step built from
the domain functions runs through `guarded`: an exception becomes the step's fallback value
(for `group`, an empty group, so the event's covers are retracted as if it had closed),
counted as `rejected_<step>_<ExceptionType>` in the flow's "steps" metric group and logged at
most every 10 s per step and kind, with the record's id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup

log = get_logger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


def guarded(step: str, fn: Callable[[In], Out], fallback: Callable[[In], Out], ident: Callable[[In], str],
            metrics: MetricGroup, limited: RateLimitedLog | None = None) -> Callable[[In], Out]:
    """`fn`, except that an exception on an item returns `fallback(item)` (counted, logged)."""
    throttle = limited or RateLimitedLog(log)

    def run(item: In) -> Out:
        try:
            return fn(item)
        except Exception as exc:  # noqa: BLE001 - the point: no record may end the flow
            kind = type(exc).__name__
            metrics.inc(f"rejected_{step}_{kind}")
            try:
                record = ident(item)
            except Exception:  # noqa: BLE001
                record = "?"
            throttle.warning(f"{step}:{kind}", "step_item_dropped", step=step, kind=kind, record=record,
                             error=str(exc)[:200])
            return fallback(item)

    return run
