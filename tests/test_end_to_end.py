"""The whole flow on the stand-ins: Gamma → groups → rule + LLM covers → join with live CLOB
prices → Redis. Compared with the universe's independent ground truth."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import orjson
import pytest
import redis
from bytewax.testing import cluster_main, run_main

from connectors.event_source import EventSource
from connectors.portfolio_sink import PortfolioWriter
from connectors.price_source import PriceShardSource
from connectors.redis_layout import RedisKeys
from connectors.redis_server import EmbeddedRedis
from flows.scanner import build_flow
from operators.async_llm import AsyncRunner
from polyalphascan import lifecycle
from polyalphascan.records import PortfolioUpsert
from polyalphascan.settings import load_settings
from standins.launcher import StandIns

pytestmark = pytest.mark.slow
PREFIX = "e2e"


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class RunningFlow:
    """The scanner flow in a background thread, stopped through the lifecycle flag."""

    def __init__(self, standins: StandIns, redis_url: str, workers: int = 1, **overrides: object) -> None:
        lifecycle.reset()
        AsyncRunner.reset()
        self.settings = load_settings(**standins.settings_overrides(), redis_url=redis_url, redis_key_prefix=PREFIX,
                                      poll_interval_seconds=0.3, full_reconcile_every=2, min_coverage=0.0,
                                      max_cost=100.0, ws_max_connections=4, ws_tokens_per_connection=500,
                                      **overrides)
        flow = build_flow(
            self.settings, redis_url,
            event_source=EventSource(self.settings, backoff_base=0.05),
            price_source=PriceShardSource(self.settings, redis_url, refresh_interval=0.1, stagger=0.05,
                                          backoff_base=0.1, backoff_max=1.0, ping_interval=1.0, stall_timeout=10.0),
        )
        self.error: BaseException | None = None
        self.workers = workers
        self.thread = threading.Thread(target=self._run, args=(flow,), daemon=True)
        self.thread.start()

    def _run(self, flow) -> None:  # noqa: ANN001
        try:
            if self.workers == 1:
                run_main(flow, epoch_interval=timedelta(milliseconds=200))
            else:
                cluster_main(flow, [], 0, epoch_interval=timedelta(milliseconds=200),
                             worker_count_per_proc=self.workers)
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def stop(self) -> None:
        lifecycle.request_stop("test done")
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "flow did not drain"
        lifecycle.reset()
        AsyncRunner.reset()


@pytest.fixture()
def world(redis_server: EmbeddedRedis) -> Iterator[tuple[StandIns, redis.Redis]]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    with StandIns(seed=17, n_events=60, clob_rate=50.0) as standins:
        yield standins, client
    client.close()


def live(client: redis.Redis) -> dict[str, dict]:
    keys = RedisKeys(PREFIX)
    ids = [i.decode() for i in client.zrange(keys.ranking, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for cid in ids:
        pipe.hget(keys.portfolio(cid), "data")
    return {cid: orjson.loads(raw) for cid, raw in zip(ids, pipe.execute()) if raw}


def converged(standins: StandIns, client: redis.Redis) -> Callable[[], bool]:
    def check() -> bool:
        truth = standins.universe.ground_truth()
        got = live(client)
        if set(got) != set(truth.covers):
            return False
        return all(abs(got[c]["cost"] - truth.covers[c].cost) < 1e-9 for c in got)
    return check


def test_flow_finds_exactly_the_universe_covers_and_reprices(world, redis_server: EmbeddedRedis) -> None:  # noqa: ANN001
    standins, client = world
    standins.clob.pause()  # prices still; the walk resumes later
    running = RunningFlow(standins, redis_server.url)
    try:
        wait_for(converged(standins, client), 60, "the universe's covers, priced")
        truth = standins.universe.ground_truth()
        got = live(client)
        assert {c for c, p in got.items() if p["profit"] > 1e-9} == truth.profitable
        kinds = {p["kind"] for p in got.values()}
        assert {"timeframe", "threshold", "all_no", "llm"} <= kinds
        assert all(not p["guaranteed"] for p in got.values() if p["kind"] == "llm")

        # a price move re-prices the affected portfolios in Redis, and only those
        keys = RedisKeys(PREFIX)
        before = {cid: p for cid, p in live(client).items()}
        stream_len = client.xlen(keys.changes)
        target = next(p for p in before.values() if p["kind"] == "timeframe")
        market_id = target["legs"][0]["market_id"]
        bid, ask = standins.universe.top(market_id)
        change = standins.universe.set_quote(market_id, round(bid - 0.03, 2), round(ask - 0.01, 2))
        standins.clob.push([change])
        wait_for(converged(standins, client), 30, "re-pricing after a move")
        after = live(client)
        moved = {cid for cid in before if before[cid]["cost"] != after[cid]["cost"]}
        holding = {cid for cid, p in before.items() if any(leg["market_id"] == market_id for leg in p["legs"])}
        assert moved and moved <= holding
        assert client.xlen(keys.changes) - stream_len <= len(holding)  # nothing else was rewritten

        # a closed market removes its portfolios (the poller's reconciliation + registry + join)
        victim = next(p for p in after.values() if p["kind"] == "threshold")["legs"][1]["market_id"]
        info = standins.universe.close_market(victim)
        standins.clob.broadcast_market_resolved(info)
        wait_for(lambda: not any(any(l["market_id"] == victim for l in p["legs"]) for p in live(client).values()),
                 30, "removal of the closed market's portfolios")
        wait_for(converged(standins, client), 30, "convergence after the closure")

        # a new outcome in an exhaustive candidate event: its old baskets are retracted
        candidate = next(str(e["id"]) for e in standins.universe.gamma_events()
                         if standins.universe.event_kind(str(e["id"])) == "candidate" and not e["closed"])
        standins.universe.add_market(candidate)
        wait_for(converged(standins, client), 30, "convergence after a new outcome")

        # live prices keep flowing: resume the walk and the scanner stays consistent
        sent = standins.clob.stats.updates_sent
        standins.clob.resume()
        wait_for(lambda: standins.clob.stats.updates_sent > sent + 100, 30, "price moves")
        standins.clob.pause()
        wait_for(converged(standins, client), 30, "convergence after the random walk")
    finally:
        running.stop()
    assert running.error is None


def test_replayed_batch_writes_nothing_new(world, redis_server: EmbeddedRedis) -> None:  # noqa: ANN001
    standins, client = world
    standins.clob.pause()
    running = RunningFlow(standins, redis_server.url)
    try:
        wait_for(converged(standins, client), 60, "the universe's covers, priced")
    finally:
        running.stop()
    keys = RedisKeys(PREFIX)
    snapshot = {k: client.dump(k) for k in client.scan_iter(f"{PREFIX}:v1:portfolio:*")}
    stream_len = client.xlen(keys.changes)
    # replay the newest upsert of every portfolio, as recovery would after a crash
    from polyalphascan.records import CoverKind, CoverSpec, Leg, LegQuote, PortfolioQuote, Side
    writer = PortfolioWriter(redis_server.url, keys)
    batch = {}
    for cid, p in live(client).items():
        legs = tuple(Leg(l["market_id"], Side(l["side"]), "", "", l["question"], l["event_id"]) for l in p["legs"])
        spec = CoverSpec(CoverKind(p["kind"]), legs, p["guaranteed"], 1.0, p["payout"], p["explanation"], id=cid)
        quote = PortfolioQuote(cid, CoverKind(p["kind"]), p["guaranteed"],
                               tuple(LegQuote(l["market_id"], Side(l["side"]), l["token_id"], l["ask"], l["ask_size"])
                                     for l in p["legs"]),
                               p["cost"], p["payout"], p["profit"], p["profit_pct"], p["coverage"],
                               p["loss_probability"], p["expected_profit"], p["tier"], p["size_at_profit"],
                               p["updated_ms"])
        batch[cid] = PortfolioUpsert(quote, spec)
    results = writer.write_now(batch)
    writer.close()
    assert results and all(r == 0 for r in results)
    assert client.xlen(keys.changes) == stream_len
    assert {k: client.dump(k) for k in client.scan_iter(f"{PREFIX}:v1:portfolio:*")} == snapshot


def test_two_workers_give_the_same_portfolios(world, redis_server: EmbeddedRedis) -> None:  # noqa: ANN001
    standins, client = world
    standins.clob.pause()
    running = RunningFlow(standins, redis_server.url, workers=2)
    try:
        wait_for(converged(standins, client), 90, "the universe's covers, priced, with 2 workers")
        got = live(client)
        assert {c for c, p in got.items() if p["profit"] > 1e-9} == standins.universe.ground_truth().profitable
    finally:
        running.stop()
    assert running.error is None


def test_redis_down_10s_and_back_empty_loses_no_portfolio_update() -> None:
    with EmbeddedRedis() as server, StandIns(seed=19, n_events=40, clob_rate=50.0) as standins:
        standins.clob.pause()
        client = redis.Redis.from_url(server.url)
        running = RunningFlow(standins, server.url)
        try:
            wait_for(converged(standins, client), 60, "first convergence")
            client.close()
            server.stop()
            # while Redis is down: a price move the scanner must not lose
            market_id = next(iter(standins.universe.ground_truth().covers.values())).legs[0].market_id
            bid, ask = standins.universe.top(market_id)
            standins.clob.push([standins.universe.set_quote(market_id, round(bid - 0.02, 2), round(ask - 0.01, 2))])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                assert running.thread.is_alive() and running.error is None  # the flow keeps running
                time.sleep(0.5)
            server.start()  # same port, no data: writers notice the restart and rewrite
            client = redis.Redis.from_url(server.url)
            wait_for(converged(standins, client), 60, "convergence after the outage, including the move")
        finally:
            running.stop()
        assert running.error is None
        client.close()
