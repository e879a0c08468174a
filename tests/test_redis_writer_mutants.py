"""The write-behind writer (connectors/redis/writer.py) beyond its basics: what it logs (an
outage when it starts and when it ends, giving up at close, a restart, an unwritable item, a
dead thread), the restart check paced by `restart_check_every` and forced on recovery, the
pending gauge after a failed batch, a backlog written back to back, `flush` waiting its whole
timeout, and the removal of a key that was never live.

The write function is a stand-in that records batches; the restart watch asks a stand-in client
whose `run_id` the test changes (a real restart is covered in test_portfolio_sink.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis
from structlog.testing import capture_logs

from connectors.redis.writer import WriteBehind
from polyalphascan.metrics import MetricGroup
from tests.waiting import wait_for


class Server:
    """Stands in for the client the restart watch asks: answers INFO with `run_id`, counts the calls."""

    def __init__(self, run_id: str = "r1") -> None:
        self.run_id = run_id
        self.calls = 0

    def info(self, section: str) -> dict[str, str]:
        assert section == "server"
        self.calls += 1
        return {"run_id": self.run_id}


class Recorder:
    """A write function: records batches; fails with a Redis error while `failing` is set,
    with a non-Redis error on a negative value, and waits at `gate`."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.failing = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, batch: dict[str, Any]) -> None:
        self.gate.wait(5)
        if any(isinstance(v, int) and v < 0 for v in batch.values()):
            raise TypeError("x" * 400)
        if self.failing.is_set():
            raise redis.ConnectionError("down")
        self.batches.append(dict(batch))

    def written(self) -> dict[str, Any]:
        return {k: v for b in self.batches for k, v in b.items()}


def writer(rec: Recorder, m: MetricGroup, server: Server | None = None, **kw: Any) -> WriteBehind[Any]:
    params: dict[str, Any] = dict(live=lambda v: v is not None, metrics=m, name=f"w-{uuid.uuid4().hex[:8]}",
                                  backoff_initial=0.01, backoff_max=0.02)
    params.update(kw)
    return WriteBehind(server or Server(), rec, **params)  # type: ignore[arg-type]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_each_outage_is_logged_when_it_starts_and_when_it_ends() -> None:
    rec, m = Recorder(), MetricGroup("t")
    w = writer(rec, m)
    try:
        with capture_logs() as logs:
            spans = []
            for n, items in enumerate(([("a", 1), ("b", 2)], [("c", 3)]), start=1):
                t0 = time.monotonic()
                rec.failing.set()
                w.submit(items)
                wait_for(lambda n=n: m.get("write_errors") >= 5 * n, what="failed rounds")
                rec.failing.clear()
                assert w.flush(timeout=5) is True
                spans.append(time.monotonic() - t0)
        assert rec.written() == {"a": 1, "b": 2, "c": 3} and w.healthy
        failed = events(logs, "redis_write_failed_retrying")
        assert [(e["writer"], e["error"], e["pending"], e["log_level"]) for e in failed] == [
            (w.name, "down", 2, "warning"), (w.name, "down", 1, "warning")]
        recovered = events(logs, "redis_write_recovered")
        assert [(e["writer"], e["log_level"]) for e in recovered] == [(w.name, "info")] * 2
        for e, span in zip(recovered, spans):
            down = e["down_s"]
            assert isinstance(down, float) and 0.0 < down <= span + 0.01 and round(down, 2) == down
    finally:
        w.close(timeout=2)


def test_giving_up_at_close_is_logged_with_what_is_lost() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.failing.set()
    w = writer(rec, m, close_grace=0.05)
    with capture_logs() as logs:
        w.submit([("a", 1), ("b", 2)])
        wait_for(lambda: m.get("write_errors") >= 1, what="a failed round")
        w.close(timeout=5)
    assert not w.alive
    assert [(e["writer"], e["lost"], e["log_level"]) for e in events(logs, "redis_unavailable_at_close")] == [
        (w.name, 2, "error")]


def test_a_restart_found_on_recovery_rewrites_every_live_value_and_is_logged() -> None:
    rec, m, server = Recorder(), MetricGroup("t"), Server("r1")
    w = writer(rec, m, server, restart_check_every=1e9)  # only the forced checks run
    try:
        with capture_logs() as logs:
            w.submit([("a", 1), ("b", None), ("c", 3)])
            assert w.flush(timeout=5) is True
            rec.failing.set()
            w.submit([("d", 4)])
            wait_for(lambda: m.get("write_errors") >= 1, what="a failed round")
            server.run_id = "r2"  # Redis came back empty during the outage
            n = len(rec.batches)
            rec.failing.clear()
            wait_for(lambda: {k for b in rec.batches[n:] for k in b} == {"a", "c", "d"}, what="the rewrite")
        assert rec.written() == {"a": 1, "b": None, "c": 3, "d": 4} and m.get("restarts_detected") == 1
        assert [(e["writer"], e["items"], e["log_level"]) for e in events(logs, "redis_restart_detected_rewriting")] \
            == [(w.name, 3, "warning")]
    finally:
        w.close(timeout=2)


def test_restart_checks_are_paced_by_restart_check_every() -> None:
    for every, paced in ((1e9, True), (0.0, False)):
        rec, server = Recorder(), Server()
        w = writer(rec, MetricGroup("t"), server, restart_check_every=every)
        try:
            for i in range(3):
                w.submit([(str(i), i)])
                assert w.flush(timeout=5) is True
            if paced:
                assert server.calls == 1  # the server's run id learnt at start, then no check for 1e9 s
            else:
                assert server.calls >= 4  # at start and before each of the three rounds
        finally:
            w.close(timeout=2)


def test_an_unwritable_item_is_logged_with_its_writer_key_kind_and_a_cut_error() -> None:
    rec, m = Recorder(), MetricGroup("t")
    w1, w2 = writer(rec, m), writer(rec, m)
    try:
        with capture_logs() as logs:
            w1.submit([("ok", 1), ("bad1", -1)])
            w2.submit([("bad2", -2)])
            assert w1.flush(timeout=5) is True and w2.flush(timeout=5) is True
        assert rec.written() == {"ok": 1} and m.get("rejected_unwritable") == 2
        rejected = events(logs, "writer_item_rejected_unwritable")
        assert sorted((e["writer"], e["item_key"], e["kind"], e["error"]) for e in rejected) == sorted([
            (w1.name, "bad1", "TypeError", "x" * 300), (w2.name, "bad2", "TypeError", "x" * 300)])
    finally:
        w1.close(timeout=2)
        w2.close(timeout=2)


def test_a_dead_thread_is_logged_under_writer_thread_died() -> None:
    class Exploding(Server):
        def info(self, section: str) -> dict[str, str]:
            raise RuntimeError("unexpected")

    m = MetricGroup("t")
    with capture_logs() as logs:
        w = writer(Recorder(), m, Exploding())
        wait_for(lambda: not w.alive, what="the thread's death")
    assert [(e["thread"], e["error"], e["log_level"]) for e in events(logs, "writer_thread_died")] == [
        (w.name, "RuntimeError: unexpected", "error")]


def test_the_pending_gauge_counts_a_failed_batch_put_back() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.failing.set()
    rec.gate.clear()
    w = writer(rec, m)
    try:
        w.submit([("a", 1)])
        wait_for(lambda: w.pending == 0, what="a taken out of the pending map")
        w.submit([("b", 2)])
        assert m.get("pending") == 1  # a is out, being written
        rec.gate.set()  # a's write fails: a goes back
        wait_for(lambda: m.get("write_errors") >= 1 and m.get("pending") == 2, what="a counted again")
    finally:
        rec.failing.clear()
        w.close(timeout=2)


def test_a_backlog_larger_than_max_batch_is_written_back_to_back() -> None:
    rec, m = Recorder(), MetricGroup("t")
    rec.gate.clear()
    w = writer(rec, m, max_batch=1)
    try:
        w.submit([("first", 0)])
        wait_for(lambda: w.pending == 0, what="the first batch taken")
        w.submit([(str(i), i) for i in range(20)])
        t0 = time.monotonic()
        rec.gate.set()
        wait_for(lambda: len(rec.batches) == 21, what="21 batches of one")  # no flush: nothing wakes the thread
        assert time.monotonic() - t0 < 3.0  # not half a second per batch
        assert rec.batches[1:] == [{str(i): i} for i in range(20)]
    finally:
        w.close(timeout=2)


def test_flush_waits_its_whole_timeout_before_saying_no() -> None:
    rec = Recorder()
    rec.gate.clear()
    w = writer(rec, MetricGroup("t"))
    try:
        w.submit([("a", 1)])
        wait_for(lambda: w.pending == 0, what="a taken")
        t0 = time.monotonic()
        assert w.flush(timeout=0.5) is False
        assert time.monotonic() - t0 >= 0.5
        rec.gate.set()
        assert w.flush(timeout=5) is True and rec.batches == [{"a": 1}]
    finally:
        w.close(timeout=2)


def test_the_removal_of_a_key_that_was_never_live_is_written() -> None:
    rec = Recorder()
    w = writer(rec, MetricGroup("t"))
    try:
        w.submit([("x", None)])
        assert w.flush(timeout=5) is True
        assert rec.batches == [{"x": None}] and w.snapshot() == ({}, {})
    finally:
        w.close(timeout=2)


def test_an_idle_writer_waits_between_restart_checks_it_does_not_spin() -> None:
    server = Server()
    t0 = time.monotonic()
    w = writer(Recorder(), MetricGroup("t"), server, restart_check_every=0.0)  # every loop may check
    try:
        wait_for(lambda: server.calls >= 4, what="three idle rounds")
        # at start, then once per idle round of half a second: a spinning loop would take microseconds
        assert time.monotonic() - t0 >= 0.9
    finally:
        w.close(timeout=2)


def test_a_live_value_is_remembered_in_the_form_remember_gives_and_rewritten_so() -> None:
    """`remember`: what is kept for a restart is the remembered form of the newest live value
    (not the value itself), and that form is what a restart writes again."""
    rec, m, server = Recorder(), MetricGroup("t"), Server("r1")
    w = writer(rec, m, server, remember=lambda v: ("kept", v), restart_check_every=1e9)
    try:
        w.submit([("a", 1), ("b", 2)])
        w.submit([("a", 3), ("b", None)])
        assert w.flush(timeout=5) is True
        assert w.snapshot() == ({}, {"a": ("kept", 3)})
        rec.failing.set()
        w.submit([("c", 4)])
        wait_for(lambda: m.get("write_errors") >= 1, what="a failed round")
        server.run_id = "r2"
        n = len(rec.batches)
        rec.failing.clear()
        rewrite = {"a": ("kept", 3), "c": ("kept", 4)}  # c was written on recovery, then it is live too
        wait_for(lambda: rewrite in rec.batches[n:], what="the rewrite")
        assert rec.batches[n:] == [{"c": 4}, rewrite]
    finally:
        w.close(timeout=2)
