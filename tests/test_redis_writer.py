"""The shared write-behind writer (`connectors.redis.writer.WriteBehind`) with a stand-in
write function: coalescing, batching, retry after Redis errors, giving up at close.
The restart rewrite is covered against a real server in test_portfolio_sink.py and
test_prices.py."""

from __future__ import annotations

import threading
import time

import redis

from connectors.redis.writer import WriteBehind, WriterMetricNames
from polyalphascan.metrics import MetricGroup
from tests.waiting import wait_for

DEAD = "redis://127.0.0.1:1/0"  # nothing listens: the restart watch sees no server, writes are ours


def dead_client() -> redis.Redis:
    return redis.Redis.from_url(DEAD, socket_connect_timeout=0.1, socket_timeout=0.1)




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
    assert not w.alive and time.monotonic() - t0 < 2
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


# ---------------------------------------------------------------------- bad items never stop the thread
class Poisoned(Recorder):
    """Raises a non-Redis error (as orjson does on an integer above 2^64) on any batch holding
    a negative value; else fails with a Redis error on a batch holding the key `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down: str | None = None

    def __call__(self, batch: dict[str, int | None]) -> None:
        self.gate.wait(5)
        if any(v is not None and v < 0 for v in batch.values()):
            raise TypeError("Integer exceeds 64-bit range")
        if self.down is not None and self.down in batch:
            raise redis.ConnectionError("down")
        self.batches.append(dict(batch))


def test_a_poisoned_item_is_dropped_and_counted_the_others_are_written_and_the_thread_lives() -> None:
    rec, m = Poisoned(), MetricGroup("t")
    w: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: v is not None, metrics=m, name="t-poison")
    try:
        w.submit([("a", 1), ("bad", -1), ("c", 3)])
        assert w.flush(timeout=5) is True
        written = {k: v for b in rec.batches for k, v in b.items()}
        assert written == {"a": 1, "c": 3}
        assert m.get("rejected_unwritable") == 1 and m.get("write_errors") == 0
        assert w.snapshot() == ({}, {"a": 1, "c": 3})  # the bad one is not rewritten after a restart
        assert w.alive and w.healthy and m.get("t_poison_alive") == 1
        w.submit([("d", 4), ("bad2", -2)])  # still writing afterwards
        assert w.flush(timeout=5) is True
        assert rec.batches[-1] == {"d": 4} and m.get("rejected_unwritable") == 2
        assert w.thread_health() == {"name": "t-poison", "alive": True, "healthy": True, "error": None, "pending": 0}
    finally:
        w.close(timeout=2)
    assert not w.alive and w.healthy  # a clean close is not a death


def test_a_redis_error_while_isolating_keeps_the_unwritten_items() -> None:
    rec, m = Poisoned(), MetricGroup("t")
    rec.gate.clear()
    w: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: True, metrics=m, name="t-iso",
                                             backoff_initial=0.01, backoff_max=0.02)
    try:
        w.submit([("z", 0)])
        wait_for(lambda: w.pending == 0)
        w.submit([("a", 1), ("bad", -1), ("c", 3), ("e", 5)])
        rec.down = "c"  # Redis "fails" when c is written
        rec.gate.set()
        wait_for(lambda: m.get("write_errors") >= 1)
        assert set(w.snapshot()[0]) <= {"c", "e"}  # a is written, bad dropped, c and e wait
        rec.down = None
        assert w.flush(timeout=5) is True
        assert {k: v for b in rec.batches for k, v in b.items()} == {"z": 0, "a": 1, "c": 3, "e": 5}
        assert m.get("rejected_unwritable") == 1
    finally:
        w.close(timeout=2)


class ExplodingClient:
    """Stands in for the client the restart watch asks: raises an unexpected error."""

    def info(self, section: str) -> dict[str, str]:
        raise RuntimeError("unexpected")


def test_a_thread_killed_by_an_unexpected_exception_reports_unhealthy() -> None:
    rec, m = Recorder(), MetricGroup("t")
    w: WriteBehind[int | None] = WriteBehind(ExplodingClient(), rec, live=lambda v: True,  # type: ignore[arg-type]
                                             metrics=m, name="t-dies")
    wait_for(lambda: not w.alive)
    assert w.healthy is False and w.error == "RuntimeError: unexpected"
    assert m.get("t_dies_alive") == 0
    w.submit([("a", 1)])
    assert w.flush(timeout=5) is False and rec.batches == []  # says so at once, does not pretend
    report = w.thread_health()
    assert report["healthy"] is False and report["alive"] is False and report["error"] == "RuntimeError: unexpected"
    # a sibling writer of the same name in the same group does not hide the death
    sibling: WriteBehind[int | None] = WriteBehind(dead_client(), rec, live=lambda v: True, metrics=m, name="t-dies")
    try:
        assert sibling.alive and m.get("t_dies_alive") == 0
    finally:
        sibling.close(timeout=2)
    w.close(timeout=1)


# ---------------------------------------------------------------------- the registry writer, a real Redis
def test_registry_writer_drops_an_unwritable_market_and_registers_the_rest(redis_client: redis.Redis) -> None:
    from connectors.redis.token_registry import RegistryWriter, TokenRegistry
    from polyalphascan.records import DeltaKind, Event, EventDelta, Market

    def market(i: int | str) -> Market:
        return Market(id=i, event_id="e", question="q?", slug="s", condition_id="c",  # type: ignore[arg-type]
                      yes_token=f"y{i}", no_token=f"n{i}")

    ws = MetricGroup("ws")
    reg = TokenRegistry(redis_client, "t", max_shards=2, tokens_per_shard=10, metrics=ws)
    writer = RegistryWriter(reg, metrics=ws)
    try:
        good = [market("1"), market("2")]
        bad = market(2**70)  # orjson: Integer exceeds 64-bit range
        ev = Event(id="e", title="t", slug="s", markets=(good[0], bad, good[1]))  # type: ignore[call-arg]
        writer.submit([EventDelta(DeltaKind.NEW, ev)])  # type: ignore[call-arg]
        assert writer.behind.flush(timeout=10) is True
        assert reg.shard_tokens(0) == {"y1", "y2"} and reg.shard_of(f"y{2**70}") is None
        assert ws.get("rejected_unwritable_tokens") == 1 and ws.get("registry_errors") == 0
        assert writer.thread_health()["alive"] is True and ws.get("token_registry_writer_alive") == 1
    finally:
        writer.close()


# ---------------------------------------------------------------------- the metrics writer
def test_metrics_writer_leaves_out_an_unwritable_metric_and_writes_the_rest(redis_client: redis.Redis,
                                                                             redis_server) -> None:  # noqa: ANN001
    from connectors.redis.layout import RedisKeys
    from connectors.redis.metrics_writer import MetricsWriter, read_metrics
    from polyalphascan.metrics import MetricsRegistry

    registry = MetricsRegistry()
    g = registry.group("prices")
    g.inc("frames", 5)
    g.set("weird", object())  # orjson cannot write it
    g.set("flag", True)  # redis-py refuses bools: written as 1
    g.set("huge", 2**70)
    writer = MetricsWriter(redis_server.url, "t", registry, interval=3600)
    writer.write_once()
    got = read_metrics(redis_client, RedisKeys("t"), "prices")
    assert got == {"frames": 5.0, "flag": 1.0, "huge": float(2**70)}
    assert registry.group("sink").get("rejected_unwritable_metric") == 1
    writer.start()
    try:
        assert writer.alive and writer.healthy and registry.group("sink").get("metrics_writer_alive") == 1
    finally:
        writer.stop()
    assert writer.healthy and not writer.alive
