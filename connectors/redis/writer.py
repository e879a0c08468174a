"""The write-behind writer: the one way state gets from a Bytewax worker into Redis.

`submit` only updates a pending map under a lock and returns, so a slow or absent Redis
never stalls the dataflow. A background thread takes batches from the map and hands them
to the owner's `write` function (one pipeline / script round per batch). Semantics:

- coalescing: pending work is keyed; a later change to the same key replaces the earlier
  one, so the pending map is bounded by the number of distinct keys;
- Redis errors (`redis.RedisError`): the batch goes back to the pending map (a change that
  arrived meanwhile wins), the thread retries with exponential backoff until Redis answers;
  at close it gives up after `close_grace` seconds of outage;
- restarts: every value for which `live(value)` is true is remembered (as `remember(value)`
  when the owner gives `remember`: a leaner form that `write` also takes; a later non-live
  value for the key forgets it); when the server's `run_id` changes (a server without
  persistence comes back empty) every remembered value is queued again. `write` must
  therefore be idempotent (a rewrite of data that survived writes nothing).
- a bad item never stops the thread: when `write(batch)` raises anything other than
  `redis.RedisError` (orjson refusing an integer above 2^64, a value Lua cannot take, a bug
  in the formatting of one record), the batch is written again item by item; an item whose
  own write still raises is dropped (and forgotten for restarts), counted under
  `rejected_unwritable` and logged (once per kind and 10 s, with its key); the rest is
  written. A Redis error during that item-by-item pass puts the unwritten items back, as above.
- health: the thread that stops anyway (an uncaught exception, e.g. in the restart check)
  logs `writer_thread_died` at error level, sets the `<name>_alive` gauge to 0 (it stays 0:
  that writer's work is no longer written) and reports `healthy = False`; see
  its `thread_health()`.

Counters and gauges go to the `MetricGroup` the owner passes, under the names in
`WriterMetricNames` (a name of `None` is not recorded).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis

from connectors.redis import health
from connectors.redis.restart import RestartWatch
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup

log = get_logger(__name__)
_rejected_log = RateLimitedLog(log, interval=10.0)

V = TypeVar("V")
#: `WriteBehind.reject`'s value for an item that never reached `submit`
_UNSUBMITTED = object()


@dataclass(frozen=True)
class WriterMetricNames:
    pending: str = "pending"  # gauge: keys waiting to be written
    errors: str = "write_errors"  # counter: failed write rounds
    coalesced: str | None = "coalesced"  # counter: changes replaced before they were written
    restarts: str | None = "restarts_detected"  # counter: Redis restarts seen
    rejected: str = "rejected_unwritable"  # counter: items dropped because writing them raised (not Redis)


class WriteBehind(Generic[V]):
    """A coalescing pending map plus the thread that writes it to Redis (starts at once)."""

    def __init__(
        self,
        client: redis.Redis,
        write: Callable[[dict[str, V]], object],
        *,
        live: Callable[[V], bool],
        remember: Callable[[V], V] | None = None,
        metrics: MetricGroup,
        name: str,
        names: WriterMetricNames = WriterMetricNames(),
        max_batch: int | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        close_grace: float = 10.0,
        restart_check_every: float = 2.0,
    ) -> None:
        """`write(batch)` writes one batch (insertion order kept) and raises `redis.RedisError`
        when Redis fails; `live(value)` says whether a value is rewritten after a restart;
        `max_batch` caps a batch (None: everything pending)."""
        self.name = name
        self.metrics = metrics
        self.names = names
        self.max_batch = max_batch
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.close_grace = close_grace
        self._write = write
        self._is_live = live
        self._remember = remember
        self._pending: dict[str, V] = {}
        self._live: dict[str, V] = {}
        self._restarts = RestartWatch(client, every=restart_check_every)
        self._cv = threading.Condition()
        self._writing = 0  # keys of the batch being written now (out of the pending map)
        self._closing = False
        self._thread = health.MonitoredThread(name, self._run, metrics, event="writer_thread_died",
                                              on_death=self._died)
        self.alive_gauge = self._thread.gauge
        self._thread.start()

    # ------------------------------------------------------------------ health
    @property
    def alive(self) -> bool:
        """The writer thread is running."""
        return self._thread.alive

    @property
    def healthy(self) -> bool:
        """False once the thread died of an uncaught exception (a clean `close` stays healthy)."""
        return self._thread.healthy

    @property
    def error(self) -> str | None:
        return self._thread.error

    def thread_health(self) -> dict[str, object]:
        return {**self._thread.report(), "pending": self.pending}

    # ------------------------------------------------------------------ worker side (never blocks on Redis)
    def submit(self, items: Iterable[tuple[str, V]]) -> None:
        m, names = self.metrics, self.names
        coalesced = 0
        with self._cv:
            pending, live, is_live, remember = self._pending, self._live, self._is_live, self._remember
            for key, value in items:
                if key in pending:
                    coalesced += 1
                pending[key] = value
                if is_live(value):
                    live[key] = value if remember is None else remember(value)
                else:
                    live.pop(key, None)
            m.set(names.pending, len(pending))
            self._cv.notify()
        if coalesced and names.coalesced is not None:
            m.inc(names.coalesced, coalesced)

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._pending)

    @property
    def backlog(self) -> int:
        """`pending` without taking the lock (a dict's length is read atomically): for a
        worker-side decision that may be a change late."""
        return len(self._pending)

    def snapshot(self) -> tuple[dict[str, V], dict[str, V]]:
        """Copies of (pending, live): for tests and diagnostics."""
        with self._cv:
            return dict(self._pending), dict(self._live)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending and no batch is being written (or the timeout passes);
        True if everything submitted so far has reached Redis."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending or self._writing:
                if not self._thread.healthy:
                    return False  # the thread died: nothing more will be written
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.notify_all()
                self._cv.wait(min(left, 0.1))
            return True

    def close(self, timeout: float = 15.0) -> None:
        """Write what is pending (giving up after `close_grace` s of outage), stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread
    def _take(self) -> dict[str, V]:
        with self._cv:
            if not self._pending and not self._closing:
                self._cv.wait(0.5)
            if self.max_batch is None or len(self._pending) <= self.max_batch:
                batch, self._pending = self._pending, {}
            else:
                batch = {key: self._pending.pop(key) for key in list(self._pending)[: self.max_batch]}
            self._writing = len(batch)
            return batch

    def _written(self) -> None:
        with self._cv:
            self._writing = 0
            self._cv.notify_all()

    def _putback(self, batch: dict[str, V]) -> None:
        with self._cv:
            for key, value in batch.items():
                self._pending.setdefault(key, value)  # a newer change that arrived meanwhile wins
            self._writing = 0
            self.metrics.set(self.names.pending, len(self._pending))
            self._cv.notify_all()

    def _check_restart(self, force: bool = False) -> None:
        """A Redis that restarted may have come back empty: queue every live value again."""
        if not self._restarts.restarted(force=force):
            return
        with self._cv:
            for key, value in self._live.items():
                self._pending.setdefault(key, value)
            n = len(self._live)
        if self.names.restarts is not None:
            self.metrics.inc(self.names.restarts)
        log.warning("redis_restart_detected_rewriting", writer=self.name, items=n)

    def _died(self) -> None:
        with self._cv:
            self._cv.notify_all()  # flush() waiters see it at once

    def reject(self, key: str, exc: Exception, value: object = _UNSUBMITTED) -> None:
        """Drop an item that cannot be written (it would fail forever): count, log, forget it
        (`value`, when it is the one remembered for restarts). The owner calls it without a
        value for an item it could not even prepare for `submit`."""
        with self._cv:
            if key in self._live and self._live[key] is value:
                del self._live[key]  # never re-queued after a restart
        self.metrics.inc(self.names.rejected)
        kind = type(exc).__name__
        _rejected_log.warning(f"{self.name}:{kind}", "writer_item_rejected_unwritable", writer=self.name, item_key=key,
                              kind=kind, error=str(exc)[:300])

    def _write_isolating(self, batch: dict[str, V]) -> tuple[dict[str, V], redis.RedisError] | None:
        """Write the batch; if that raises a non-Redis error, write it item by item and drop the
        items that still raise. None when done; on a Redis error, the items not written yet and
        the error."""
        try:
            self._write(batch)
            return None
        except redis.RedisError as exc:
            return batch, exc
        except Exception:  # noqa: BLE001 - a bad item: find it, write the rest
            pass
        keys = list(batch)
        for i, key in enumerate(keys):
            value = batch[key]
            try:
                self._write({key: value})
            except redis.RedisError as exc:
                return {k: batch[k] for k in keys[i:]}, exc
            except Exception as exc:  # noqa: BLE001
                self.reject(key, exc, value)
        return None

    def _run(self) -> None:
        self._restarts.restarted(force=True)  # learn the server's run id
        delay = self.backoff_initial
        down_since: float | None = None
        while True:
            if down_since is None:
                self._check_restart()  # also catches a restart that happened while idle
            batch = self._take()
            if not batch:
                if self._closing:
                    return
                continue
            failed = self._write_isolating(batch)
            if failed is None:
                self._written()
            else:
                unwritten, exc = failed
                self._putback(unwritten)
                self.metrics.inc(self.names.errors)
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("redis_write_failed_retrying", writer=self.name, error=str(exc), pending=self.pending)
                if self._closing and time.monotonic() - down_since >= self.close_grace:
                    log.error("redis_unavailable_at_close", writer=self.name, lost=self.pending)
                    return
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            if down_since is not None:
                log.info("redis_write_recovered", writer=self.name, down_s=round(time.monotonic() - down_since, 2))
                down_since = None
                self._check_restart(force=True)  # just recovered: was it a restart?
            delay = self.backoff_initial
            self.metrics.set(self.names.pending, self.pending)
