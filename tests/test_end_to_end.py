"""The whole flow on the stand-ins: Gamma → groups → rule + LLM covers → join with live CLOB
prices → Redis. Compared with the universe's independent ground truth."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import orjson
import pytest
import redis
from bytewax.testing import cluster_main, run_main

from connectors.gamma.source import EventSource
from connectors.redis.portfolio_sink import PortfolioWriter
from connectors.clob.source import PriceShardSource
from connectors.clob.protocol import BOOK_DEPTH
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from flows.scanner import build_flow
from polyalphascan.records import PortfolioUpsert
from polyalphascan.scope import FlowScope
from polyalphascan.settings import load_settings
from standins.launcher import StandIns
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
PREFIX = "e2e"


wait_for = functools.partial(wait_for, every=0.05)


class RunningFlow:
    """The scanner flow in a background thread, stopped through its scope's stop signal."""

    def __init__(self, standins: StandIns, redis_url: str, workers: int = 1, **overrides: object) -> None:
        self.settings = load_settings(**standins.settings_overrides(), redis_url=redis_url, redis_key_prefix=PREFIX,
                                      poll_interval_seconds=0.3, full_reconcile_every=2, min_coverage=0.0,
                                      max_cost=100.0, ws_max_connections=4, ws_tokens_per_connection=500,
                                      **overrides)
        self.scope = FlowScope()
        s = self.settings
        flow = build_flow(
            self.settings, redis_url, scope=self.scope,
            event_source=EventSource(
                base_url=self.settings.gamma_api_url, tags=self.settings.polymarket_tag,
                poll_interval_s=self.settings.poll_interval_seconds,
                incremental=self.settings.enable_incremental_update, full_every=self.settings.full_reconcile_every,
                stop=self.scope.stop, metrics=self.scope.metrics.group("poller"), backoff_base=0.05),
            price_source=PriceShardSource(
                s.clob_ws_url, redis_url, key_prefix=s.redis_key_prefix, max_connections=s.ws_max_connections,
                tokens_per_connection=s.ws_tokens_per_connection, queue_max=s.price_queue_max_size,
                stop=self.scope.stop, metrics=self.scope.metrics.group("ws"), refresh_interval=0.1, stagger=0.05,
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
        self.scope.request_stop("test done")
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "flow did not drain"


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


def profitable_size(books: list[list[tuple[float, float]]], payout: float, min_order: float = 5.0) -> float:
    """The most share-sets (equal shares per leg) whose every share-set costs less than `payout`,
    from each leg's levels (best first) — by the cumulative-size breakpoints, not by the
    production walk; floored to 0.01 share, 0 below the minimum order (Gamma's default 5)."""
    cums = []
    for levels in books:
        total, cum = 0.0, []
        for price, size in levels:
            total = round(total + size, 6)
            cum.append((total, price))
        cums.append(cum)
    depth = min(c[-1][0] for c in cums)
    size = 0.0
    for cut in sorted({t for c in cums for t, _ in c if t <= depth}):
        marginal = sum(next(p for t, p in c if t >= cut) for c in cums)  # the level that share falls in
        if marginal >= payout - 1e-9:
            break
        size = cut
    size = int(size * 100 + 1e-6) / 100
    return size if size >= min_order else 0.0


def expected_portfolio(standins: StandIns, cover, cover_probability: float = 0.98) -> dict:  # noqa: ANN001
    """Every published number of a cover, from the universe's books and the README's rules
    (independent of operators/pricing.py): asks and sizes per leg, cost, profit, coverage,
    loss probability, tier, expected profit and the size buyable at a profit."""
    u = standins.universe
    legs = []
    depth = []  # each leg's levels as it buys them, the BOOK_DEPTH best (what a PriceUpdate carries)
    for lg, ask in zip(cover.legs, cover.leg_asks, strict=True):
        book = u.book(lg.yes_token)
        assert book is not None, lg
        if lg.side.value == "YES":
            size = min(book.asks)[1]  # buys the YES ask
            token = lg.yes_token
            depth.append(sorted(book.asks)[:BOOK_DEPTH])
        else:
            size = max(book.bids)[1]  # NO ask = 1 - YES bid: its size is the bid's
            token = lg.no_token
            depth.append([(1 - p, s) for p, s in sorted(book.bids, reverse=True)[:BOOK_DEPTH]])
        legs.append({"market_id": lg.market_id, "side": lg.side.value, "token_id": token, "ask": ask, "ask_size": size})
    p_target = cover.leg_asks[0]
    coverage = 1.0 if cover.guaranteed else p_target + (1 - p_target) * cover_probability
    tier = 1 if coverage >= 0.95 - 1e-9 else 2 if coverage >= 0.90 - 1e-9 else 3 if coverage >= 0.85 - 1e-9 else 4
    if not cover.guaranteed:
        tier = max(tier, 2)  # tier 1 is for guaranteed covers only
    profit = cover.payout - cover.cost
    return {
        "id": cover.id, "kind": cover.kind.value, "guaranteed": cover.guaranteed, "legs": legs,
        "cost": cover.cost, "payout": cover.payout, "profit": profit, "profit_pct": profit / cover.cost * 100,
        "coverage": coverage, "loss_probability": 0.0 if cover.guaranteed else (1 - p_target) * (1 - cover_probability),
        "expected_profit": coverage * cover.payout - cover.cost, "tier": tier,
        "size_at_profit": profitable_size(depth, cover.payout) if profit > 1e-9 else 0.0,
    }


def differences(want: dict, got: dict) -> list[str]:
    """The fields of a published portfolio that differ from the expected one."""
    out = []
    for key, value in want.items():
        if key == "legs":
            mine = [{k: lg[k] for k in ("market_id", "side", "token_id", "ask", "ask_size")} for lg in got["legs"]]
            if len(mine) != len(value) or any(
                    a["market_id"] != b["market_id"] or a["side"] != b["side"] or a["token_id"] != b["token_id"]
                    or abs(a["ask"] - b["ask"]) > 1e-9 or a["ask_size"] != b["ask_size"] for a, b in zip(mine, value)):
                out.append(f"legs: {mine} != {value}")
        elif isinstance(value, float):
            if abs(got[key] - value) > 1e-9:
                out.append(f"{key}: {got[key]} != {value}")
        elif got[key] != value:
            out.append(f"{key}: {got[key]!r} != {value!r}")
    return out


def converged(standins: StandIns, client: redis.Redis, report: list[str] | None = None) -> Callable[[], bool]:
    """Redis holds exactly the universe's covers, each with every published field as expected
    (and the flat hash fields, the ranking and the opportunity set agree with it)."""
    keys = RedisKeys(PREFIX)

    def check() -> bool:
        truth = standins.universe.ground_truth()
        got = live(client)
        if set(got) != set(truth.covers):
            if report is not None:
                report[:] = [f"ids: missing {len(set(truth.covers) - set(got))}, extra {len(set(got) - set(truth.covers))}"]
            return False
        diffs = {cid: d for cid in got if (d := differences(expected_portfolio(standins, truth.covers[cid]), got[cid]))}
        if report is not None:
            report[:] = [f"{cid}: {d}" for cid, d in list(diffs.items())[:5]]
        if diffs:
            return False
        # the riskless set holds the guaranteed ones only; LLM ones are kept apart
        opportunities = {m.decode() for m in client.zrange(keys.opportunities, 0, -1)}
        llm_opportunities = {m.decode() for m in client.zrange(keys.llm_opportunities, 0, -1)}
        guaranteed = {cid for cid in truth.profitable if truth.covers[cid].guaranteed}
        ranking = dict((m.decode(), s) for m, s in client.zrange(keys.ranking, 0, -1, withscores=True))
        return opportunities == guaranteed and llm_opportunities == truth.profitable - guaranteed and all(
            abs(ranking[cid] - p["expected_profit"]) < 1e-9 for cid, p in got.items())
    return check


def wait_converged(standins: StandIns, client: redis.Redis, timeout: float, what: str) -> None:
    report: list[str] = []
    try:
        wait_for(converged(standins, client, report), timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last differences: {report}") from None


def test_flow_finds_exactly_the_universe_covers_and_reprices(world, redis_server: EmbeddedRedis) -> None:  # noqa: ANN001
    standins, client = world
    standins.clob.pause()  # prices still; the walk resumes later
    running = RunningFlow(standins, redis_server.url)
    try:
        wait_converged(standins, client, 60, "the universe's covers, priced")
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
        wait_converged(standins, client, 30, "re-pricing after a move")
        after = live(client)
        moved = {cid for cid in before if before[cid]["cost"] != after[cid]["cost"]}
        holding = {cid for cid, p in before.items() if any(leg["market_id"] == market_id for leg in p["legs"])}
        assert moved and moved <= holding
        assert client.xlen(keys.changes) - stream_len <= len(holding)  # nothing else was rewritten

        # a change of size alone (same prices) reaches every holder's published sizes
        bid, ask = standins.universe.top(market_id)
        standins.clob.push([standins.universe.set_quote(market_id, bid, ask, size=37.0)])
        wait_converged(standins, client, 30, "new sizes after a size-only change")
        sizes = {lg["ask_size"] for p in live(client).values() for lg in p["legs"] if lg["market_id"] == market_id}
        assert sizes == {37.0}

        # a closed market removes its portfolios (the poller's reconciliation + registry + join)
        victim = next(p for p in after.values() if p["kind"] == "threshold")["legs"][1]["market_id"]
        info = standins.universe.close_market(victim)
        standins.clob.broadcast_market_resolved(info)
        wait_for(lambda: not any(any(l["market_id"] == victim for l in p["legs"]) for p in live(client).values()),
                 30, "removal of the closed market's portfolios")
        wait_converged(standins, client, 30, "convergence after the closure")

        # a new outcome in an exhaustive candidate event: its old baskets are retracted
        candidate = next(str(e["id"]) for e in standins.universe.gamma_events()
                         if standins.universe.event_kind(str(e["id"])) == "candidate" and not e["closed"])
        standins.universe.add_market(candidate)
        wait_converged(standins, client, 30, "convergence after a new outcome")

        # live prices keep flowing: resume the walk and the scanner stays consistent
        sent = standins.clob.stats.updates_sent
        standins.clob.resume()
        wait_for(lambda: standins.clob.stats.updates_sent > sent + 100, 30, "price moves")
        standins.clob.pause()
        wait_converged(standins, client, 30, "convergence after the random walk")
    finally:
        running.stop()
    assert running.error is None


def test_replayed_batch_writes_nothing_new(world, redis_server: EmbeddedRedis) -> None:  # noqa: ANN001
    standins, client = world
    standins.clob.pause()
    running = RunningFlow(standins, redis_server.url)
    try:
        wait_converged(standins, client, 60, "the universe's covers, priced")
    finally:
        running.stop()
    keys = RedisKeys(PREFIX)
    snapshot = {k: client.dump(k) for k in client.scan_iter(f"{PREFIX}:v2:portfolio:*")}
    stream_len = client.xlen(keys.changes)
    # replay the newest upsert of every portfolio, as recovery would after a crash
    from polyalphascan.records import CoverKind, CoverSpec, Leg, LegQuote, PortfolioQuote, Side
    writer = PortfolioWriter(redis_server.url, keys)
    batch = {}
    for cid, p in live(client).items():
        legs = tuple(Leg(l["market_id"], Side(l["side"]), "", "", l["question"], l["event_id"]) for l in p["legs"])
        spec = CoverSpec(CoverKind(p["kind"]), legs, p["guaranteed"], 1.0, p["payout"], p["explanation"], id=cid)
        quote = PortfolioQuote(cid, CoverKind(p["kind"]), p["guaranteed"],
                               tuple(LegQuote(l["market_id"], Side(l["side"]), l["token_id"], l["ask"], l["ask_size"],
                                              None, l["shares"], l["limit"], l["vwap"], l["fee"], l["tick"],
                                              l["min_size"], l["neg_risk"])
                                     for l in p["legs"]),
                               p["cost"], p["payout"], p["profit"], p["profit_pct"], p["coverage"],
                               p["loss_probability"], p["expected_profit"], p["tier"], p["size_at_profit"],
                               p["updated_ms"], net_profit=p["net_profit"], vwap_cost=p["vwap_cost"], fees=p["fees"],
                               curve=tuple(p["curve"].values()), payout_date=p["payout_date"],
                               annualised=p["annualised"])
        batch[cid] = PortfolioUpsert(quote, spec)
    results = writer.write_now(batch)
    writer.close()
    assert results and all(r == 0 for r in results)
    assert client.xlen(keys.changes) == stream_len
    assert {k: client.dump(k) for k in client.scan_iter(f"{PREFIX}:v2:portfolio:*")} == snapshot


def test_two_workers_give_the_same_portfolios(world, redis_server: EmbeddedRedis) -> None:  # noqa: ANN001
    standins, client = world
    standins.clob.pause()
    running = RunningFlow(standins, redis_server.url, workers=2)
    try:
        wait_converged(standins, client, 90, "the universe's covers, priced, with 2 workers")
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
            wait_converged(standins, client, 60, "first convergence")
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
            wait_converged(standins, client, 60, "convergence after the outage, including the move")
        finally:
            running.stop()
        assert running.error is None
        client.close()
