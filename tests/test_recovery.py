"""kill -9 mid-run and resume from the recovery directory: nothing lost, no LLM call repeated
for a group already answered, portfolios converge to the universe's ground truth. SIGTERM
writes a final snapshot that the next run resumes from."""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time

import pytest
import redis

from connectors.redis.metrics_writer import read_metrics
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from standins.launcher import StandIns
from tests.flow_process import flow_env
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
PREFIX = "rec"


wait_for = functools.partial(wait_for, every=0.1)


def test_kill_9_and_resume(redis_server: EmbeddedRedis, tmp_path) -> None:  # noqa: ANN001
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    keys = RedisKeys(PREFIX)
    with StandIns(seed=23, n_events=50, clob_rate=20.0) as standins:
        standins.clob.pause()
        env = flow_env(standins, redis_server.url, PREFIX, RECOVERY_DIR=str(tmp_path / "recovery"),
                       SNAPSHOT_INTERVAL_SECONDS="1", POLL_INTERVAL_SECONDS="0.5", FULL_RECONCILE_EVERY="2",
                       ENABLE_REDIS_CACHE="true", MIN_COVERAGE="0", MAX_COST="100", WS_MAX_CONNECTIONS="2")

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "polyalphascan_app.cli", "run"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def converged() -> bool:
            truth = standins.universe.ground_truth()
            return {m.decode() for m in client.zrange(keys.ranking, 0, -1)} == set(truth.covers)

        first = start()
        try:
            wait_for(converged, 90, "first run converged")
            time.sleep(2.5)  # let a snapshot cover the answered LLM targets
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            asked = dict(standins.llm.stats.targets)
            # while it is down: new events and a closed market
            new_ids = standins.universe.add_events(3)
            victim = next(e for e in standins.universe.gamma_events()
                          if standins.universe.event_kind(str(e["id"])) == "timeframe")["markets"][0]["id"]
            standins.universe.close_market(str(victim))
            second = start()
            try:
                wait_for(converged, 90, "resumed run converged to the ground truth")
                new_titles = {e["title"] for e in standins.universe.gamma_events() if str(e["id"]) in new_ids}
                repeated = {t: n for t, n in standins.llm.stats.targets.items()
                            if t in asked and t not in new_titles and n > asked[t]}
                assert repeated == {}  # no LLM call repeated for an answered group
                profitable = {m.decode() for m in client.zrange(keys.opportunities, 0, -1)}
                assert profitable == standins.universe.ground_truth().profitable
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=60) == 0
        finally:
            for p in (first,):
                if p.poll() is None:
                    p.kill()
    client.close()


def test_sigterm_writes_a_final_snapshot(redis_server: EmbeddedRedis, tmp_path) -> None:  # noqa: ANN001
    """Snapshots every 10 minutes, so only the snapshot taken at the graceful stop can carry the
    LLM answers into the next run (the LLM cache is off): the resumed run asks nothing again."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    keys = RedisKeys("fin")
    with StandIns(seed=29, n_events=30, clob_rate=20.0) as standins:
        standins.clob.pause()
        env = flow_env(standins, redis_server.url, "fin", RECOVERY_DIR=str(tmp_path / "recovery"),
                       SNAPSHOT_INTERVAL_SECONDS="600", POLL_INTERVAL_SECONDS="0.5", ENABLE_REDIS_CACHE="false",
                       MIN_COVERAGE="0", MAX_COST="100", WS_MAX_CONNECTIONS="2")

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "polyalphascan_app.cli", "run"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def converged() -> bool:
            return {m.decode() for m in client.zrange(keys.ranking, 0, -1)} == set(standins.universe.ground_truth().covers)

        procs = [start()]
        try:
            wait_for(converged, 90, "first run converged")
            assert standins.llm.stats.requests > 0
            procs[0].send_signal(signal.SIGTERM)
            assert procs[0].wait(timeout=60) == 0
            standins.llm.reset_stats()
            for key in client.scan_iter(match=f"{keys.base}:metrics:*"):
                client.delete(key)  # the first run's figures, so what follows is the resumed run's
            procs.append(start())

            def polled() -> dict[str, float]:
                return read_metrics(client, keys, "poller")

            wait_for(lambda: polled().get("polls", 0) >= 3, 60, "three polls of the resumed run")
            # the poller's state came back: every event known, none new again
            assert polled().get("known_events") == 30 and polled().get("new", 0) == 0
            assert converged()
            # the catalogue's too: no LLM call (the cache is off, so a lost state would ask again)
            assert standins.llm.stats.requests == 0, dict(standins.llm.stats.targets)
            procs[1].send_signal(signal.SIGTERM)
            assert procs[1].wait(timeout=60) == 0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
