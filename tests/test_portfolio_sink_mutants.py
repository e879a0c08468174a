"""The portfolio sink's Python side (connectors/redis/portfolio_sink.py) against the real
redis-server: the counters of one write round (written, no-ops, alerts, latency), a round being
one plain pipeline, the writer's settings reaching its thread and its Redis client, `close`
bounded by its timeout while Redis is down, and `PortfolioSink` handing its settings and its
metric group to every partition's writer.
"""

from __future__ import annotations

import socket
import time

import redis

from connectors.redis.layout import RedisKeys
from connectors.redis.portfolio_sink import ROUND_CHUNK, PortfolioSink, PortfolioWriter, change_key, pack_change
from connectors.redis.server import EmbeddedRedis
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import (CoverKind, CoverSpec, Leg, LegQuote, PortfolioChange, PortfolioQuote,
                                   PortfolioRemoved, PortfolioUpsert, Side)
from tests.waiting import wait_for

KEYS = RedisKeys("sinkm")


def upsert(market: str, cost: float, ts: int) -> PortfolioUpsert:
    """A guaranteed tier-1 portfolio over two legs of market `market` (profitable below cost 1:
    10 share-sets at a net profit of 10 × (1 − cost))."""
    legs = (Leg(f"{market}a", Side.YES, f"y{market}a", f"n{market}a", "Qa?", "e"),
            Leg(f"{market}b", Side.NO, f"y{market}b", f"n{market}b", "Qb?", "e"))
    spec = CoverSpec(CoverKind.TIMEFRAME, legs, guaranteed=True, cover_probability=1.0)
    profit = round(1.0 - cost, 10)
    quote = PortfolioQuote(spec.id, spec.kind, True,
                           (LegQuote(f"{market}a", Side.YES, f"y{market}a", 0.4, 10.0),
                            LegQuote(f"{market}b", Side.NO, f"n{market}b", cost - 0.4, 10.0)),
                           cost, 1.0, profit, profit / cost * 100, 1.0, 0.0, profit, 1, 10.0 if profit > 0 else 0.0, ts,
                           net_profit=round(profit * 10.0, 10) if profit > 0 else 0.0)  # schema 2: net $ at the size
    return PortfolioUpsert(quote, spec)


def batch(*changes: PortfolioChange) -> dict[str, PortfolioChange]:
    return {change_key(c): c for c in changes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats)."""
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def test_a_round_counts_written_noop_alerts_and_the_latency_of_timed_upserts(
        redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    m = MetricGroup("sink")
    writer = PortfolioWriter(redis_server.url, KEYS, metrics=m)
    try:
        now = int(time.time() * 1000)
        replayed, removed = upsert("d", 0.95, now - 1000), upsert("e", 0.95, now - 1000)
        assert writer.write_now(batch(replayed, removed)) == [3, 3]  # written before the round (no counters)
        profitable, costly, untimed = upsert("a", 0.95, now - 2000), upsert("b", 1.03, now - 2000), upsert("c", 1.03, 0)
        round_ = batch(profitable, costly, untimed, PortfolioRemoved("absent", "market_closed"), replayed,
                       PortfolioRemoved(change_key(removed), "market_closed"))
        t0 = time.time() * 1000
        writer._write_round({key: pack_change(change) for key, change in round_.items()})  # as submitted
        elapsed = time.time() * 1000 - t0
        # results [3, 2, 2, 0, 0, 1] (new tier 1 + profit, new tier 1, new tier 1, absent, replay, removal):
        # 4 written, 2 no-ops, (3 - 1) + (2 - 1) + (2 - 1) = 4 alerts
        assert (m.get("written"), m.get("noop"), m.get("alerts")) == (4, 2, 4)
        # latency: only upserts with a timestamp (profitable, costly, replayed): now - updated_ms
        assert m.get("latency_ms_count") == 3
        assert 2000 + 2000 + 1000 <= m.get("latency_ms_sum") <= 5000 + 3 * (elapsed + 1000)
        assert redis_client.exists(KEYS.portfolio(change_key(removed))) == 0
    finally:
        writer.close()


def test_a_round_is_one_script_call_per_chunk_not_a_transaction(redis_server: EmbeddedRedis,
                                                                redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        before = calls(redis_client)
        assert writer.write_now(batch(upsert("a", 0.95, 1), upsert("b", 0.97, 1))) == [3, 3]
        after = calls(redis_client)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("multi", "exec", "evalsha", "set")}
        assert delta == {"multi": 0, "exec": 0, "evalsha": 1, "set": 1}  # one chunk: one call
        many = [upsert(f"c{i}", 0.95, 1) for i in range(ROUND_CHUNK + 1)]
        before = calls(redis_client)
        assert writer.write_now(batch(*many)) == [3] * len(many)
        after = calls(redis_client)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("multi", "exec", "evalsha", "set")}
        assert delta == {"multi": 0, "exec": 0, "evalsha": 2, "set": 1}  # a chunk and one change
    finally:
        writer.close()


def test_a_round_with_removals_asks_redis_nothing_about_its_scripts(redis_server: EmbeddedRedis,
                                                                    redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        writer.write_now(batch(upsert("a", 0.95, 1)))
        before = calls(redis_client)
        gone = PortfolioRemoved(change_key(upsert("a", 0.95, 1)), "filtered")
        assert writer.write_now(batch(upsert("b", 0.97, 1), gone, PortfolioRemoved("absent", "filtered"))) == [3, 1, 0]
        after = calls(redis_client)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        assert {k for k in delta if k.startswith("script")} == set()
        assert (delta["evalsha"], delta["set"]) == (1, 1)
    finally:
        writer.close()


def test_the_writers_settings_reach_its_thread_and_its_redis_client(redis_server: EmbeddedRedis) -> None:
    m = MetricGroup("sink")
    writer = PortfolioWriter(redis_server.url, KEYS, stream_max_len=321, max_batch=7, backoff_initial=0.01,
                             backoff_max=0.3, metrics=m)
    try:
        b = writer.behind
        assert (b.max_batch, b.backoff_initial, b.backoff_max, b.metrics) == (7, 0.01, 0.3, m)
        assert writer.stream_max_len == 321 and writer.metrics is m
        # a Redis that stops answering never hangs the writer thread: reads give up after 5 s, connects after 2 s
        kwargs = writer.client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5, 2)
    finally:
        writer.close()


def test_close_while_redis_is_down_returns_after_its_timeout_and_the_thread_keeps_trying() -> None:
    m = MetricGroup("sink")
    writer = PortfolioWriter(f"redis://127.0.0.1:{free_port()}/0", KEYS, backoff_initial=0.02, backoff_max=0.05,
                             metrics=m)
    behind = writer.behind
    try:
        writer.submit([upsert("a", 0.95, 1)])
        wait_for(lambda: m.get("write_errors") >= 1, what="a failed write")
        t0 = time.monotonic()
        writer.close(timeout=0.3)
        assert time.monotonic() - t0 < 3.0  # not the 10 s of outage grace at close
        wait_for(lambda: m.get("write_errors") >= 5, what="retries after close")  # within the grace: still trying
        assert behind.alive and behind.healthy and behind.pending == 1
    finally:
        behind.close_grace = 0.0  # end the grace: the thread gives up at its next failure
        behind.close(timeout=5)
    assert not behind.alive and behind.healthy


def test_every_partition_writes_with_the_sinks_settings_and_metric_group(redis_server: EmbeddedRedis,
                                                                         redis_client: redis.Redis) -> None:
    m = MetricGroup("sink")
    sink = PortfolioSink(redis_server.url, "sinkp", stream_max_len=123, max_batch=7, metrics=m)
    part = sink.build("redis", 0, 1)
    assert part.writer.stream_max_len == 123 and part.writer.behind.max_batch == 7 and part.writer.metrics is m
    change = upsert("a", 0.95, 5)
    part.write_batch([change])
    part.close()  # flushes
    assert redis_client.exists(RedisKeys("sinkp").portfolio(change_key(change))) == 1
    assert m.get("written") == 1


def test_partitions_of_a_sink_without_a_group_share_the_sinks_own(redis_server: EmbeddedRedis,
                                                                   redis_client: redis.Redis) -> None:
    sink = PortfolioSink(redis_server.url, "sinkq")
    parts = [sink.build("redis", i, 2) for i in range(2)]
    assert isinstance(sink.metrics, MetricGroup)
    assert all(p.writer.metrics is sink.metrics for p in parts)
    for i, p in enumerate(parts):
        p.write_batch([upsert(str(i), 0.95, 5)])
        p.close()
    assert sink.metrics.get("written") == 2
