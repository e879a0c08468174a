"""The metrics writer: copies a metrics registry's snapshot to Redis (one TTL'd hash per
group and process), and `read_metrics`, which sums a group over every live process.

The thread never dies of a bad value: a metric that cannot be formatted is left out and
counted as `sink.rejected_unwritable_metric` (logged once per kind and 10 s, with its group
and name); any other error of a round counts as `sink.metrics_write_errors` and the next
round runs as usual. If the thread stops anyway it logs `metrics_writer_died` at error level,
sets `sink.metrics_writer_alive` to 0 and reports `healthy = False`
(its `thread_health()`).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import orjson
import redis

from connectors.redis import health
from connectors.redis.layout import RedisKeys
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricsRegistry

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)


def process_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class MetricsWriter:
    """Copies the groups of `registry` to Redis every `interval` seconds (TTL'd hashes), and
    once more at `stop`. Its own write errors count as `metrics_write_errors` in `sink`."""

    def __init__(self, redis_url: str, prefix: str, registry: MetricsRegistry, *, interval: float = 1.0,
                 ttl: int = 30) -> None:
        self.registry = registry
        self.keys = RedisKeys(prefix)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.interval = interval
        self.ttl = ttl
        self.process = process_name()
        self._stop = threading.Event()
        self.name = "metrics-writer"
        self._sink = registry.group("sink")
        self._thread = health.MonitoredThread(self.name, self._run, self._sink, event="metrics_writer_died")
        self.alive_gauge = self._thread.gauge

    def start(self) -> "MetricsWriter":
        self._thread.start()
        return self

    # ------------------------------------------------------------------ health
    @property
    def alive(self) -> bool:
        return self._thread.alive

    @property
    def healthy(self) -> bool:
        return self._thread.healthy

    @property
    def error(self) -> str | None:
        return self._thread.error

    def thread_health(self) -> dict[str, object]:
        return self._thread.report()

    def _field(self, group: str, name: str, value: Any) -> Any:
        """A hash field value, or None (left out, counted) if it cannot be written."""
        if isinstance(value, bool):
            return int(value)  # redis-py refuses bools (a DataError would fail the whole round)
        if isinstance(value, (str, int, float)):
            return value
        try:
            return orjson.dumps(value).decode()
        except Exception as exc:  # noqa: BLE001 - one bad metric never stops the others
            self._sink.inc("rejected_unwritable_metric")
            kind = type(exc).__name__
            _limited.warning(f"metric:{kind}", "metric_rejected_unwritable", group=group, metric=name, kind=kind,
                             error=str(exc)[:200])
            return None

    def write_once(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for group, values in self.registry.snapshot().items():
            flat: dict[str, Any] = {}
            for k, v in values.items():
                field = self._field(group, k, v)
                if field is not None:
                    flat[k] = field
            if not flat:
                continue
            key = self.keys.metrics(group, self.process)
            pipe.delete(key)
            pipe.hset(key, mapping=flat)
            pipe.expire(key, self.ttl)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write_once()
            except redis.RedisError:
                self._sink.inc("metrics_write_errors")
            except Exception as exc:  # noqa: BLE001 - counted, logged, the next round runs
                self._sink.inc("metrics_write_errors")
                kind = type(exc).__name__
                _limited.warning(f"round:{kind}", "metrics_write_failed", kind=kind, error=str(exc)[:300])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.write_once()
        except Exception:  # noqa: BLE001 - last round at stop: best effort
            pass
        self.client.close()


def read_metrics(client: redis.Redis, keys: RedisKeys, group: str) -> dict[str, float]:
    """Sum of a metric group's numeric fields over every live process."""
    total: dict[str, float] = {}
    for key in client.scan_iter(match=keys.metrics_pattern(group), count=100):
        for field, raw in client.hgetall(key).items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            total[name] = total.get(name, 0.0) + value
    return total
