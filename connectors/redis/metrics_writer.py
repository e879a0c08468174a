"""The metrics writer: copies a metrics registry's snapshot to Redis (one TTL'd hash per
group and process), and `read_metrics`, which sums a group over every live process."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import orjson
import redis

from connectors.redis.layout import RedisKeys
from polyalphascan.metrics import MetricsRegistry


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
        self._thread = threading.Thread(target=self._run, name="metrics-writer", daemon=True)

    def start(self) -> "MetricsWriter":
        self._thread.start()
        return self

    def write_once(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for group, values in self.registry.snapshot().items():
            flat: dict[str, Any] = {
                k: (v if isinstance(v, (int, float, str)) else orjson.dumps(v).decode()) for k, v in values.items()
            }
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
                self.registry.group("sink").inc("metrics_write_errors")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.write_once()
        except redis.RedisError:
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
