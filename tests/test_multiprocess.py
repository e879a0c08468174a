"""Two Bytewax processes (`-i/-a`) produce the same Redis portfolios as one worker: exactly
the universe's covers and costs; SIGTERM to both drains them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import redis

from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis, free_port
from standins.launcher import StandIns
from tests.flow_process import flow_env

pytestmark = pytest.mark.slow


def test_two_processes_give_the_ground_truth(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    keys = RedisKeys("mp")
    with StandIns(seed=29, n_events=50, clob_rate=20.0) as standins:
        standins.clob.pause()
        env = flow_env(standins, redis_server.url, "mp", POLL_INTERVAL_SECONDS="0.5", FULL_RECONCILE_EVERY="2",
                       MIN_COVERAGE="0", MAX_COST="100", WS_MAX_CONNECTIONS="3", SNAPSHOT_INTERVAL_SECONDS="1",
                       JOIN_SHARDS="8")  # a cluster sets it: the join's shards spread over both processes
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        procs = [subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.scanner:flow", "-i", str(i),
                                   "-a", addresses], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in (0, 1)]
        try:
            truth = standins.universe.ground_truth()
            deadline = time.monotonic() + 90
            got: set[str] = set()
            while time.monotonic() < deadline:
                got = {m.decode() for m in client.zrange(keys.ranking, 0, -1)}
                if got == set(truth.covers):
                    break
                assert all(p.poll() is None for p in procs), "a process died"
                time.sleep(0.2)
            assert got == set(truth.covers)
            assert {m.decode() for m in client.zrange(keys.opportunities, 0, -1)} == truth.profitable
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(list(client.scan_iter(keys.metrics_pattern("ws")))) < 2:
                time.sleep(0.2)
            assert len(list(client.scan_iter(keys.metrics_pattern("ws")))) == 2  # both run shards and report
            for p in procs:
                p.send_signal(signal.SIGTERM)
            assert [p.wait(timeout=60) for p in procs] == [0, 0]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
    client.close()
