"""The keyed join of covers with prices (operators/portfolio_join.py).

The logic classes directly (on_item / snapshot / resume), then the two keyed stages in a real
Bytewax flow with one and with two workers. Pricing is the real `price_cover`.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, cluster_main, run_main

from operators.portfolio_join import CoverPricer, TokenFanout, portfolio_join
from operators.pricing import price_cover
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import (
    CoverKind,
    CoverSpec,
    Leg,
    MarketClosed,
    PortfolioRemoved,
    PortfolioUpsert,
    PriceUpdate,
    Side,
)

MIN_COV, MAX_COST = 0.85, 1.5


def pair(a: int, b: int, kind: CoverKind = CoverKind.TIMEFRAME) -> CoverSpec:
    legs = (Leg(f"m{a}", Side.YES, f"y{a}", f"n{a}", f"Q{a}?"), Leg(f"m{b}", Side.NO, f"y{b}", f"n{b}", f"Q{b}?"))
    return CoverSpec(kind, legs, True, 1.0)


def px(tok: int, bid: float, ask: float, ts: int = 1) -> PriceUpdate:
    return PriceUpdate(f"y{tok}", bid, ask, 10.0, 10.0, ts, ts)


# ----------------------------------------------------------------------------- stage 1
def test_fanout_reaches_only_covers_holding_the_token() -> None:
    f = TokenFanout(None)
    a, b = pair(1, 2), pair(1, 3)
    assert f.on_item(("px", px(1, 0.4, 0.42))) == ([], StatefulLogic.RETAIN)  # nobody holds it yet
    out, keep = f.on_item(("reg", a))
    # a new cover gets its registration, then the token's current price
    assert [(cid, m[0]) for cid, m in out] == [(a.id, "reg"), (a.id, "px")] and keep is StatefulLogic.RETAIN
    f.on_item(("reg", b))
    assert f.on_item(("reg", a))[0] == []  # re-registration: nothing new
    update = px(1, 0.45, 0.47)
    out, _ = f.on_item(("px", update))
    assert sorted(cid for cid, _m in out) == sorted([a.id, b.id])
    assert all(m == ("px", update) for _cid, m in out)


def test_fanout_close_removes_every_holder_and_forgets_them() -> None:
    f = TokenFanout(None)
    a, b = pair(1, 2), pair(3, 1)
    f.on_item(("reg", a))
    f.on_item(("reg", b))
    out, keep = f.on_item(("close", "m1"))
    assert sorted(out) == sorted([(a.id, ("rm", "market_closed")), (b.id, ("rm", "market_closed"))])
    assert keep is StatefulLogic.DISCARD


def test_fanout_snapshot_resumes_the_same_state() -> None:
    f = TokenFanout(None)
    a = pair(1, 2)
    f.on_item(("reg", a))
    f.on_item(("px", px(1, 0.3, 0.32)))
    g = TokenFanout(pickle.loads(pickle.dumps(f.snapshot())))
    out, _ = g.on_item(("px", px(1, 0.31, 0.33)))
    assert [cid for cid, _m in out] == [a.id]
    assert g.price == px(1, 0.31, 0.33)


# ----------------------------------------------------------------------------- stage 2
def pricer(resume: Any = None) -> CoverPricer:
    return CoverPricer(resume, min_coverage=MIN_COV, max_cost=MAX_COST, metrics=MetricGroup("portfolios"))


def test_pricer_emits_only_when_numbers_change() -> None:
    spec = pair(1, 2)
    p = pricer()
    assert p.on_item(("reg", spec)) == ([], StatefulLogic.RETAIN)  # no price yet
    assert p.on_item(("px", px(1, 0.40, 0.42)))[0] == []  # one leg priced: still nothing
    out, _ = p.on_item(("px", px(2, 0.55, 0.57)))
    assert len(out) == 1 and isinstance(out[0], PortfolioUpsert)
    want = price_cover(spec, {"y1": px(1, 0.40, 0.42), "y2": px(2, 0.55, 0.57)}, min_coverage=MIN_COV, max_cost=MAX_COST)
    assert out[0].quote == want and out[0].spec == spec
    # same book, newer timestamp: nothing a consumer acts on changed
    assert p.on_item(("px", px(2, 0.55, 0.57, ts=99)))[0] == []
    # the NO leg's ask moves (1 - YES bid): re-priced
    out, _ = p.on_item(("px", px(2, 0.60, 0.62)))
    assert len(out) == 1 and abs(out[0].quote.cost - (0.42 + 0.40)) < 1e-9


def test_pricer_removes_a_published_quote_that_gets_filtered() -> None:
    spec = pair(1, 2)
    p = pricer()
    p.on_item(("reg", spec))
    p.on_item(("px", px(1, 0.40, 0.42)))
    assert p.on_item(("px", px(2, 0.55, 0.57)))[0]  # published
    # the YES leg's ask disappears: no price any more -> removal, once
    out, keep = p.on_item(("px", PriceUpdate("y1", 0.40, None, 10.0, None, 2, 2)))
    assert out == [PortfolioRemoved(spec.id, "filtered")] and keep is StatefulLogic.RETAIN
    assert p.on_item(("px", PriceUpdate("y1", 0.41, None, 10.0, None, 3, 3)))[0] == []
    # priced again -> published again
    assert isinstance(p.on_item(("px", px(1, 0.40, 0.42, ts=4)))[0][0], PortfolioUpsert)


def test_pricer_removal_discards_state_and_stale_prices_are_dropped() -> None:
    spec = pair(1, 2)
    p = pricer()
    p.on_item(("reg", spec))
    out, keep = p.on_item(("rm", "market_closed"))
    assert out == [PortfolioRemoved(spec.id, "market_closed")] and keep is StatefulLogic.DISCARD
    # a fresh state (after DISCARD) that only sees a leftover price from the other leg's token
    out, keep = pricer().on_item(("px", px(2, 0.5, 0.52)))
    assert out == [] and keep is StatefulLogic.DISCARD


def test_pricer_snapshot_resumes_without_republishing() -> None:
    spec = pair(1, 2)
    p = pricer()
    p.on_item(("reg", spec))
    p.on_item(("px", px(1, 0.40, 0.42)))
    p.on_item(("px", px(2, 0.55, 0.57)))
    q = pricer(pickle.loads(pickle.dumps(p.snapshot())))
    assert q.on_item(("px", px(2, 0.55, 0.57, ts=7)))[0] == []  # unchanged after resume
    assert q.on_item(("px", px(2, 0.50, 0.52)))[0]  # a real move still re-prices


# ----------------------------------------------------------------------------- in a flow
class Gated(DynamicSource):
    """Emits `first`, then `late` only once `ready()` holds (or a 20 s deadline), then EOF.

    Merge order across the join's inputs is not deterministic, so the late items (a move, a
    closure) wait until the initial pricing has landed in the sink."""

    def __init__(self, first: list[Any], late: list[Any], ready: Callable[[], bool]) -> None:
        self.first, self.late, self.ready = first, late, ready

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSourcePartition:
        outer = self
        mine = worker_index == 0

        class Part(StatelessSourcePartition):
            def __init__(self) -> None:
                self.stage = 0 if mine else 2
                self.deadline = time.monotonic() + 20

            def next_batch(self) -> list[Any]:
                if self.stage == 0:
                    self.stage = 1
                    return list(outer.first)
                if self.stage == 1:
                    if outer.ready() or time.monotonic() > self.deadline:
                        self.stage = 2
                        return list(outer.late)
                    return []
                raise StopIteration

            def next_awake(self) -> datetime | None:
                return None if self.stage != 1 else datetime.now(timezone.utc) + timedelta(milliseconds=5)

        return Part()


def run_join(prices: list[PriceUpdate], covers: list[CoverSpec], closed: list[MarketClosed],
             *, workers: int = 1, late_prices: list[PriceUpdate] | None = None, wait_for: int = 0) -> list[Any]:
    """Covers and prices first; `late_prices` and closures once `wait_for` changes have landed."""
    flow = Dataflow("join_test")
    out: list[Any] = []
    first: list[Any] = [("c", c) for c in covers] + [("p", p) for p in prices]
    late: list[Any] = [("p", p) for p in late_prices or []] + [("x", c) for c in closed]
    src = op.input("in", flow, Gated(first, late, lambda: len(out) >= wait_for))
    cov = op.filter_map("covers", src, lambda x: x[1] if x[0] == "c" else None)
    prc = op.filter_map("prices", src, lambda x: x[1] if x[0] == "p" else None)
    cls = op.filter_map("closed", src, lambda x: x[1] if x[0] == "x" else None)
    op.output("out", portfolio_join("join", prc, cov, cls, min_coverage=MIN_COV, max_cost=MAX_COST), TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def final_state(changes: list[Any]) -> dict[str, Any]:
    """cover id -> last published quote (removals delete)."""
    live: dict[str, Any] = {}
    for c in changes:
        if isinstance(c, PortfolioUpsert):
            live[c.quote.cover_id] = c.quote
        else:
            live.pop(c.cover_id, None)
    return live


def world() -> tuple[list[CoverSpec], list[PriceUpdate]]:
    covers = [pair(a, b) for a in range(12) for b in range(12) if a != b and (a * 7 + b) % 3 == 0]
    prices = [px(t, 0.30 + 0.02 * t, 0.32 + 0.02 * t) for t in range(12)]
    return covers, prices


def expected(covers: list[CoverSpec], books: dict[str, PriceUpdate]) -> dict[str, Any]:
    out = {}
    for c in covers:
        q = price_cover(c, books, min_coverage=MIN_COV, max_cost=MAX_COST)
        if q is not None:
            out[c.id] = q
    return out


def holders_of(covers: list[CoverSpec], token: str) -> set[str]:
    return {c.id for c in covers if token in {leg.yes_token for leg in c.legs}}


def test_flow_prices_every_cover_and_a_move_reaches_only_its_holders() -> None:
    covers, prices = world()
    books = {p.token_id: p for p in prices}
    before = expected(covers, books)
    move = px(5, 0.10, 0.12, ts=5)
    books["y5"] = move
    after = expected(covers, books)
    assert len(before) > 20 and before != after  # the world prices most covers; the move matters
    changes = run_join(prices, covers, [], late_prices=[move], wait_for=len(before))
    first, tail = changes[: len(before)], changes[len(before):]
    # initial pricing: each priced cover exactly once, with the real pricing function's numbers
    assert all(isinstance(c, PortfolioUpsert) for c in first)
    assert {c.quote.cover_id: c.quote for c in first} == before
    # the move: exactly the holders of y5 whose quote changed, nothing else
    changed = {cid for cid in set(before) | set(after) if before.get(cid) != after.get(cid)}
    assert changed and changed <= holders_of(covers, "y5")
    assert sorted(getattr(c, "cover_id", "") or c.quote.cover_id for c in tail) == sorted(changed)
    assert final_state(changes) == after


def test_flow_closed_market_removes_its_portfolios() -> None:
    covers, prices = world()
    before = expected(covers, {p.token_id: p for p in prices})
    changes = run_join(prices, covers, [MarketClosed("m3", "y3")], wait_for=len(before))
    gone = holders_of(covers, "y3") & set(before)
    assert gone
    tail = changes[len(before):]
    assert sorted(tail, key=str) == sorted((PortfolioRemoved(cid, "market_closed") for cid in gone), key=str)
    assert set(final_state(changes)) == set(before) - gone


def test_two_workers_give_the_same_portfolios() -> None:
    covers, prices = world()
    before = expected(covers, {p.token_id: p for p in prices})
    move = px(4, 0.05, 0.07, ts=9)
    args = (prices, covers, [MarketClosed("m7", "y7")])
    one = run_join(*args, late_prices=[move], wait_for=len(before))
    two = run_join(*args, late_prices=[move], wait_for=len(before), workers=2)
    assert final_state(one) and final_state(one) == final_state(two)
    assert sorted(map(str, one)) == sorted(map(str, two))  # the same changes, in any order


def test_a_move_on_the_side_no_leg_buys_is_not_repriced() -> None:
    group = MetricGroup("portfolios")
    p = CoverPricer(None, min_coverage=MIN_COV, max_cost=MAX_COST, metrics=group)
    spec = pair(1, 2)  # YES on y1 (pays y1's ask), NO on y2 (pays 1 - y2's bid)
    p.on_item(("reg", spec))
    p.on_item(("px", px(1, 0.40, 0.42)))
    (first,) = p.on_item(("px", px(2, 0.50, 0.52)))[0]
    repriced = group.get("repriced")
    assert p.on_item(("px", px(1, 0.30, 0.42, ts=2)))[0] == []  # y1's bid: the YES leg does not pay it
    assert p.on_item(("px", px(2, 0.50, 0.60, ts=3)))[0] == []  # y2's ask: the NO leg does not pay it
    assert group.get("repriced") == repriced  # not even evaluated
    (moved,) = p.on_item(("px", px(2, 0.55, 0.60, ts=4)))[0]  # y2's bid: the NO leg's price
    assert isinstance(moved, PortfolioUpsert) and moved.quote.cost == round(0.42 + 0.45, 10)
    # the newest prices were kept all along: the published quote is what a fresh pricing gives
    assert moved.quote == price_cover(spec, {"y1": px(1, 0.30, 0.42, ts=2), "y2": px(2, 0.55, 0.60, ts=4)},
                                      min_coverage=MIN_COV, max_cost=MAX_COST)
    assert isinstance(first, PortfolioUpsert)


def test_new_terms_of_a_live_cover_reprice_it_with_the_fee() -> None:
    """Gamma starts charging a fee on a market (same cover id, new leg terms): the fanout
    forwards the new spec once, the pricer re-prices with the fee; the same spec again is a no-op."""
    from polyalphascan.records import MarketTerms
    f = TokenFanout(None)
    free = pair(1, 2)
    f.on_item(("reg", free))
    fee = MarketTerms(fees_enabled=True, fee_rate=0.05)
    taxed = CoverSpec(free.kind, tuple(Leg(lg.market_id, lg.side, lg.yes_token, lg.no_token, lg.question,
                                           lg.event_id, fee) for lg in free.legs), True, 1.0)
    assert taxed.id == free.id and taxed != free
    assert f.on_item(("reg", taxed))[0] == [(free.id, ("reg", taxed))]
    assert f.on_item(("reg", taxed))[0] == []
    p = CoverPricer(None, min_coverage=MIN_COV, max_cost=MAX_COST, metrics=MetricGroup("portfolios"))
    p.on_item(("reg", free))
    p.on_item(("px", tuple(px(1, 0.30, 0.40))))
    (first,), _ = p.on_item(("px", tuple(px(2, 0.50, 0.60))))  # 0.40 + (1 − 0.50) = 0.90: +0.10 × 10
    assert first.quote.net_profit == 1.0 and first.quote.fees == 0.0
    (again,), _ = p.on_item(("reg", taxed))  # fees 0.05·(0.4·0.6 + 0.5·0.5) = 0.0245 per share-set
    assert abs(again.quote.net_profit - 10 * (0.10 - 0.0245)) < 1e-9 and abs(again.quote.fees - 0.245) < 1e-9
    assert p.on_item(("reg", taxed))[0] == []


# ----------------------------------------------------------------------------- whole batches
def test_a_batch_fans_a_token_out_once_with_its_latest_price() -> None:
    f = TokenFanout(None)
    a, b = pair(1, 2), pair(1, 3)
    f.on_batch([("reg", a), ("reg", b)])
    out, keep = f.on_batch([("px", px(1, 0.40, 0.42)), ("px", px(1, 0.41, 0.43)), ("px", px(1, 0.44, 0.46))])
    assert sorted(out) == sorted([(a.id, ("px", px(1, 0.44, 0.46))), (b.id, ("px", px(1, 0.44, 0.46)))])
    assert keep is StatefulLogic.RETAIN and f.price == px(1, 0.44, 0.46)


def test_a_batch_keeps_the_order_of_registrations_and_closures_around_prices() -> None:
    f = TokenFanout(None)
    a, b = pair(1, 2), pair(1, 3)
    f.on_batch([("reg", a)])
    out, keep = f.on_batch([("px", px(1, 0.40, 0.42)), ("reg", b), ("px", px(1, 0.45, 0.47))])
    # the first price reaches the cover held then; the new cover gets it with its registration;
    # the last price reaches both
    assert out == [(a.id, ("px", px(1, 0.40, 0.42))), (b.id, ("reg", b)), (b.id, ("px", px(1, 0.40, 0.42))),
                   (a.id, ("px", px(1, 0.45, 0.47))), (b.id, ("px", px(1, 0.45, 0.47)))]
    # a closure in the middle: the holders are removed, a later price is remembered, not fanned
    out, keep = f.on_batch([("px", px(1, 0.5, 0.52)), ("close", "m1"), ("px", px(1, 0.6, 0.62))])
    assert out == [(a.id, ("px", px(1, 0.5, 0.52))), (b.id, ("px", px(1, 0.5, 0.52))),
                   (a.id, ("rm", "market_closed")), (b.id, ("rm", "market_closed"))]
    assert keep is StatefulLogic.RETAIN and f.covers == {} and f.price == px(1, 0.6, 0.62)
    # a closure last: nothing left, the key is dropped
    assert f.on_batch([("close", "m1")]) == ([], StatefulLogic.DISCARD)


def test_a_batch_reprices_a_cover_once_however_many_legs_moved() -> None:
    spec = pair(1, 2)
    group = MetricGroup("portfolios")
    p = CoverPricer(None, min_coverage=MIN_COV, max_cost=MAX_COST, metrics=group)
    p.on_batch([("reg", spec)])
    before = group.get("repriced")
    out, keep = p.on_batch([("px", tuple(px(1, 0.40, 0.42))), ("px", tuple(px(2, 0.55, 0.57))),
                            ("px", tuple(px(1, 0.39, 0.41)))])
    assert group.get("repriced") - before == 1 and keep is StatefulLogic.RETAIN
    want = price_cover(spec, {"y1": px(1, 0.39, 0.41), "y2": px(2, 0.55, 0.57)}, min_coverage=MIN_COV, max_cost=MAX_COST)
    assert len(out) == 1 and out[0].quote == want
    # a removal after prices in one batch: the prices are priced first, then the removal
    out, keep = p.on_batch([("px", tuple(px(2, 0.60, 0.62))), ("rm", "retracted")])
    assert [type(c).__name__ for c in out] == ["PortfolioUpsert", "PortfolioRemoved"] and keep is StatefulLogic.DISCARD


def test_a_bad_item_is_reported_and_the_rest_of_its_batch_goes_on() -> None:
    errors: list[Exception] = []
    spec = pair(1, 2)
    p = CoverPricer(None, min_coverage=MIN_COV, max_cost=MAX_COST, metrics=MetricGroup("portfolios"),
                    errors=errors.append)
    p.on_batch([("reg", spec)])
    out, _ = p.on_batch([("px", ("y1", "not a price")), ("px", tuple(px(1, 0.40, 0.42))), ("px", (1, 2)),
                         ("px", tuple(px(2, 0.55, 0.57)))])
    assert len(errors) == 2 and len(out) == 1 and out[0].quote.cost == round(0.42 + 0.45, 10)
    f = TokenFanout(None, errors.append)
    f.on_batch([("reg", spec)])
    out, _ = f.on_batch([("px", px(1, 0.4, 0.42)), ("bogus",), ("px", px(1, 0.41, 0.43))])
    assert len(errors) == 3 and out == [(spec.id, ("px", px(1, 0.41, 0.43)))]
