"""SIGTERM drains the running flow (sources stop, sinks flush) and the process exits 0."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

pytestmark = pytest.mark.slow


def test_sigterm_drains_the_demo_and_exits_0() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "LLM_", "WS_", "POLL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "polyalphascan_app.cli", "demo", "--events", "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            try:
                m = re.search(r"redis: (redis://\S+)", lines.get(timeout=1))
            except queue.Empty:
                continue
            url = m.group(1) if m else None
        assert url, "the demo did not print its Redis URL"
        client = redis.Redis.from_url(url)
        while time.monotonic() < deadline and client.zcard("pas:v2:ranking") == 0:
            time.sleep(0.1)
        assert client.zcard("pas:v2:ranking") > 0, "no portfolio reached Redis"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        out = []
        while not lines.empty():
            out.append(lines.get())
        assert any("stopped:" in line for line in out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sigterm_flushes_the_sinks_into_redis(redis_server) -> None:  # noqa: ANN001
    """`polyalphascan run` against the test's Redis, prices moving right up to the signal: after
    exit 0, the final metrics (written after the flow drained) say the sink has nothing pending,
    and every portfolio in Redis is whole (its hash is the last change streamed for it; the
    ranking and the opportunity set agree with the hashes)."""
    import orjson

    from connectors.redis.metrics_writer import read_metrics
    from connectors.redis.layout import RedisKeys
    from standins.launcher import StandIns
    from tests.flow_process import flow_env

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    keys = RedisKeys("stop")
    with StandIns(seed=31, n_events=40, clob_rate=300.0) as standins:
        env = flow_env(standins, redis_server.url, "stop", POLL_INTERVAL_SECONDS="0.5", MIN_COVERAGE="0",
                       MAX_COST="100", WS_MAX_CONNECTIONS="2")
        proc = subprocess.Popen([sys.executable, "-m", "polyalphascan_app.cli", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            n_covers = len(standins.universe.ground_truth().covers)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and client.zcard(keys.ranking) < n_covers:
                assert proc.poll() is None, "the scanner died"
                time.sleep(0.1)
            assert client.zcard(keys.ranking) == n_covers
            streamed = client.xlen(keys.changes)
            while time.monotonic() < deadline and client.xlen(keys.changes) < streamed + 200:
                time.sleep(0.05)  # re-pricing is under way: the sink has work in hand
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    sink = read_metrics(client, keys, "sink")
    assert sink.get("pending") == 0 and sink.get("written", 0) > n_covers
    last: dict[str, bytes | None] = {}
    for _id, fields in client.xrange(keys.changes):
        last[fields[b"id"].decode()] = fields[b"data"] if fields[b"op"] == b"upsert" else None
    hashes = {k.decode().rsplit(":", 1)[1]: client.hget(k, "data") for k in client.scan_iter(keys.portfolio("*"))}
    assert hashes and hashes == {cid: data for cid, data in last.items() if data is not None}
    ranking = {m.decode() for m in client.zrange(keys.ranking, 0, -1)}
    assert ranking == set(hashes)
    profitable = {cid for cid, data in hashes.items() if orjson.loads(data)["profit"] > 1e-9}
    riskless = {cid for cid in profitable if orjson.loads(hashes[cid])["guaranteed"]}
    assert {m.decode() for m in client.zrange(keys.opportunities, 0, -1)} == riskless
    assert {m.decode() for m in client.zrange(keys.llm_opportunities, 0, -1)} == profitable - riskless
    client.close()
