"""Redis sinks against a real redis-server: layout, idempotence under replay, alerts, outages."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
import redis

from polyalphascan_app.monitoring import MonitoringServer, performance_report
from connectors.redis.portfolio_sink import PortfolioWriter
from connectors.redis.metrics_writer import MetricsWriter
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from polyalphascan.metrics import MetricGroup, MetricsRegistry
from polyalphascan.records import (
    CoverKind,
    CoverSpec,
    Leg,
    LegQuote,
    PortfolioQuote,
    PortfolioRemoved,
    PortfolioUpsert,
    Side,
)
from tests.waiting import wait_for

PREFIX = "t"
KEYS = RedisKeys(PREFIX)


def make_change(market_a: str, market_b: str, ask_a: float, ask_b: float, ts: int) -> PortfolioUpsert:
    legs = (Leg(market_a, Side.YES, f"y{market_a}", f"n{market_a}", f"Q{market_a}?"),
            Leg(market_b, Side.NO, f"y{market_b}", f"n{market_b}", f"Q{market_b}?"))
    spec = CoverSpec(CoverKind.TIMEFRAME, legs, guaranteed=True, cover_probability=1.0)
    cost = ask_a + ask_b
    quote = PortfolioQuote(
        cover_id=spec.id, kind=spec.kind, guaranteed=True,
        legs=(LegQuote(market_a, Side.YES, f"y{market_a}", ask_a, 50.0),
              LegQuote(market_b, Side.NO, f"n{market_b}", ask_b, 70.0)),
        cost=cost, payout=1.0, profit=1.0 - cost, profit_pct=(1.0 - cost) / cost * 100, coverage=1.0,
        loss_probability=0.0, expected_profit=1.0 - cost, tier=1,
        size_at_profit=50.0 if cost < 1 else 0.0, updated_ms=ts,
        net_profit=round((1.0 - cost) * 50.0, 10) if cost < 1 else 0.0,
        annualised=(1.0 - cost) / cost * 365 / 30 if cost < 1 else None, payout_date="2026-12-31",
    )
    return PortfolioUpsert(quote, spec)




def test_upsert_writes_record_ranking_stream(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        good = make_change("1", "2", 0.40, 0.55, 1000)  # cost 0.95: profitable
        meh = make_change("3", "4", 0.50, 0.53, 1000)  # cost 1.03
        assert writer.write_now({good.quote.cover_id: good, meh.quote.cover_id: meh}) == [3, 2]
        rec = redis_client.hgetall(KEYS.portfolio(good.quote.cover_id))
        data = orjson.loads(rec[b"data"])
        assert data["legs"][0]["question"] == "Q1?" and abs(data["cost"] - 0.95) < 1e-12
        assert float(rec[b"profit"]) > 0 and rec[b"tier"] == b"1"
        # the flat fields (read by consumers without JSON) agree with the data blob
        for field in ("cost", "payout", "profit", "profit_pct", "coverage", "expected_profit", "size_at_profit"):
            assert abs(float(rec[field.encode()]) - data[field]) < 1e-12, field
        assert (rec[b"kind"], rec[b"guaranteed"], rec[b"updated_ms"]) == (b"timeframe", b"1", b"1000")
        assert redis_client.zscore(KEYS.ranking, good.quote.cover_id) == pytest.approx(data["expected_profit"])
        assert [m.decode() for m in redis_client.zrevrange(KEYS.ranking, 0, -1)] == [good.quote.cover_id, meh.quote.cover_id]
        assert [m.decode() for m in redis_client.zrange(KEYS.opportunities, 0, -1)] == [good.quote.cover_id]
        assert redis_client.xlen(KEYS.changes) == 2
        assert redis_client.get(KEYS.schema) == b"2"
        # opportunities are ranked by net $ profit at the profitable size, and readable by annualised return
        assert redis_client.zscore(KEYS.opportunities, good.quote.cover_id) == pytest.approx(2.5)
        assert redis_client.zscore(KEYS.ranking_annualised, good.quote.cover_id) == pytest.approx(
            0.05 / 0.95 * 365 / 30)
        assert redis_client.zscore(KEYS.ranking_annualised, meh.quote.cover_id) is None
        assert float(rec[b"net_profit"]) == pytest.approx(2.5) and data["curve"] == {}
        assert data["legs"][0]["tick"] == 0.01 and data["payout_date"] == "2026-12-31"
    finally:
        writer.close()


def test_replayed_batch_writes_nothing_new(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        a = make_change("1", "2", 0.40, 0.55, 1000)
        newer = make_change("1", "2", 0.41, 0.55, 2000)
        gone = PortfolioRemoved(make_change("5", "6", 0.5, 0.5, 1).quote.cover_id, "market_closed")
        assert writer.write_now({a.quote.cover_id: a}) == [3]
        assert writer.write_now({a.quote.cover_id: newer}) == [1]
        stream_len = redis_client.xlen(KEYS.changes)
        # replay of the older and of the identical change, and a removal of an absent portfolio
        assert writer.write_now({a.quote.cover_id: a}) == [0]
        assert writer.write_now({a.quote.cover_id: newer, gone.cover_id: gone}) == [0, 0]
        assert redis_client.xlen(KEYS.changes) == stream_len
        assert orjson.loads(redis_client.hget(KEYS.portfolio(a.quote.cover_id), "data"))["updated_ms"] == 2000
    finally:
        writer.close()


def test_a_script_redis_lost_is_loaded_again_and_the_batch_written(redis_server: EmbeddedRedis,
                                                                    redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        a = make_change("1", "2", 0.40, 0.55, 1000)
        assert writer.write_now({a.quote.cover_id: a}) == [3]
        redis_client.script_flush()  # what a restart without persistence does to the scripts
        newer = make_change("1", "2", 0.41, 0.55, 2000)
        assert writer.write_now({a.quote.cover_id: newer}) == [1]
        assert orjson.loads(redis_client.hget(KEYS.portfolio(a.quote.cover_id), "data"))["updated_ms"] == 2000
        # one round trip per batch: no SCRIPT EXISTS before each one
        def script_calls() -> int:  # SCRIPT subcommands ("cmdstat_script" up to Redis 6, "…|exists" from 7)
            stats = redis_client.info("commandstats")
            return sum(int(v.get("calls", 0)) for k, v in stats.items() if k.startswith("cmdstat_script"))

        before = script_calls()
        writer.write_now({a.quote.cover_id: make_change("1", "2", 0.42, 0.55, 3000)})
        assert script_calls() == before
    finally:
        writer.close()


def test_removal_deletes_everywhere_and_streams_it(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        a = make_change("1", "2", 0.40, 0.55, 1000)
        cid = a.quote.cover_id
        writer.write_now({cid: a})
        assert writer.write_now({cid: PortfolioRemoved(cid, "market_closed")}) == [1]
        assert not redis_client.exists(KEYS.portfolio(cid))
        assert redis_client.zcard(KEYS.ranking) == 0 and redis_client.zcard(KEYS.opportunities) == 0
        last = redis_client.xrevrange(KEYS.changes, count=1)[0][1]
        assert last[b"op"] == b"remove" and last[b"id"] == cid.encode() and last[b"reason"] == b"market_closed"
    finally:
        writer.close()


def test_alerts_only_on_transitions(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe(KEYS.alerts)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    writer = PortfolioWriter(redis_server.url, KEYS)
    try:
        cid = make_change("1", "2", 0.5, 0.5, 0).quote.cover_id
        writer.write_now({cid: make_change("1", "2", 0.50, 0.53, 1)})  # tier 1, not profitable
        writer.write_now({cid: make_change("1", "2", 0.50, 0.54, 2)})  # still tier 1: no alert
        writer.write_now({cid: make_change("1", "2", 0.40, 0.54, 3)})  # turns profitable
        writer.write_now({cid: make_change("1", "2", 0.39, 0.54, 4)})  # still profitable: no alert
        alerts = []
        while (msg := pubsub.get_message(timeout=0.5)) is not None:
            alerts.append(orjson.loads(msg["data"])["alert"])
        assert alerts == ["tier1", "profitable"]
    finally:
        writer.close()
        pubsub.close()


def test_redis_outage_keeps_changes_and_writes_them_when_back() -> None:
    with EmbeddedRedis() as server:
        sink = MetricGroup("sink")
        writer = PortfolioWriter(server.url, KEYS, backoff_initial=0.05, backoff_max=0.2, metrics=sink)
        try:
            client = redis.Redis.from_url(server.url)
            first = make_change("1", "2", 0.40, 0.55, 1)
            writer.submit([first])
            wait_for(lambda: client.exists(KEYS.portfolio(first.quote.cover_id)) == 1)
            client.close()
            server.stop()
            during = [make_change(str(i), str(i + 1), 0.4, 0.5, 10 + i) for i in range(10, 60, 2)]
            writer.submit(during)
            wait_for(lambda: sink.get("write_errors") > 0)
            assert writer.pending > 0  # kept, not dropped
            server.start()  # same port
            client = redis.Redis.from_url(server.url)
            wait_for(lambda: writer.pending == 0 and client.zcard(KEYS.ranking) == 1 + len(during), timeout=15)
            client.close()
        finally:
            writer.close()


def test_submit_never_blocks_while_redis_is_down() -> None:
    with EmbeddedRedis() as server:
        writer = PortfolioWriter(server.url, KEYS, backoff_initial=0.05, backoff_max=0.1)
        server.stop()
        try:
            t0 = time.monotonic()
            for i in range(200):
                writer.submit([make_change(str(i), "x", 0.4, 0.5, i)])
            assert time.monotonic() - t0 < 1.0
            # coalescing: the same portfolio submitted again replaces its pending change
            writer.submit([make_change("0", "x", 0.3, 0.5, 999)])
            # (a batch being retried is briefly out of the pending map: wait for it to come back)
            wait_for(lambda: writer.pending == 200, timeout=5)
        finally:
            writer.close(timeout=0.5)


def test_monitoring_json_matches_redis(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    import httpx

    registry = MetricsRegistry()
    metrics = registry.group
    metrics("poller").set("last_poll_ts", 1_764_000_000.0)
    metrics("poller").set("last_poll_duration_s", 0.25)
    metrics("poller").inc("events_processed", 42)
    metrics("llm").observe("latency_s", 1.0)
    metrics("llm").observe("latency_s", 2.0)
    metrics("ws").set("connections", 3)
    metrics("ws").set("subscriptions", 1200)
    metrics("cache").inc("hits", 3)
    metrics("cache").inc("misses", 1)
    metrics("cache").set("size", 4)
    metrics("cache").inc("evictions", 0)
    MetricsWriter(redis_server.url, PREFIX, registry).write_once()
    writer = PortfolioWriter(redis_server.url, KEYS)
    writer.write_now({c.quote.cover_id: c for c in (make_change("1", "2", 0.4, 0.5, 1), make_change("3", "4", 0.4, 0.7, 1))})
    writer.close()
    with MonitoringServer(redis_server.url, PREFIX) as server:
        got = httpx.get(f"{server.url}/monitoring/performance", timeout=5).json()
    assert got == performance_report(redis_client, PREFIX)
    assert got["pipeline"] == {
        "last_run": "2025-11-24T16:00:00+00:00",
        "duration": 0.25,
        "events_processed": 42,
        "portfolios_found": redis_client.zcard(KEYS.ranking),
        "avg_llm_latency": 1.5,
        "websocket_connections": 3,
        "websocket_subscriptions": 1200,
    }
    assert got["pipeline"]["portfolios_found"] == 2
    assert got["cache"] == {"hit_rate": 0.75, "size": 4, "evictions": 0}


def test_metrics_of_several_processes_add_up(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    registry = MetricsRegistry()
    registry.group("ws").set("connections", 2)
    a = MetricsWriter(redis_server.url, PREFIX, registry)
    b = MetricsWriter(redis_server.url, PREFIX, registry)
    b.process = "other-host-1"
    a.write_once()
    b.write_once()
    assert performance_report(redis_client, PREFIX)["pipeline"]["websocket_connections"] == 4
    assert redis_client.ttl(KEYS.metrics("ws", a.process)) > 0


def test_writer_threads_do_not_leak() -> None:
    before = threading.active_count()
    with EmbeddedRedis() as server:
        for _ in range(3):
            PortfolioWriter(server.url, KEYS).close()
    assert threading.active_count() <= before


def test_redis_restarted_empty_while_idle_gets_every_live_portfolio_back() -> None:
    with EmbeddedRedis() as server:
        writer = PortfolioWriter(server.url, KEYS)
        try:
            changes = [make_change(str(i), str(i + 1), 0.4, 0.5, i) for i in range(0, 20, 2)]
            gone = changes.pop()
            writer.submit(changes + [gone])
            writer.submit([PortfolioRemoved(gone.quote.cover_id, "market_closed")])
            client = redis.Redis.from_url(server.url)
            wait_for(lambda: client.zcard(KEYS.ranking) == len(changes))
            before = {c.quote.cover_id: client.hgetall(KEYS.portfolio(c.quote.cover_id)) for c in changes}
            client.close()
            server.restart()  # comes back with no data, no write in between
            client = redis.Redis.from_url(server.url)
            wait_for(lambda: client.zcard(KEYS.ranking) == len(changes), timeout=15)
            assert not client.exists(KEYS.portfolio(gone.quote.cover_id))
            # the writer kept the quotes, not their text: serialized again, they are the same records
            assert {cid: client.hgetall(KEYS.portfolio(cid)) for cid in before} == before
            client.close()
        finally:
            writer.close()


def test_monitoring_shows_every_rejection_and_thread_health(redis_server: EmbeddedRedis,
                                                            redis_client: redis.Redis) -> None:
    a, b = MetricsRegistry(), MetricsRegistry()
    a.group("poller").inc("rejected_id_jump", 2)
    a.group("poller").inc("errors_parse", 3)
    a.group("steps").inc("rejected_group_TypeError")
    a.group("ws").inc("rejected_side", 4)
    a.group("ws").inc("reconnects", 9)  # not an error counter: not in the section
    b.group("ws").inc("rejected_side", 1)
    b.group("sink").set("writer_alive", 0)
    a.group("sink").set("writer_alive", 1)  # another process's writer of that name runs: 0 still shows
    a.group("ws").inc("unknown_token", 6)
    wa, wb = MetricsWriter(redis_server.url, PREFIX, a), MetricsWriter(redis_server.url, PREFIX, b)
    wb.process = "other-host-2"
    wa.write_once()
    wb.write_once()
    report = performance_report(redis_client, PREFIX)
    assert report["errors"] == {"poller": {"errors_parse": 3, "rejected_id_jump": 2},
                                "steps": {"rejected_group_TypeError": 1},
                                "ws": {"rejected_side": 5, "unknown_token": 6}}
    assert report["health"] == {"sink": {"writer_alive": 0}}


def test_a_portfolio_orjson_cannot_write_is_dropped_the_others_reach_redis(redis_server: EmbeddedRedis,
                                                                            redis_client: redis.Redis) -> None:
    sink = MetricGroup("sink")
    writer = PortfolioWriter(redis_server.url, KEYS, metrics=sink)
    try:
        good1, good2 = make_change("a", "b", 0.4, 0.5, 1000), make_change("c", "d", 0.3, 0.5, 1000)
        poisoned = make_change("e", "f", 0.4, 0.4, 2**65)  # a CLOB timestamp above 2^64: orjson raises
        writer.submit([good1, poisoned, good2])
        assert writer.flush(timeout=10) is True
        ids = {m.decode() for m in redis_client.zrange(KEYS.ranking, 0, -1)}
        assert ids == {good1.quote.cover_id, good2.quote.cover_id}
        assert not redis_client.exists(KEYS.portfolio(poisoned.quote.cover_id))
        assert sink.get("rejected_unwritable") == 1 and sink.get("written") == 2 and sink.get("write_errors") == 0
        assert writer.thread_health()["alive"] is True and sink.get("portfolio_writer_alive") == 1
        later = make_change("g", "h", 0.2, 0.2, 2000)  # the thread still writes
        writer.submit([later])
        assert writer.flush(timeout=10) is True
        assert redis_client.zscore(KEYS.ranking, later.quote.cover_id) is not None
    finally:
        writer.close()


def test_observe_many_is_observe_of_each() -> None:
    one, many = MetricGroup("a", window=3), MetricGroup("b", window=3)
    for v in (1.0, 2.0, 4.0, 8.0):
        one.observe("x", v)
    many.observe_many("x", [1.0, 2.0])
    many.observe_many("x", [])
    many.observe_many("x", [4.0, 8.0])
    assert one.snapshot() == many.snapshot()
    assert list(one._samples["x"]) == list(many._samples["x"]) == [2.0, 4.0, 8.0]  # noqa: SLF001
    assert many.get("x_count") == 4 and many.get("x_sum") == 15.0
