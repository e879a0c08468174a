"""The keyed join of covers with prices (operators/portfolio_join.py).

One shard's logic directly (batches, snapshot / resume), then the keyed join in a real Bytewax
flow with one and with two workers, one and several shards. Pricing is the real `price_cover`.
"""

from __future__ import annotations

import pickle
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, cluster_main, run_main

from operators.portfolio_join import BUYS_ASKS, BUYS_BIDS, JoinShard, book_uses, portfolio_join, price_batches, shard_of
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


# ----------------------------------------------------------------------------- one shard
def shard(resume: Any = None, group: MetricGroup | None = None, **kw: Any) -> JoinShard:
    return JoinShard(resume, min_coverage=MIN_COV, max_cost=MAX_COST,
                     metrics=group if group is not None else MetricGroup("portfolios"), **kw)


def feed(s: JoinShard, *messages: tuple[str, Any]) -> list[Any]:
    """One batch; the shard's changes (it emits them as one list, or nothing)."""
    out, keep = s.on_batch(list(messages))
    assert keep is StatefulLogic.RETAIN  # a shard is never dropped
    assert len(out) <= 1 and all(out)  # one list of changes per batch, never an empty one
    return out[0] if out else []


def prices(*updates: PriceUpdate) -> tuple[str, Any]:
    """The message a batch of updates becomes (as the flow routes it to one shard)."""
    ((_key, msg),) = price_batches(["0"])(list(updates))
    return msg


def best(spec: CoverSpec, *books: PriceUpdate) -> Any:
    return price_cover(spec, {b.token_id: b for b in books}, min_coverage=MIN_COV, max_cost=MAX_COST)


def test_a_price_reaches_only_the_covers_holding_its_token() -> None:
    group = MetricGroup("portfolios")
    s = shard(group=group)
    a, b, c = pair(1, 2), pair(1, 3), pair(4, 5)
    feed(s, prices(px(1, 0.40, 0.42), px(2, 0.55, 0.57), px(3, 0.50, 0.52), px(4, 0.3, 0.32), px(5, 0.6, 0.62)))
    out = feed(s, ("reg", a), ("reg", b), ("reg", c))  # each priced at once from the books held
    assert [ch.quote.cover_id for ch in out] == [a.id, b.id, c.id]
    assert group.get("repriced") == 3
    move = px(1, 0.40, 0.41, ts=2)  # y1's ask: the YES leg of a and b
    out = feed(s, prices(move))
    assert sorted(ch.quote.cover_id for ch in out) == sorted([a.id, b.id]) and group.get("repriced") == 5
    assert {ch.quote.cover_id: ch.quote for ch in out} == {
        a.id: best(a, move, px(2, 0.55, 0.57)), b.id: best(b, move, px(3, 0.50, 0.52))}


def test_a_registration_is_priced_from_the_current_books_and_only_once() -> None:
    s = shard()
    spec = pair(1, 2)
    assert feed(s, ("reg", spec)) == []  # no price yet
    assert feed(s, prices(px(1, 0.40, 0.42))) == []  # one leg priced: still nothing
    (first,) = feed(s, prices(px(2, 0.55, 0.57)))
    assert isinstance(first, PortfolioUpsert) and first.spec == spec
    assert first.quote == best(spec, px(1, 0.40, 0.42), px(2, 0.55, 0.57))
    assert feed(s, ("reg", spec)) == []  # re-registration (event grouped again): nothing new
    # same book, newer timestamp: nothing a consumer acts on changed
    assert feed(s, prices(px(2, 0.55, 0.57, ts=99))) == []
    (moved,) = feed(s, prices(px(2, 0.60, 0.62)))  # the NO leg's ask (1 - YES bid) moves
    assert abs(moved.quote.cost - (0.42 + 0.40)) < 1e-9


def test_a_published_quote_that_gets_filtered_is_removed_once_then_comes_back() -> None:
    s = shard()
    spec = pair(1, 2)
    feed(s, ("reg", spec), prices(px(1, 0.40, 0.42), px(2, 0.55, 0.57)))
    # the YES leg's ask disappears: no price any more -> removal, once
    assert feed(s, prices(PriceUpdate("y1", 0.40, None, 10.0, None, 2, 2))) == [PortfolioRemoved(spec.id, "filtered")]
    assert feed(s, prices(PriceUpdate("y1", 0.41, None, 10.0, None, 3, 3))) == []
    (back,) = feed(s, prices(px(1, 0.40, 0.42, ts=4)))
    assert isinstance(back, PortfolioUpsert)


def test_a_closure_removes_every_holder_and_forgets_the_token() -> None:
    group = MetricGroup("portfolios")
    s = shard(group=group)
    a, b, c = pair(1, 2), pair(3, 1), pair(2, 3)
    feed(s, prices(px(1, 0.4, 0.42), px(2, 0.5, 0.52), px(3, 0.3, 0.32)), ("reg", a), ("reg", b), ("reg", c))
    out = feed(s, ("close", "y1"))
    assert sorted(out, key=str) == sorted([PortfolioRemoved(a.id, "market_closed"),
                                           PortfolioRemoved(b.id, "market_closed")], key=str)
    assert set(s.specs) == {c.id} and "y1" not in s.prices and "y1" not in s.holders
    # the removed covers' other tokens no longer reach them
    repriced = group.get("repriced")
    (only_c,) = feed(s, prices(px(2, 0.45, 0.47, ts=2)))
    assert only_c.quote.cover_id == c.id and group.get("repriced") == repriced + 1
    # a new listing of the token starts from a fresh book: a cover on it waits for a price
    assert feed(s, ("reg", a)) == []
    assert feed(s, ("close", "y9")) == []  # nobody holds it


def test_a_retraction_removes_one_cover() -> None:
    s = shard()
    a, b = pair(1, 2), pair(1, 3)
    feed(s, prices(px(1, 0.4, 0.42), px(2, 0.5, 0.52), px(3, 0.3, 0.32)), ("reg", a), ("reg", b))
    assert feed(s, ("retract", a.id)) == [PortfolioRemoved(a.id, "retracted")]
    assert feed(s, ("retract", a.id)) == []  # already gone
    assert [ch.quote.cover_id for ch in feed(s, prices(px(1, 0.3, 0.35, ts=2)))] == [b.id]
    # registered again: priced again from the books the shard kept
    (again,) = feed(s, ("reg", a))
    assert again.quote == best(a, px(1, 0.3, 0.35, ts=2), px(2, 0.5, 0.52))


def test_a_move_on_the_side_no_leg_buys_is_not_repriced_but_a_new_tick_is() -> None:
    group = MetricGroup("portfolios")
    s = shard(group=group)
    spec = pair(1, 2)  # YES on y1 (pays y1's ask), NO on y2 (pays 1 - y2's bid)
    feed(s, ("reg", spec), prices(px(1, 0.40, 0.42), px(2, 0.50, 0.52)))
    repriced = group.get("repriced")
    assert feed(s, prices(px(1, 0.30, 0.42, ts=2))) == []  # y1's bid: the YES leg does not pay it
    assert feed(s, prices(px(2, 0.50, 0.60, ts=3))) == []  # y2's ask: the NO leg does not pay it
    assert feed(s, prices(PriceUpdate("y1", 0.30, 0.42, 10.0, 10.0, 4, 4, bids=(0.30, 10.0, 0.2, 5.0)))) == []
    assert group.get("repriced") == repriced  # not even evaluated
    feed(s, prices(PriceUpdate("y2", 0.50, 0.60, 10.0, 10.0, 5, 5, tick=0.001)))  # a new tick: limits move
    assert group.get("repriced") == repriced + 1
    (moved,) = feed(s, prices(px(2, 0.55, 0.60, ts=6)))  # y2's bid: the NO leg's price
    assert group.get("repriced") == repriced + 2
    assert moved.quote == best(spec, PriceUpdate("y1", 0.30, 0.42, 10.0, 10.0, 4, 4, bids=(0.30, 10.0, 0.2, 5.0)),
                               px(2, 0.55, 0.60, ts=6))  # the newest prices were kept all along


def test_depth_beyond_the_top_reprices_the_side_that_buys_it() -> None:
    group = MetricGroup("portfolios")
    s = shard(group=group)
    spec = pair(1, 2)
    feed(s, ("reg", spec), prices(px(1, 0.40, 0.42), px(2, 0.50, 0.52)))
    repriced = group.get("repriced")
    deeper = PriceUpdate("y1", 0.40, 0.42, 10.0, 10.0, 2, 2, asks=(0.42, 10.0, 0.45, 50.0))
    feed(s, prices(deeper))  # only a deeper ask level of y1 changed: the YES leg walks it
    assert group.get("repriced") == repriced + 1
    feed(s, prices(PriceUpdate("y2", 0.50, 0.52, 10.0, 10.0, 3, 3, bids=(0.50, 10.0, 0.48, 40.0))))
    assert group.get("repriced") == repriced + 2


def test_a_repricing_that_changes_no_number_publishes_nothing() -> None:
    group = MetricGroup("portfolios")
    s = shard(group=group)
    spec = pair(1, 2)  # 0.62 + (1 - 0.50) = 1.12: loses money at the top, so no walk, no size
    (first,) = feed(s, ("reg", spec), prices(px(1, 0.40, 0.62), px(2, 0.50, 0.52)))
    repriced = group.get("repriced")
    deeper = PriceUpdate("y1", 0.40, 0.62, 10.0, 10.0, 2, 2, asks=(0.62, 10.0, 0.65, 50.0))
    assert feed(s, prices(deeper)) == []  # re-priced (a level it would buy moved), same numbers
    assert group.get("repriced") == repriced + 1 and s.published[spec.id] == first.quote


def test_new_terms_of_a_live_cover_reprice_it_with_the_fee() -> None:
    """Gamma starts charging a fee on a market (same cover id, new leg terms): re-priced with
    the fee; the same spec again is a no-op."""
    from polyalphascan.records import MarketTerms
    s = shard()
    free = pair(1, 2)
    (first,) = feed(s, ("reg", free), prices(px(1, 0.30, 0.40), px(2, 0.50, 0.60)))
    assert first.quote.net_profit == 1.0 and first.quote.fees == 0.0  # 0.40 + (1 - 0.50) = 0.90: +0.10 x 10
    fee = MarketTerms(fees_enabled=True, fee_rate=0.05)
    taxed = CoverSpec(free.kind, tuple(Leg(lg.market_id, lg.side, lg.yes_token, lg.no_token, lg.question,
                                           lg.event_id, fee) for lg in free.legs), True, 1.0)
    assert taxed.id == free.id and taxed != free
    (again,) = feed(s, ("reg", taxed))  # fees 0.05 x (0.4 x 0.6 + 0.5 x 0.5) = 0.0245 per share-set
    assert abs(again.quote.net_profit - 10 * (0.10 - 0.0245)) < 1e-9 and abs(again.quote.fees - 0.245) < 1e-9
    assert again.spec == taxed and s.specs[free.id] == taxed
    assert feed(s, ("reg", taxed)) == []
    assert set(s.holders) == {"y1", "y2"} and all(list(h) == [free.id] for h in s.holders.values())


def test_a_batch_reprices_a_cover_once_however_many_legs_moved() -> None:
    spec = pair(1, 2)
    group = MetricGroup("portfolios")
    s = shard(group=group)
    feed(s, ("reg", spec))
    before = group.get("repriced")
    out = feed(s, prices(px(1, 0.40, 0.42), px(2, 0.55, 0.57)), prices(px(1, 0.39, 0.41)))
    assert group.get("repriced") - before == 1
    assert out == [PortfolioUpsert(best(spec, px(1, 0.39, 0.41), px(2, 0.55, 0.57)), spec)]


def test_a_batch_keeps_the_order_of_other_messages_around_prices() -> None:
    s = shard()
    a, b = pair(1, 2), pair(1, 3)
    feed(s, ("reg", a), ("reg", b), prices(px(2, 0.5, 0.52), px(3, 0.3, 0.32)))
    # prices, then a retraction: the cover is priced with them first, then removed
    out = feed(s, prices(px(1, 0.40, 0.42)), ("retract", a.id), prices(px(1, 0.41, 0.43)))
    assert [(type(ch).__name__, getattr(ch, "cover_id", None) or ch.quote.cover_id) for ch in out] == [
        ("PortfolioUpsert", a.id), ("PortfolioUpsert", b.id), ("PortfolioRemoved", a.id), ("PortfolioUpsert", b.id)]
    assert out[3].quote == best(b, px(1, 0.41, 0.43), px(3, 0.3, 0.32))
    # a registration between two prices is priced from the first, then from the second
    out = feed(s, prices(px(1, 0.44, 0.46)), ("reg", a), prices(px(1, 0.45, 0.47)))
    assert [ch.quote for ch in out[:2]] == [best(b, px(1, 0.44, 0.46), px(3, 0.3, 0.32)),
                                            best(a, px(1, 0.44, 0.46), px(2, 0.5, 0.52))]
    assert {ch.quote.cover_id: ch.quote for ch in out[2:]} == {a.id: best(a, px(1, 0.45, 0.47), px(2, 0.5, 0.52)),
                                                               b.id: best(b, px(1, 0.45, 0.47), px(3, 0.3, 0.32))}


def test_a_bad_item_is_reported_and_the_rest_of_its_batch_goes_on() -> None:
    errors: list[Exception] = []
    a, b = pair(1, 2), pair(3, 4)
    s = shard(errors=errors.append)
    feed(s, ("reg", a), ("reg", b), prices(px(1, 0.40, 0.42), px(3, 0.40, 0.42), px(4, 0.55, 0.57)))
    junk = PriceUpdate("y2", 0.55, "junk", 10.0, 10.0, 2, 2)  # pricing a cover on it raises
    out = feed(s, ("px", 7), ("bogus",), prices(junk, px(3, 0.30, 0.31)), ("reg", "not a spec"))
    assert len(errors) == 4  # a batch that is no dict, a message of one field, a's pricing, the registration
    assert [ch.quote.cover_id for ch in out] == [b.id]  # b was re-priced all the same
    assert feed(s, ("gossip", None)) == []  # an unknown kind changes nothing
    (fixed,) = feed(s, prices(px(2, 0.56, 0.58, ts=3)))  # a good update repairs a's book
    assert fixed.quote == best(a, px(1, 0.40, 0.42), px(2, 0.56, 0.58, ts=3))


def test_the_router_reports_what_is_not_a_price_and_keeps_the_latest_per_token() -> None:
    errors: list[Exception] = []
    route = price_batches(["0", "1"], errors.append)
    first, last = px(1, 0.40, 0.42), px(1, 0.41, 0.43, ts=2)
    out = route([("y1", "not a price"), first, None, px(2, 0.5, 0.52), last])
    assert len(errors) == 2 and all(isinstance(e, TypeError) for e in errors)
    want = {"y1": last, "y2": px(2, 0.5, 0.52)}
    assert out == [("0", ("px", want)), ("1", ("px", want))] and out[0][1][1] is out[1][1][1]  # one dict, shared
    assert route([None]) == [] and len(errors) == 3
    assert route([]) == []


def test_the_snapshot_keeps_the_covers_and_a_resumed_shard_prices_them_from_fresh_books() -> None:
    spec, other = pair(1, 2), pair(3, 4)
    s = shard()
    feed(s, ("reg", spec), ("reg", other), prices(px(1, 0.40, 0.42), px(2, 0.55, 0.57)))
    t = shard(pickle.loads(pickle.dumps(s.snapshot())))
    assert t.specs == s.specs and t.holders == s.holders
    assert t.prices == {} and t.published == {}  # books come again from the resumed sockets
    assert feed(t, prices(px(1, 0.40, 0.42, ts=7))) == []  # one leg's book: not priced yet
    (again,) = feed(t, prices(px(2, 0.55, 0.57, ts=7)))  # published once more, from the fresh books
    assert again.quote == best(spec, px(1, 0.40, 0.42, ts=7), px(2, 0.55, 0.57, ts=7))
    assert feed(t, prices(px(2, 0.55, 0.57, ts=8))) == []  # then only changes, as before


def test_the_snapshot_is_pickled_only_when_the_covers_change() -> None:
    s = shard()
    a, b = pair(1, 2), pair(3, 4)
    feed(s, ("reg", a))
    first = s.snapshot()
    feed(s, prices(px(1, 0.40, 0.42), px(2, 0.55, 0.57)))
    assert s.snapshot() is first  # prices moved, the covers did not: the same bytes
    feed(s, ("reg", a))
    assert s.snapshot() is first  # a re-registration changes nothing
    for change, want in ((("reg", b), {a.id, b.id}), (("retract", a.id), {b.id}), (("close", "y3"), set())):
        feed(s, change)
        snap = s.snapshot()
        assert snap is not first and {c.id for c in pickle.loads(snap)} == want
        first = snap


def test_a_flow_without_recovery_skips_the_snapshot() -> None:
    s = shard(recoverable=False)
    feed(s, ("reg", pair(1, 2)), prices(px(1, 0.40, 0.42), px(2, 0.55, 0.57)))
    assert s.snapshot() is None
    assert pickle.loads(shard().snapshot()) == ()


def test_a_cover_lives_in_one_stable_shard_and_shards_share_the_covers() -> None:
    ids = [pair(a, b).id for a in range(40) for b in range(40) if a != b]
    for n in (1, 3, 8):
        keys = [shard_of(cid, n) for cid in ids]
        assert set(keys) == {str(i) for i in range(n)}  # every shard used, none outside the range
        assert max(keys.count(k) for k in set(keys)) < 1.5 * len(ids) / n  # roughly even
    assert shard_of("abc", 8) == str(zlib.crc32(b"abc") % 8)  # not Python's per-process hash()


def test_the_flow_sizes_the_join_from_the_setting_or_the_workers() -> None:
    from flows.scanner import join_shards
    assert join_shards(0, 1) == 1  # one worker: one shard, every price batch applied once
    assert join_shards(0, 2) == 8 and join_shards(0, 3) == 12  # four keys per worker
    assert join_shards(5, 1) == 5 and join_shards(5, 4) == 5  # a set value wins


def test_book_uses_names_the_side_each_leg_buys() -> None:
    both = CoverSpec(CoverKind.TIMEFRAME, (Leg("m1", Side.YES, "y1", "n1", "Q1?"), Leg("m1", Side.NO, "y1", "n1", "Q1?"),
                                           Leg("m2", Side.NO, "y2", "n2", "Q2?")), True, 1.0)
    assert book_uses(both) == {"y1": BUYS_ASKS | BUYS_BIDS, "y2": BUYS_BIDS}
    assert book_uses(pair(1, 2)) == {"y1": BUYS_ASKS, "y2": BUYS_BIDS}


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
             *, workers: int = 1, late_prices: list[PriceUpdate] | None = None, wait_for: int = 0,
             shards: int = 1) -> list[Any]:
    """Covers and prices first; `late_prices` and closures once `wait_for` changes have landed."""
    flow = Dataflow("join_test")
    out: list[Any] = []
    first: list[Any] = [("c", c) for c in covers] + [("p", p) for p in prices]
    late: list[Any] = [("p", p) for p in late_prices or []] + [("x", c) for c in closed]
    src = op.input("in", flow, Gated(first, late, lambda: len(out) >= wait_for))
    cov = op.filter_map("covers", src, lambda x: x[1] if x[0] == "c" else None)
    prc = op.filter_map("prices", src, lambda x: x[1] if x[0] == "p" else None)
    cls = op.filter_map("closed", src, lambda x: x[1] if x[0] == "x" else None)
    op.output("out", portfolio_join("join", prc, cov, cls, min_coverage=MIN_COV, max_cost=MAX_COST,
                                                shards=shards), TestingSink(out))
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


@pytest.mark.parametrize("shards", [1, 3])
def test_flow_prices_every_cover_and_a_move_reaches_only_its_holders(shards: int) -> None:
    covers, prices = world()
    books = {p.token_id: p for p in prices}
    before = expected(covers, books)
    move = px(5, 0.10, 0.12, ts=5)
    books["y5"] = move
    after = expected(covers, books)
    assert len(before) > 20 and before != after  # the world prices most covers; the move matters
    changes = run_join(prices, covers, [], late_prices=[move], wait_for=len(before), shards=shards)
    first, tail = changes[: len(before)], changes[len(before):]
    # initial pricing: each priced cover exactly once, with the real pricing function's numbers
    assert all(isinstance(c, PortfolioUpsert) for c in first)
    assert {c.quote.cover_id: c.quote for c in first} == before
    # the move: exactly the holders of y5 whose quote changed, nothing else
    changed = {cid for cid in set(before) | set(after) if before.get(cid) != after.get(cid)}
    assert changed and changed <= holders_of(covers, "y5")
    assert sorted(getattr(c, "cover_id", "") or c.quote.cover_id for c in tail) == sorted(changed)
    assert final_state(changes) == after


@pytest.mark.parametrize("shards", [1, 4])
def test_flow_closed_market_removes_its_portfolios(shards: int) -> None:
    covers, prices = world()
    before = expected(covers, {p.token_id: p for p in prices})
    changes = run_join(prices, covers, [MarketClosed("m3", "y3")], wait_for=len(before), shards=shards)
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
    two = run_join(*args, late_prices=[move], wait_for=len(before), workers=2, shards=4)
    assert final_state(one) and final_state(one) == final_state(two)
    assert sorted(map(str, one)) == sorted(map(str, two))  # the same changes, in any order


# ----------------------------------------------------------------------------- what the mutants showed
def test_a_filtered_or_crossed_cover_does_not_stop_the_others_in_its_batch() -> None:
    group = MetricGroup("portfolios")
    s = shard(group=group)
    a, b, c, d = pair(1, 2), pair(1, 3), pair(1, 4), pair(1, 5)
    feed(s, *[("reg", x) for x in (a, b, c, d)],
         prices(px(1, 0.40, 0.42), px(2, 0.5, 0.52), px(3, 0.5, 0.52), px(4, 0.5, 0.52), px(5, 0.5, 0.52)))
    # one batch: y2 and y3 cross (two crossed covers), y4 loses its bid (the NO leg has no price)
    out = feed(s, prices(px(2, 0.9, 0.1, ts=2), px(3, 0.9, 0.1, ts=2), PriceUpdate("y4", None, 0.52, None, 10.0, 2, 2),
                         px(1, 0.40, 0.41, ts=2)))
    assert sorted(map(str, out)) == sorted(map(str, [
        PortfolioRemoved(a.id, "crossed_book"), PortfolioRemoved(b.id, "crossed_book"),
        PortfolioRemoved(c.id, "filtered"),
        PortfolioUpsert(best(d, px(1, 0.40, 0.41, ts=2), px(5, 0.5, 0.52)), d)]))
    assert group.get("crossed_book") == 2


def test_every_first_seen_token_of_a_batch_reaches_its_covers() -> None:
    s = shard()
    a, b = pair(1, 2), pair(3, 4)
    feed(s, ("reg", a), ("reg", b))
    out = feed(s, prices(px(1, 0.40, 0.42), px(2, 0.5, 0.52), px(3, 0.3, 0.32), px(4, 0.6, 0.62)))
    assert sorted(ch.quote.cover_id for ch in out) == sorted([a.id, b.id])


def test_the_changes_of_a_whole_batch_are_all_emitted() -> None:
    s = shard()
    a, b, c = pair(1, 2), pair(3, 4), pair(5, 6)
    feed(s, prices(px(1, 0.40, 0.42), px(2, 0.5, 0.52), px(3, 0.3, 0.32), px(4, 0.6, 0.62)), ("reg", b), ("reg", c))
    out = feed(s, ("reg", a), prices(px(3, 0.31, 0.33, ts=2)), ("retract", c.id), prices(px(4, 0.5, 0.52, ts=3)))
    assert [(type(ch).__name__, getattr(ch, "cover_id", None) or ch.quote.cover_id) for ch in out] == [
        ("PortfolioUpsert", a.id), ("PortfolioUpsert", b.id), ("PortfolioRemoved", c.id), ("PortfolioUpsert", b.id)]


def test_a_top_of_book_shard_prices_from_the_top_alone() -> None:
    s = shard(depth=False)
    spec = pair(1, 2)
    deep = PriceUpdate("y1", 0.40, 0.42, 10.0, 10.0, 1, 1, asks=(0.42, 10.0, 0.43, 50.0))
    (up,) = feed(s, ("reg", spec), prices(deep, px(2, 0.5, 0.52)))
    assert up.quote == price_cover(spec, {"y1": deep, "y2": px(2, 0.5, 0.52)}, min_coverage=MIN_COV,
                                   max_cost=MAX_COST, depth=False)
    assert up.quote != best(spec, deep, px(2, 0.5, 0.52))  # the walk would size it on both levels


def test_errors_are_reported_as_what_was_raised() -> None:
    errors: list[Exception] = []
    s = shard(errors=errors.append)
    spec = pair(1, 2)
    feed(s, ("reg", spec), prices(px(1, 0.40, 0.42), px(2, 0.5, 0.52)))
    feed(s, ("px", {"y1": "junk"}))  # a price message built by hand, not by the router
    feed(s, ("bogus",))  # a message of one field
    t = shard(errors=errors.append)
    feed(t, ("reg", spec), prices(px(1, 0.40, 0.42), px(2, 0.5, 0.52)))
    feed(t, prices(PriceUpdate("y2", 0.45, "junk", 10.0, 10.0, 2, 2)))  # pricing on it raises
    assert [type(e) for e in errors] == [AttributeError, ValueError, TypeError]
    route_errors: list[Exception] = []
    price_batches(["0"], route_errors.append)([("y1", 0.4)])
    assert "tuple" in str(route_errors[0])
    with pytest.raises(ValueError, match="shards"):
        portfolio_join("join", None, None, None, min_coverage=MIN_COV, max_cost=MAX_COST, shards=0)  # type: ignore[arg-type]


def run_join_steps(prices_in: list[Any], covers: list[Any], steps: MetricGroup, *, depth: bool = True) -> list[Any]:
    """The join in a flow with a "steps" group: what a bad item costs."""
    flow = Dataflow("join_steps")
    out: list[Any] = []
    src = op.input("in", flow, Gated([("c", c) for c in covers] + [("p", p) for p in prices_in], [], lambda: True))
    cov = op.filter_map("covers", src, lambda x: x[1] if x[0] == "c" else None)
    prc = op.filter_map("prices", src, lambda x: x[1] if x[0] == "p" else None)
    cls = op.filter_map("closed", src, lambda x: None)
    op.output("out", portfolio_join("join", prc, cov, cls, min_coverage=MIN_COV, max_cost=MAX_COST, steps=steps,
                                    depth=depth), TestingSink(out))
    run_main(flow)
    return out


def test_a_flow_counts_what_it_drops_and_goes_on() -> None:
    steps = MetricGroup("steps")
    spec = pair(1, 2)
    junk = CoverSpec(CoverKind.TIMEFRAME, (Leg("m8", Side.YES, "y8", "n8", "Q8?"), Leg("m2", Side.NO, "y2", "n2")),
                     True, 1.0, payout="a lot", id="junk")  # pricing it raises: the payout is no number
    out = run_join_steps([("y1", "not a price"), px(1, 0.40, 0.42), px(2, 0.5, 0.52), px(8, 0.3, 0.32)],
                         [spec, junk], steps)  # type: ignore[arg-type]
    assert steps.get("rejected_join_px_TypeError") == 1
    assert steps.get("rejected_join_shard_TypeError") >= 1
    assert final_state(out) == {spec.id: best(spec, px(1, 0.40, 0.42), px(2, 0.5, 0.52))}


def test_a_flow_without_steps_ends_on_a_bad_item_with_its_own_error() -> None:
    with pytest.raises(Exception) as raised:
        run_join([("y1", "not a price")], [pair(1, 2)], [])  # type: ignore[list-item]
    chain, exc = [], raised.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("not a PriceUpdate: tuple" in text for text in chain), chain


def test_a_top_of_book_flow_prices_from_the_top_alone() -> None:
    spec = pair(1, 2)
    deep = PriceUpdate("y1", 0.40, 0.42, 10.0, 10.0, 1, 1, asks=(0.42, 10.0, 0.43, 50.0))
    out = run_join_steps([deep, px(2, 0.5, 0.52)], [spec], MetricGroup("steps"), depth=False)
    assert final_state(out) == {spec.id: price_cover(spec, {"y1": deep, "y2": px(2, 0.5, 0.52)}, min_coverage=MIN_COV,
                                                     max_cost=MAX_COST, depth=False)}


@pytest.mark.parametrize("recoverable", [True, False])
def test_a_flow_resumes_its_covers_from_the_recovery_store(tmp_path: Any, recoverable: bool) -> None:
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import TestingSource

    init_db_dir(tmp_path, 1)
    spec = pair(1, 2)

    def once(items: list[Any]) -> list[Any]:
        flow = Dataflow("join_recovery")
        out: list[Any] = []
        src = op.input("in", flow, TestingSource(items))
        cov = op.filter_map("covers", src, lambda x: x[1] if x[0] == "c" else None)
        prc = op.filter_map("prices", src, lambda x: x[1] if x[0] == "p" else None)
        cls = op.filter_map("closed", src, lambda x: None)
        op.output("out", portfolio_join("join", prc, cov, cls, min_coverage=MIN_COV, max_cost=MAX_COST,
                                        recoverable=recoverable), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(seconds=0), recovery_config=RecoveryConfig(str(tmp_path)))
        return out

    first = [("c", spec)]
    assert once(first) == []  # registered, no price yet
    # the resumed run: the source goes on after the cover, only books arrive
    books = [("p", px(1, 0.40, 0.42)), ("p", px(2, 0.5, 0.52))]
    out = once(first + books)
    if recoverable:
        assert final_state(out) == {spec.id: best(spec, px(1, 0.40, 0.42), px(2, 0.5, 0.52))}
    else:  # a flow told it runs without a store snapshots nothing: the resumed join has no covers
        assert out == []
