"""Health of the background threads of the Redis layer (write-behind writers, metrics writer).

A thread is *healthy* while it runs, and after it stopped because it was asked to
(`close`/`stop`); it is unhealthy once it stopped on an uncaught exception (its work is no
longer written). Each owner reports its own `thread_health()` and keeps a `<name>_alive`
gauge (1/0) in its metric group, so the state reaches the metrics hash in Redis and the
monitoring JSON's `health` section (no process-wide registry: two flows in one process
report apart).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

from polyalphascan.logs import get_logger
from polyalphascan.metrics import MetricGroup

log = get_logger(__name__)


def alive_gauge(name: str) -> str:
    """`portfolio-writer` -> `portfolio_writer_alive`."""
    return name.replace("-", "_").replace(".", "_") + "_alive"


class MonitoredThread:
    """A daemon thread that reports its health: `alive`, `healthy` (False once it died of an
    uncaught exception, whose text is `error`), and the `<name>_alive` gauge (1 running, 0
    died) in `metrics`. A 0 left by an earlier thread of the same name stays 0, so a new
    sibling cannot hide a death. `on_death` runs after a death is recorded."""

    def __init__(self, name: str, target: Callable[[], None], metrics: MetricGroup, *, event: str,
                 on_death: Callable[[], None] = lambda: None) -> None:
        self.name = name
        self.metrics = metrics
        self.gauge = alive_gauge(name)
        self.error: str | None = None
        self._target, self._event, self._on_death = target, event, on_death
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        if self.metrics.get(self.gauge, None) != 0:
            self.metrics.set(self.gauge, 1)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        return self.error is None

    def report(self) -> dict[str, object]:
        return {"name": self.name, "alive": self.alive, "healthy": self.healthy, "error": self.error}

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # noqa: BLE001 - whatever it was, say so and show it
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            self.metrics.set(self.gauge, 0)
            log.error(self._event, thread=self.name, error=self.error,
                      traceback="".join(traceback.format_exception(exc))[-4000:])
            self._on_death()
