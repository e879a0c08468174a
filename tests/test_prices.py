"""CLOB stand-in, frame parsing, token registry and the price shard source, over real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import bytewax.operators as op
import orjson
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, cluster_main

from connectors.clob.client import ShardClient
from connectors.clob.protocol import BookTracker
from connectors.clob.source import PriceShardSource
from connectors.redis.server import EmbeddedRedis
from connectors.redis.token_registry import TokenRegistry
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Market
from standins.clob_server import ClobFaults, ClobServer
from standins.universe import Universe
from tests.waiting import wait_for




def markets(n: int, start: int = 0) -> list[Market]:
    return [Market(id=str(i), event_id="e", question="q", slug="s", condition_id="0x", yes_token=f"y{i}",
                   no_token=f"n{i}") for i in range(start, start + n)]


# ------------------------------------------------------------------ protocol
def test_tracker_books_changes_arrays_and_bad_input() -> None:
    t = BookTracker(shard=3)
    t.subscribed = {"a"}
    t.complements = {"b"}
    book = {"event_type": "book", "asset_id": "a", "market": "0x1", "timestamp": "100",
            "bids": [{"price": "0.40", "size": "10"}, {"price": "0.41", "size": "5"}],
            "asks": [{"price": "0.45", "size": "7"}, {"price": "0.44", "size": "0"}]}
    (u,) = t.handle(orjson.dumps([book]), 5)
    assert (u.token_id, u.best_bid, u.best_ask, u.bid_size, u.ask_size, u.exchange_ts_ms, u.shard) == ("a", 0.41, 0.45, 5, 7, 100, 3)
    change = {"event_type": "price_change", "market": "0x1", "timestamp": "200", "price_changes": [
        {"asset_id": "a", "price": "0.41", "size": "0", "side": "BUY", "best_bid": "0.40", "best_ask": "0.45"},
        {"asset_id": "b", "price": "0.59", "size": "3", "side": "SELL"}]}
    (u,) = t.handle(orjson.dumps(change).decode(), 6)
    assert (u.best_bid, u.bid_size, u.exchange_ts_ms) == (0.40, 10, 200)
    assert t.handle(orjson.dumps(change), 7) == []  # no top change: nothing emitted
    assert t.events["complement_skipped"] == 2
    assert t.handle("PONG", 1) == [] and t.handle("INVALID OPERATION", 1) == []
    assert t.handle('{"event_type": "book", "asset_id": ', 1) == []
    assert t.handle('{"event_type": "mystery"}', 1) == []
    assert t.handle(orjson.dumps({**book, "asset_id": "zzz"}), 1) == []
    assert t.handle(orjson.dumps({**book, "bids": [{"price": "1.7", "size": "1"}]}), 1) == []
    assert t.handle('{"event_type":"price_change","price_changes":"oops"}', 1) == []
    assert dict(t.errors) == {"malformed_frame": 1, "unknown_event_type": 1, "unknown_token": 1,
                              "price_out_of_range": 1, "malformed_message": 1}
    (u,) = t.handle(orjson.dumps({"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.42",
                                  "best_ask": "0.43", "timestamp": "300"}), 9)
    assert (u.best_bid, u.best_ask) == (0.42, 0.43)


# ------------------------------------------------------------------ registry
def test_registry_shards_keep_slots_and_report_overflow(redis_client: redis.Redis) -> None:
    reg = TokenRegistry(redis_client, "t", max_shards=3, tokens_per_shard=500)
    assert reg.add_markets(markets(1200)) == (1200, 0)
    assert [len(reg.shard_tokens(i)) for i in range(3)] == [500, 500, 200]
    where = {f"y{i}": reg.shard_of(f"y{i}") for i in range(1200)}
    reg.add_markets(markets(1200))  # idempotent
    reg.remove_tokens(["y3", "y700"])
    reg.add_markets(markets(5, start=5000))  # fill the freed slots, others keep theirs
    assert all(reg.shard_of(t) == s for t, s in where.items() if t not in ("y3", "y700"))
    assert reg.shard_of("y5000") == 0 and reg.shard_of("y5001") == 1 and reg.shard_of("y5002") == 2
    # 1,203 subscribed of 1,500: 297 more fit, 103 wait in the overflow
    assert reg.add_markets(markets(400, start=6000)) == (297, 103)
    assert reg.overflow() == 103
    v = reg.version()
    reg.remove_tokens([f"y{i}" for i in range(10)])
    assert reg.overflow() == 103 - 9 and reg.version() > v  # freed slots go to waiting tokens
    assert sum(len(reg.shard_tokens(i)) for i in range(3)) == 1500


# ------------------------------------------------------------------ server + shard client
@pytest.fixture()
def universe() -> Universe:
    return Universe(seed=9, n_events=120)


@pytest.fixture()
def clob(universe: Universe) -> Iterator[ClobServer]:
    with ClobServer(universe, rate=500) as server:
        yield server


def yes_tokens(universe: Universe, n: int) -> list[Market]:
    out = []
    for e in universe.gamma_events():
        for m in e["markets"]:
            if not m["closed"] and m.get("active", True):  # inactive placeholders have no book
                ids = m["positionIds"] if m.get("version") == "v2" else orjson.loads(m["clobTokenIds"])
                out.append(Market(id=m["id"], event_id=str(e["id"]), question=m["question"], slug="", condition_id="",
                                  yes_token=str(ids[0]), no_token=str(ids[1])))
    return out[:n]


def client_for(clob: ClobServer, reg: TokenRegistry, shard: int = 0, **kw) -> ShardClient:
    params = dict(ping_interval=0.2, stall_timeout=1.0, backoff_base=0.05, backoff_max=0.2, refresh_interval=0.05,
                  stagger=0.0, queue_max=10_000)
    params.update(kw)
    return ShardClient(shard, clob.url, reg, metrics=MetricGroup("ws"), **params)


def test_adding_a_token_is_one_subscribe_and_no_reconnect(redis_client: redis.Redis, clob: ClobServer,
                                                          universe: Universe) -> None:
    ms = yes_tokens(universe, 41)
    reg = TokenRegistry(redis_client, "t", max_shards=1, tokens_per_shard=500)
    reg.add_markets(ms[:40])
    client = client_for(clob, reg)
    try:
        wait_for(lambda: len(client.tracker.top) == 40, what="initial books")
        got = {u.token_id for u in client.drain()}
        assert got == {m.yes_token for m in ms[:40]}
        reg.add_markets(ms[40:])
        wait_for(lambda: ms[40].yes_token in client.tracker.top, what="book of the added token")
        # the NO side of every subscribed market (the added one too) is expected in price_change, not an error
        assert client.tracker.complements == {m.no_token for m in ms}
        wait_for(lambda: client.tracker.events["complement_skipped"] > 0, what="a NO-token entry")
        assert client.tracker.errors["unknown_token"] == 0
        (cid,) = clob.subscribers()
        assert clob.stats.connections_total == 1
        assert clob.stats.ops_by_connection[cid] == [("initial", 40), ("subscribe", 1)]
        reg.remove_tokens([ms[0].yes_token])  # a market closed
        wait_for(lambda: ms[0].yes_token not in clob.subscribers()[cid], what="unsubscribe")
        assert clob.stats.ops_by_connection[cid][-1] == ("unsubscribe", 1)
        assert clob.stats.connections_total == 1
        wait_for(lambda: clob.stats.pings > 0, what="PING")
    finally:
        client.stop()


def test_dropped_connection_and_silent_stall_recover_and_resync(redis_client: redis.Redis, clob: ClobServer,
                                                               universe: Universe) -> None:
    ms = yes_tokens(universe, 30)
    reg = TokenRegistry(redis_client, "t", max_shards=1, tokens_per_shard=500)
    reg.add_markets(ms)
    client = client_for(clob, reg)
    try:
        wait_for(lambda: len(client.tracker.top) == 30, what="books")
        clob.drop_all()
        wait_for(lambda: client.reconnects >= 1 and client.connected and len(client.tracker.top) == 30, what="reconnect")
        clob.pause()  # no price moves, and a stall: PONGs keep coming, data does not
        clob.stall(True)
        wait_for(lambda: client.stalls >= 1, timeout=5, what="stall detected")
        clob.stall(False)
        # still silent, so the watchdog resubscribes again and fresh books resync every token
        wait_for(lambda: len(client.tracker.top) == 30, timeout=5, what="resync from fresh books")
        assert client.stalls >= 1
        clob.resume()
    finally:
        client.stop()


def test_malformed_duplicated_reordered_frames_are_counted_and_survived(redis_client: redis.Redis, clob: ClobServer,
                                                                        universe: Universe) -> None:
    clob.faults = ClobFaults(malformed_rate=0.2, duplicate_rate=0.1, reorder_rate=0.2, seed=4)
    ms = yes_tokens(universe, 50)
    reg = TokenRegistry(redis_client, "t", max_shards=1, tokens_per_shard=500)
    reg.add_markets(ms)
    client = client_for(clob, reg, stall_timeout=5.0)
    try:
        wait_for(lambda: sum(client.tracker.errors.values()) >= 5 and client.updates > 50, what="faults seen")
        assert client.connected and client._thread.is_alive()
        assert clob.stats.faults["malformed"] > 0 and clob.stats.faults["reordered"] > 0
        assert client.tracker.errors["malformed_frame"] > 0
        # the books afterwards: a frame replaced by garbage took its level changes with it, so
        # the shard is right again only from fresh snapshots; the walk stops, the socket drops,
        # and after the resync every token's top of book (prices and sizes) is the universe's
        clob.pause()
        clob.faults = ClobFaults()
        reconnects = client.reconnects
        clob.drop_all()
        truth = {m.yes_token: top_of(universe, m.yes_token) for m in ms}
        latest: dict[str, tuple] = {}

        def resynced() -> bool:
            latest.update({u.token_id: (u.best_bid, u.best_ask, u.bid_size, u.ask_size) for u in client.drain()})
            return client.reconnects > reconnects and client.connected and {
                t: client.tracker.top.get(t) for t in truth} == truth
        wait_for(resynced, what="books equal to the universe's after the resync")
        assert {t: latest[t] for t in truth} == truth  # and the last update of each token said so
    finally:
        client.stop()


def test_a_server_that_stops_answering_ping_is_left_and_reconnected(redis_client: redis.Redis) -> None:
    """Data keeps flowing but no PONG comes back: the client gives the socket up (heartbeat
    lost), counts a reconnect in its metric group, and opens a new one."""
    import threading

    from websockets.sync.server import serve

    connections: list[int] = []
    done = threading.Event()

    def handler(ws) -> None:  # noqa: ANN001
        connections.append(1)
        sub = orjson.loads(ws.recv(timeout=5))
        (token,) = sub["assets_ids"]
        n = 0
        try:
            while not done.is_set():  # PINGs are read and ignored
                n += 1
                ws.send(orjson.dumps({"event_type": "book", "asset_id": token, "timestamp": str(n),
                                      "bids": [{"price": "0.40", "size": str(n)}], "asks": []}).decode())
                try:
                    ws.recv(timeout=0.02)
                except TimeoutError:
                    pass
        except Exception:  # noqa: BLE001 - the client hung up
            return

    reg = TokenRegistry(redis_client, "t", max_shards=1, tokens_per_shard=500)
    reg.add_markets(markets(1))
    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        ws = MetricGroup("ws")
        client = ShardClient(0, url, reg, metrics=ws, ping_interval=0.1, stall_timeout=0.3, backoff_base=0.05,
                             backoff_max=0.1, refresh_interval=0.05, stagger=0.0, queue_max=10)
        try:
            wait_for(lambda: client.reconnects >= 2 and len(connections) >= 3, what="heartbeat lost, reconnected")
            assert client.stalls == 0  # data kept coming: not a stall
            assert ws.get("reconnects") == client.reconnects
        finally:
            client.stop()
            done.set()
            server.shutdown()


def top_of(universe: Universe, token: str) -> tuple:
    """(best bid, best ask, bid size, ask size) of a token's book in the universe."""
    snap = universe.book(token)
    assert snap is not None
    bid, ask = max(snap.bids), min(snap.asks)
    return (bid[0], ask[0], bid[1], ask[1])


def test_asset_cap_and_invalid_operation(clob: ClobServer) -> None:
    import websockets.sync.client as ws_sync

    with ws_sync.connect(clob.url) as ws:
        ws.send(orjson.dumps({"type": "market", "assets_ids": [f"x{i}" for i in range(501)]}).decode())
        assert "too many assets" in ws.recv(timeout=5)
        ws.send(orjson.dumps({"type": "market", "assets_ids": ["x"]}).decode())
        assert ws.recv(timeout=5) == "INVALID OPERATION"
        ws.send("PING")
        assert ws.recv(timeout=5) == "PONG"


def test_shards_spread_over_two_workers(redis_server: EmbeddedRedis, clob: ClobServer, universe: Universe) -> None:
    import threading
    stop = threading.Event()
    reg = TokenRegistry(redis.Redis.from_url(redis_server.url), "spread", 3, 20)
    reg.add_markets(yes_tokens(universe, 60))
    seen: list[tuple[int, int]] = []
    out: list = []

    def note(step_id, item, epoch, worker):  # noqa: ANN001
        seen.append((item.shard, worker))
        if len({s for s, _ in seen}) == 3 and len(seen) > 100:
            stop.set()

    flow = Dataflow("spread")
    ws = MetricGroup("ws")
    source = PriceShardSource(clob.url, redis_server.url, key_prefix="spread", max_connections=3,
                              tokens_per_connection=20, queue_max=10_000, ping_interval=10.0, stall_timeout=30.0,
                              stop=stop, metrics=ws, stagger=0.0, refresh_interval=0.1)
    prices = op.input("prices", flow, source)
    op.inspect_debug("where", prices, note)
    op.output("out", prices, TestingSink(out))
    timer = threading.Timer(20, stop.set)
    timer.start()
    try:
        cluster_main(flow, [], 0, epoch_interval=timedelta(milliseconds=200), worker_count_per_proc=2)
    finally:
        timer.cancel()
    workers_by_shard = {}
    for shard, worker in seen:
        workers_by_shard.setdefault(shard, set()).add(worker)
    assert set(workers_by_shard) == {0, 1, 2}
    assert all(len(w) == 1 for w in workers_by_shard.values())  # a shard lives on one worker
    assert {next(iter(w)) for w in workers_by_shard.values()} == {0, 1}  # both workers hold shards
    # the source owns its shards' clients and reports into the group it was given
    assert set(source.clients) == {0, 1, 2}
    assert "connections" in ws.snapshot() and "shard00_messages" in ws.snapshot()


def test_registry_writer_keeps_markets_through_a_redis_outage() -> None:
    from connectors.redis.token_registry import RegistryWriter
    from polyalphascan.records import DeltaKind, Event, EventDelta

    with EmbeddedRedis() as server:
        reg = TokenRegistry(redis.Redis.from_url(server.url, socket_timeout=1), "out", 2, 500)
        writer = RegistryWriter(reg, backoff_initial=0.05, backoff_max=0.2)
        try:
            ms = markets(30)
            writer.submit([EventDelta(DeltaKind.NEW, Event("1", "s", "t", markets=tuple(ms[:10])))])
            wait_for(lambda: len(reg.shard_tokens(0)) == 10, what="first markets")
            server.stop()
            writer.submit([EventDelta(DeltaKind.NEW, Event("2", "s", "t", markets=tuple(ms[10:])))])
            closed = Event("1", "s", "t", markets=tuple(ms[:10]))
            writer.submit([EventDelta(DeltaKind.MARKET_CLOSED, closed, (), (), ("0", "1"))])
            wait_for(lambda: writer.pending == 22 and reg.client.connection_pool is not None, what="kept while down")
            server.start()  # same port, empty: the writer's pending work re-applies
            # the restarted server came back empty: every open market is registered again
            wait_for(lambda: reg.shard_tokens(0) | reg.shard_tokens(1) == {f"y{i}" for i in range(2, 30)},
                     timeout=15, what="registry rebuilt")
        finally:
            writer.close(timeout=1)


def test_custom_features_broadcasts_and_connect_storm(clob: ClobServer, universe: Universe) -> None:
    import websockets.sync.client as ws_sync
    from websockets.exceptions import InvalidStatus

    ms = yes_tokens(universe, 20)
    before = clob.stats.initial_subscriptions
    with ws_sync.connect(clob.url) as ws, ws_sync.connect(clob.url) as other:
        ws.send(orjson.dumps({"type": "market", "assets_ids": [m.yes_token for m in ms],
                              "custom_feature_enabled": True}).decode())
        other.send(orjson.dumps({"type": "market", "assets_ids": ["unrelated"]}).decode())
        wait_for(lambda: clob.stats.initial_subscriptions == before + 2, what="both subscribed")
        seen: set[str] = set()
        clob.broadcast_market_resolved({"market": "0xabc", "id": "1", "assets_ids": ["a", "b"],
                                        "winning_asset_id": "a", "winning_outcome": "Yes"})
        clob.broadcast_new_market({"id": "2", "market": "0xdef", "question": "Q?", "slug": "q",
                                   "assets_ids": ["c", "d"], "outcomes": ["Yes", "No"]})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not {"book", "price_change", "best_bid_ask", "market_resolved",
                                                   "new_market"} <= seen:
            data = orjson.loads(ws.recv(timeout=5))
            seen |= {m["event_type"] for m in (data if isinstance(data, list) else [data])}
        assert {"book", "price_change", "best_bid_ask", "market_resolved", "new_market"} <= seen
        # lifecycle broadcasts reach every connection, subscribed to those assets or not
        got = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and got != {"market_resolved", "new_market"}:
            data = orjson.loads(other.recv(timeout=5))
            got |= {m["event_type"] for m in (data if isinstance(data, list) else [data])}
        assert got == {"market_resolved", "new_market"}
    clob.faults = ClobFaults(max_connects_per_second=2)
    refused = 0
    opened = []
    for _ in range(5):
        try:
            opened.append(ws_sync.connect(clob.url))
        except InvalidStatus as exc:
            assert exc.response.status_code == 429
            refused += 1
    for c in opened:
        c.close()
    assert refused >= 3 and clob.stats.refused_429 == refused


def test_tokens_that_never_get_a_book_are_subscribed_again_until_covered(redis_client: redis.Redis,
                                                                       universe: Universe) -> None:
    """Per-asset silent loss (the stand-in gives 3 subscriptions nothing, no book, no change):
    coverage stays below 100 % until the client subscribes those tokens again, then reaches it."""
    ms = yes_tokens(universe, 30)
    reg = TokenRegistry(redis_client, "cov", max_shards=1, tokens_per_shard=500)
    reg.add_markets(ms)
    with ClobServer(universe, rate=200, faults=ClobFaults(silent_first_subscriptions=3)) as clob:
        client = client_for(clob, reg, stall_timeout=30.0, book_timeout=0.5)
        try:
            wait_for(lambda: client.coverage() == (30, 27), what="27 of 30 books, 3 lost")
            wait_for(lambda: client.coverage() == (30, 30), what="every book after the resubscriptions")
            assert client.metrics.get("coverage_resubscribes") == 3 and clob.stats.faults["silent_subscription"] == 3
            client.report()
            assert client.metrics.get("shard00_coverage_pct") == 100.0 and client.metrics.get("shard00_booked") == 30
            assert clob.stats.connections_total == 1  # covered without a reconnect
        finally:
            client.stop()
