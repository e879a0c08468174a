"""The shared write-behind writer (`connectors.redis.writer.WriteBehind`) with a stand-in
write function: coalescing, batching, retry after Redis errors, giving up at close.
The restart rewrite is covered against a real server in test_portfolio_sink.py and
test_prices.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from connectors.redis.writer import WriteBehind, WriterMetricNames
from polyalphascan.metrics import MetricGroup

DEAD = "redis://127.0.0.1:1/0"  # nothing listens: the restart watch sees no server, writes are ours


def dead_client() -> redis.Redis:
    return redis.Redis.from_url(DEAD, socket_connect_timeout=0.1, socket_timeout=0.1)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


class Recorder:
    """A write function: records batches; fails while `failing` is set."""

    def __init__(self) -> None:
        self.batches: list[dict[str, int | None]] = []
        self.failing = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: dict[str, int | None]) -> None:
        self.gate.wait(5)
        if self.failing.is_set():
            raise redis.ConnectionError("down")
        self.batches.append(dict(batch))


def test_coalesces_newest_wins_and_tracks_live_values() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.gate.clear()  # hold the first batch so later submits coalesce
    w: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: v is not None, metrics=m, name="t")
    try:
        w.submit([("a", 1)])
        wait_for(lambda: w.pending == 0)  # taken, held at the gate
        w.submit([("a", 2), ("b", 1)])
        w.submit([("a", 3), ("b", None)])
        pending, live = w.snapshot()
        assert pending == {"a": 3, "b": None} and live == {"a": 3}
        assert m.get("coalesced") == 2 and m.get("pending") == 2
        rec.gate.set()
        wait_for(lambda: len(rec.batches) == 2)
        assert rec.batches == [{"a": 1}, {"a": 3, "b": None}]
        assert m.get("pending") == 0
    finally:
        w.close(timeout=2)


def test_max_batch_splits_in_arrival_order_and_metric_names_are_the_callers() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.gate.clear()
    names = WriterMetricNames(pending="q", errors="e", coalesced=None, restarts=None)
    w: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: True, metrics=m, name="t",
                                             names=names, max_batch=2)
    try:
        w.submit([("z", 0)])
        wait_for(lambda: w.pending == 0)
        w.submit([(k, i) for i, k in enumerate("abcde")])
        w.submit([("a", 9)])
        rec.gate.set()
        wait_for(lambda: sum(len(b) for b in rec.batches) == 6)
        assert rec.batches == [{"z": 0}, {"a": 9, "b": 1}, {"c": 2, "d": 3}, {"e": 4}]
        assert "coalesced" not in m.snapshot() and "pending" not in m.snapshot() and m.get("q") == 0
    finally:
        w.close(timeout=2)


def test_redis_errors_keep_the_batch_and_retry_with_newer_changes_winning() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.failing.set()
    w: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: True, metrics=m, name="t",
                                             backoff_initial=0.01, backoff_max=0.05)
    try:
        w.submit([("a", 1), ("b", 1)])
        wait_for(lambda: m.get("write_errors") >= 2)
        w.submit([("a", 2)])
        w._putback({"a": 0})  # a batch coming back never overwrites a newer change
        assert w.snapshot()[0]["a"] == 2
        rec.failing.clear()
        wait_for(lambda: w.pending == 0 and rec.batches != [])
        assert {k: v for b in rec.batches for k, v in b.items()} == {"a": 2, "b": 1}
    finally:
        w.close(timeout=2)


def test_close_gives_up_after_the_grace_period_while_redis_is_down() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.failing.set()
    w: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: True, metrics=m, name="t",
                                             backoff_initial=0.01, backoff_max=0.02, close_grace=0.2)
    w.submit([("a", 1)])
    wait_for(lambda: m.get("write_errors") >= 1)
    t0 = time.monotonic()
    w.close(timeout=5)
    assert not w._thread.is_alive() and time.monotonic() - t0 < 2
    assert w.pending == 1 and rec.batches == []  # kept (and reported lost), never half-written


def test_flush_waits_for_the_batch_being_written_not_only_the_pending_map() -> None:
    rec = Recorder()
    rec.gate.clear()  # the write of the first batch blocks until the gate opens
    w = WriteBehind(dead_client(), rec, live=lambda v: v is not None, metrics=MetricGroup("t"), name="t-flush")
    try:
        w.submit([("a", 1)])
        wait_for(lambda: w.pending == 0)  # taken out of the pending map, not yet written
        assert w.flush(timeout=0.2) is False and rec.batches == []
        rec.gate.set()
        assert w.flush(timeout=5) is True and rec.batches == [{"a": 1}]
        rec.failing.set()  # a failed batch goes back to pending: flush still says not written
        w.submit([("b", 2)])
        assert w.flush(timeout=0.3) is False and w.pending == 1
        rec.failing.clear()
        assert w.flush(timeout=10) is True and rec.batches[-1] == {"b": 2}
    finally:
        w.close(timeout=2)
