"""Per-item isolation for the flow's steps: a record that makes a step raise is counted,
logged and dropped, and the flow goes on (`guarded` for functions, `guarded_logic` for the
keyed steps' logic).

Bytewax ends the whole dataflow when a step raises, and Gamma serves the same record again
after a restart, so one malformed record would crash-loop the scanner. Every step built from
the domain functions runs through `guarded`: an exception becomes the step's fallback value
(for `group`, an empty group, so the event's covers are retracted as if it had closed),
counted as `rejected_<step>_<ExceptionType>` in the flow's "steps" metric group and logged at
most every 10 s per step and kind, with the record's id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from bytewax.operators import StatefulLogic

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


class StepErrors:
    """The error report of a keyed step that isolates its items itself (a batch logic): each
    exception is counted as `rejected_<step>_<ExceptionType>` and logged at most every 10 s
    per step and kind; the item is dropped and the rest of the batch goes on."""

    def __init__(self, step: str, metrics: MetricGroup, limited: RateLimitedLog | None = None) -> None:
        self.step = step
        self.metrics = metrics
        self.limited = limited or RateLimitedLog(log)

    def __call__(self, exc: Exception, callback: str = "on_batch") -> None:
        kind = type(exc).__name__
        self.metrics.inc(f"rejected_{self.step}_{kind}")
        self.limited.warning(f"{self.step}:{kind}", "step_item_dropped", step=self.step, kind=kind, callback=callback,
                             error=str(exc)[:200])


class GuardedLogic(StatefulLogic):
    """A keyed step's logic whose callbacks cannot end the flow: an exception in `on_item`,
    `on_notify` or `on_eof` emits nothing, keeps the key's state as it was, and is counted as
    `rejected_<step>_<ExceptionType>` (logged at most every 10 s per step and kind)."""

    def __init__(self, inner: StatefulLogic, step: str, metrics: MetricGroup, limited: RateLimitedLog) -> None:
        self.inner = inner
        self.report = StepErrors(step, metrics, limited)

    def _dropped(self, exc: Exception, what: str) -> tuple[list[Any], bool]:
        self.report(exc, what)
        return [], StatefulLogic.RETAIN

    def on_item(self, value: Any) -> tuple[Iterable[Any], bool]:
        try:
            return self.inner.on_item(value)
        except Exception as exc:  # noqa: BLE001
            return self._dropped(exc, "on_item")

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        try:
            return self.inner.on_notify()
        except Exception as exc:  # noqa: BLE001
            return self._dropped(exc, "on_notify")

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        try:
            return self.inner.on_eof()
        except Exception as exc:  # noqa: BLE001
            return self._dropped(exc, "on_eof")

    def notify_at(self) -> datetime | None:
        return self.inner.notify_at()

    def snapshot(self) -> Any:
        return self.inner.snapshot()


def guarded_logic(step: str, builder: Callable[[Any], StatefulLogic], metrics: MetricGroup | None
                  ) -> Callable[[Any], StatefulLogic]:
    """`builder` for `op.stateful`, each key's logic wrapped in `GuardedLogic` (as is, when no
    metric group is given)."""
    if metrics is None:
        return builder
    limited = RateLimitedLog(log)
    return lambda resume: GuardedLogic(builder(resume), step, metrics, limited)
