"""Pipeline metrics: named groups of counters and gauges, thread-safe.

A component is handed its group (`scope.metrics.group("ws")`) and records there
(`.inc("reconnects")`, `.set("queue_depth", 12)`, `.observe("llm_latency_s", 0.8)`); the
metrics writer copies the registry's `snapshot()` to Redis and the monitoring endpoint reads
it from there. Cheap enough for hot paths (a lock + dict op).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class MetricGroup:
    def __init__(self, name: str, window: int = 1024) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {}
        self._gauges: dict[str, Any] = {}
        self._samples: dict[str, deque[float]] = {}
        self._window = window

    def inc(self, key: str, n: float = 1) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + n

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._gauges[key] = value

    def observe(self, key: str, value: float) -> None:
        """Record a sample (latency etc.); snapshot reports count, avg and p95 of the window."""
        with self._lock:
            dq = self._samples.get(key)
            if dq is None:
                dq = self._samples[key] = deque(maxlen=self._window)
            dq.append(value)
            self._counters[f"{key}_count"] = self._counters.get(f"{key}_count", 0) + 1
            self._counters[f"{key}_sum"] = self._counters.get(f"{key}_sum", 0) + value

    def observe_many(self, key: str, values: list[float]) -> None:
        """`observe` each of `values`, under one lock (a writer round's latencies)."""
        if not values:
            return
        with self._lock:
            dq = self._samples.get(key)
            if dq is None:
                dq = self._samples[key] = deque(maxlen=self._window)
            dq.extend(values)
            self._counters[f"{key}_count"] = self._counters.get(f"{key}_count", 0) + len(values)
            self._counters[f"{key}_sum"] = self._counters.get(f"{key}_sum", 0) + sum(values)

    def get(self, key: str, default: Any = 0) -> Any:
        with self._lock:
            if key in self._counters:
                return self._counters[key]
            return self._gauges.get(key, default)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
            out.update(self._gauges)
            for key, dq in self._samples.items():
                if dq:
                    ordered = sorted(dq)
                    out[f"{key}_avg"] = sum(ordered) / len(ordered)
                    out[f"{key}_p95"] = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            return out

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._samples.clear()


class MetricsRegistry:
    """The metric groups of one flow (or one process): named `MetricGroup`s, created on first
    use. A flow owns one (see `FlowScope`); nothing here is process-wide."""

    def __init__(self) -> None:
        self._groups: dict[str, MetricGroup] = {}
        self._lock = threading.Lock()

    def group(self, name: str) -> MetricGroup:
        with self._lock:
            group = self._groups.get(name)
            if group is None:
                group = self._groups[name] = MetricGroup(name)
            return group

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            groups = list(self._groups.values())
        return {g.name: g.snapshot() for g in groups}

