"""Lifecycles more than one step deep, in the join (operators/portfolio_join.py) and the cover
diff (operators/cover_lifecycle.py), driven through the logic classes as Bytewax would.

Bytewax drops a key's state when its logic returns DISCARD and builds a fresh one from
`None` for the key's next item; `Keyed` does the same here, so a sequence of items runs
exactly as in a flow. `Join` routes to the join's shards as the flow does (three of them, so
covers and their tokens' prices meet across shards). Every published quote is compared with
`price_cover` on the books the test holds, field for field.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest
from bytewax.operators import StatefulLogic

from operators.cover_lifecycle import CoverDiff, LlmCoverDiff, pair_covers, implication_key
from operators.portfolio_join import JoinShard, price_batches, shard_of
from operators.pricing import price_cover
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import (
    CoverKind,
    CoverRetracted,
    CoverSpec,
    Group,
    GroupImplication,
    GroupMarket,
    ImplicationFound,
    Leg,
    PartitionType,
    PortfolioRemoved,
    PortfolioUpsert,
    PriceUpdate,
    Side,
)

MIN_COV, MAX_COST = 0.85, 1.5


class Keyed:
    """One key's state as Bytewax keeps it: a DISCARD drops the logic, the next item builds anew."""

    def __init__(self, build: Callable[[Any], StatefulLogic]) -> None:
        self.build = build
        self.logic: StatefulLogic | None = None

    def __call__(self, item: Any) -> list[Any]:
        if self.logic is None:
            self.logic = self.build(None)
        out, keep = self.logic.on_item(item)
        if keep is StatefulLogic.DISCARD:
            self.logic = None
        return list(out)


class Join:
    """The join's shards wired by hand as the flow routes to them: a cover to its shard, a price
    batch and a closure to every shard, a retraction to the cover's shard. Each call is one batch."""

    def __init__(self, shards: int = 3) -> None:
        self.metrics = MetricGroup("portfolios")
        self.keys = [str(i) for i in range(shards)]
        self.shards = {k: self.build(None) for k in self.keys}
        self.out: list[Any] = []

    def build(self, resume: Any) -> JoinShard:
        return JoinShard(resume, min_coverage=MIN_COV, max_cost=MAX_COST, metrics=self.metrics)

    def of(self, cover_id: str) -> JoinShard:
        return self.shards[shard_of(cover_id, len(self.keys))]

    def _send(self, routed: list[tuple[str, tuple[str, Any]]]) -> list[Any]:
        out: list[Any] = []
        for key, msg in routed:
            changes, keep = self.shards[key].on_batch([msg])
            assert keep is StatefulLogic.RETAIN
            out += [c for batch in changes for c in batch]
        self.out += out
        return out

    def price(self, u: PriceUpdate) -> list[Any]:
        return self._send(price_batches(self.keys)([u]))

    def register(self, spec: CoverSpec) -> list[Any]:
        return self._send([(shard_of(spec.id, len(self.keys)), ("reg", spec))])

    def retract(self, r: CoverRetracted) -> list[Any]:
        return self._send([(shard_of(r.cover_id, len(self.keys)), ("retract", r.cover_id))])

    def close(self, market_id: str, yes_token: str) -> list[Any]:
        return self._send([(k, ("close", yes_token)) for k in self.keys])

    def holders(self, token: str) -> set[str]:
        return {cid for sh in self.shards.values() for cid in sh.holders.get(token, {})}


def pair(a: int, b: int) -> CoverSpec:
    legs = (Leg(f"m{a}", Side.YES, f"y{a}", f"n{a}", f"Q{a}?"), Leg(f"m{b}", Side.NO, f"y{b}", f"n{b}", f"Q{b}?"))
    return CoverSpec(CoverKind.TIMEFRAME, legs, True, 1.0)


def px(tok: int, bid: float | None, ask: float | None, bid_size: float = 10.0, ask_size: float = 10.0,
       ts: int = 1) -> PriceUpdate:
    return PriceUpdate(f"y{tok}", bid, ask, bid_size, ask_size, ts, ts)


def priced(spec: CoverSpec, *books: PriceUpdate) -> Any:
    q = price_cover(spec, {b.token_id: b for b in books}, min_coverage=MIN_COV, max_cost=MAX_COST)
    assert q is not None
    return q


# ----------------------------------------------------------------------------- one cover, many steps
def test_size_only_changes_lowered_tops_and_same_timestamps_are_all_published() -> None:
    j = Join()
    s = pair(1, 2)  # YES y1 (pays the ask, ask size), NO y2 (pays 1 - bid, bid size)
    j.register(s)
    a, b = px(1, 0.40, 0.42, ask_size=30), px(2, 0.55, 0.57, bid_size=20)
    j.price(a)
    (first,) = j.price(b)
    assert isinstance(first, PortfolioUpsert) and first.quote == priced(s, a, b) and first.spec == s
    assert first.quote.size_at_profit == 20
    steps = [
        px(2, 0.55, 0.57, bid_size=12),  # the NO leg's size alone
        px(1, 0.40, 0.42, ask_size=8),  # the YES leg's size alone
        px(1, 0.40, 0.41, ask_size=8),  # a lowered ask: cheaper YES leg
        px(2, 0.53, 0.57, bid_size=12),  # a lowered bid: dearer NO leg
        px(2, 0.50, 0.57, bid_size=12, ts=1),  # the same timestamp as the last one: still newer
    ]
    books = {"y1": a, "y2": b}
    for u in steps:
        books[u.token_id] = u
        (got,) = j.price(u)
        assert isinstance(got, PortfolioUpsert), u
        assert got.quote == priced(s, books["y1"], books["y2"]), u
    assert j.of(s.id).published[s.id] == got.quote
    assert got.quote.cost == pytest.approx(0.41 + 0.50) and got.quote.size_at_profit == 8


def test_a_portfolio_that_turns_unprofitable_stays_published_without_size_then_goes_when_too_dear() -> None:
    j = Join()
    s = pair(1, 2)
    j.register(s)
    j.price(px(1, 0.40, 0.42))
    (q1,) = j.price(px(2, 0.55, 0.57))
    assert q1.quote.profitable and q1.quote.size_at_profit == 10
    (q2,) = j.price(px(1, 0.40, 0.60))  # cost 0.60 + 0.45 = 1.05: a hedge, not an arbitrage
    assert isinstance(q2, PortfolioUpsert) and not q2.quote.profitable and q2.quote.size_at_profit == 0
    assert q2.quote.profit == pytest.approx(-0.05)
    (gone,) = j.price(px(2, 0.00, 0.57))  # NO leg now costs 1.00: 1.60 > max cost 1.5
    assert gone == PortfolioRemoved(s.id, "filtered")
    assert j.price(px(2, 0.00, 0.58)) == []  # still filtered: no second removal
    (back,) = j.price(px(2, 0.55, 0.57))
    assert isinstance(back, PortfolioUpsert) and back.quote == priced(s, px(1, 0.40, 0.60), px(2, 0.55, 0.57))


def test_retract_then_register_the_same_cover_prices_it_again_from_current_books() -> None:
    j = Join()
    s, other = pair(1, 2), pair(1, 3)
    j.register(s)
    j.register(other)
    for u in (px(1, 0.40, 0.42), px(2, 0.55, 0.57), px(3, 0.50, 0.52)):
        j.price(u)
    out = j.retract(CoverRetracted(s.id, ("y1", "y2")))
    assert out == [PortfolioRemoved(s.id, "retracted")]  # once, though two tokens held it
    assert j.holders("y1") == {other.id} and j.holders("y2") == set()
    assert s.id not in j.of(s.id).specs and s.id not in j.of(s.id).published  # the cover's state is gone
    # a move while retracted reaches only the cover still registered
    moved = px(1, 0.40, 0.44, ts=2)
    assert [c.quote.cover_id for c in j.price(moved)] == [other.id]
    # registered again: priced at once from the books the tokens hold now, published once
    (again,) = j.register(s)
    assert isinstance(again, PortfolioUpsert) and again.quote == priced(s, moved, px(2, 0.55, 0.57))
    assert j.register(s) == []  # a re-registration of a live cover changes nothing
    (moved2,) = j.price(px(2, 0.50, 0.57, ts=3))
    assert moved2.quote == priced(s, moved, px(2, 0.50, 0.57, ts=3))
    assert j.retract(CoverRetracted("never-registered", ("y1",))) == []


def test_a_closed_market_removes_its_covers_and_a_new_listing_starts_fresh() -> None:
    j = Join()
    s, t = pair(1, 2), pair(3, 2)
    for spec in (s, t):
        j.register(spec)
    for u in (px(1, 0.40, 0.42), px(2, 0.55, 0.57), px(3, 0.30, 0.32)):
        j.price(u)
    out = j.close("m2", "y2")
    assert sorted(out, key=str) == sorted([PortfolioRemoved(s.id, "market_closed"), PortfolioRemoved(t.id, "market_closed")], key=str)
    assert j.holders("y2") == set() and all("y2" not in sh.prices for sh in j.shards.values())
    # the removed cover's other token no longer reaches it: its next price re-publishes nothing
    assert j.holders("y1") == set() and j.holders("y3") == set()
    assert j.price(px(1, 0.41, 0.43, ts=4)) == []
    # in the flow the cover diff retracts the closed market's covers too
    assert j.retract(CoverRetracted(s.id, ("y1", "y2"))) == []  # already removed: said once only
    # the same cover registered again (a re-listing): the closed token's old price is not used
    assert j.register(s) == []
    (q,) = j.price(px(2, 0.60, 0.62, ts=5))
    assert q.quote == priced(s, px(1, 0.41, 0.43, ts=4), px(2, 0.60, 0.62, ts=5))


def test_moves_on_the_side_no_leg_buys_do_not_republish_but_are_kept() -> None:
    j = Join()
    s = pair(1, 2)
    j.register(s)
    j.price(px(1, 0.40, 0.42))
    j.price(px(2, 0.55, 0.57))
    assert j.price(px(1, 0.10, 0.42, bid_size=99, ts=9)) == []  # y1's bid side: the YES leg buys the ask
    assert j.price(px(2, 0.55, 0.90, ask_size=99, ts=9)) == []  # y2's ask side: the NO leg buys 1 - bid
    (q,) = j.price(px(1, 0.10, 0.43, bid_size=99, ts=10))
    assert q.quote == priced(s, px(1, 0.10, 0.43, bid_size=99, ts=10), px(2, 0.55, 0.90, ask_size=99, ts=9))
    assert q.quote.legs[0].bid == 0.10 and q.quote.legs[1].bid == pytest.approx(0.10)


def test_a_cover_holding_both_sides_of_one_token_reprices_on_either_side() -> None:
    legs = (Leg("m1", Side.YES, "y1", "n1"), Leg("m1", Side.NO, "y1", "n1"))
    s = CoverSpec(CoverKind.THRESHOLD, legs, True, 1.0)
    j = Join()
    j.register(s)
    assert j.of(s.id).holders == {"y1": {s.id: 3}}  # one entry for the token, both sides of its book
    (q,) = j.price(px(1, 0.40, 0.45))
    assert q.quote.cost == pytest.approx(0.45 + 0.60)
    (q,) = j.price(px(1, 0.42, 0.45))  # only the bid moved: the NO leg pays it
    assert q.quote.cost == pytest.approx(0.45 + 0.58)
    (q,) = j.price(px(1, 0.42, 0.44))  # only the ask moved: the YES leg pays it
    assert q.quote.cost == pytest.approx(0.44 + 0.58)


def test_join_state_survives_a_snapshot_mid_lifecycle() -> None:
    j = Join()
    s = pair(1, 2)
    j.register(s)
    j.price(px(1, 0.40, 0.42))
    j.price(px(2, 0.55, 0.57))
    j.shards = {k: j.build(pickle.loads(pickle.dumps(sh.snapshot()))) for k, sh in j.shards.items()}
    # the resumed sockets send every book again: the covers are priced from them
    late = pair(2, 1)
    assert j.register(late) == []  # registered after the resume: waits for the books
    assert j.price(px(1, 0.40, 0.42, ts=8)) == []
    out = j.price(px(2, 0.55, 0.57, ts=8))
    assert {c.quote.cover_id: c.quote for c in out} == {
        s.id: priced(s, px(1, 0.40, 0.42, ts=8), px(2, 0.55, 0.57, ts=8)),
        late.id: priced(late, px(1, 0.40, 0.42, ts=8), px(2, 0.55, 0.57, ts=8))}
    assert j.price(px(2, 0.55, 0.57, ts=9)) == []  # nothing new after that
    (q,) = [c for c in j.price(px(2, 0.54, 0.57, ts=9)) if c.quote.cover_id == s.id]
    assert q.quote == priced(s, px(1, 0.40, 0.42, ts=8), px(2, 0.54, 0.57, ts=9))


def test_unknown_messages_change_nothing() -> None:
    j = Join(shards=1)
    j.register(pair(1, 2))
    before = (dict(j.shards["0"].specs), dict(j.shards["0"].holders))
    assert j._send([("0", ("huh", 1))]) == []
    assert j.retract(CoverRetracted("never-registered", ("y1",))) == []  # nothing registered: nothing to say
    assert (j.shards["0"].specs, j.shards["0"].holders) == before


# ----------------------------------------------------------------------------- the cover diff
def spec(i: int, *markets: int) -> CoverSpec:
    legs = tuple(Leg(f"m{m}", Side.NO, f"y{m}", f"n{m}") for m in markets)
    return CoverSpec(CoverKind.ALL_NO, legs, True, 1.0, float(len(markets) - 1), id=f"c{i}")


def test_cover_diff_over_many_changes() -> None:
    key = Keyed(lambda r: CoverDiff(r, lambda covers: covers))
    a, b, c = spec(1, 1, 2), spec(2, 2, 3, 2), spec(3, 3, 4)

    def step(covers: list[CoverSpec]) -> tuple[set[str], list[tuple[str, tuple[str, ...]]]]:
        out = key(covers)
        specs = [x for x in out if isinstance(x, CoverSpec)]
        assert specs == covers  # the covers that hold now, every time (a re-grouped event re-registers)
        gone = [(r.cover_id, r.yes_tokens) for r in out if isinstance(r, CoverRetracted)]
        assert out == [*[x for x in out if isinstance(x, CoverRetracted)], *specs]  # retractions first
        return {x.id for x in specs}, gone

    assert step([a, b, c]) == ({"c1", "c2", "c3"}, [])
    assert step([a, b]) == ({"c1", "c2"}, [("c3", ("y3", "y4"))])  # a market closed
    assert step([a, b]) == ({"c1", "c2"}, [])  # a second change after the closure: nothing retracted again
    assert step([a]) == ({"c1"}, [("c2", ("y2", "y3"))])  # tokens once each, in leg order
    assert step([a, c]) == ({"c1", "c3"}, [])  # a cover coming back is registered, not retracted
    snap = pickle.loads(pickle.dumps(key.logic.snapshot()))  # type: ignore[union-attr]
    assert snap == {"c1": ("y1", "y2"), "c3": ("y3", "y4")}
    key.logic = key.build(snap)
    assert step([c]) == ({"c3"}, [("c1", ("y1", "y2"))])
    assert key([]) == [CoverRetracted("c3", ("y3", "y4"))]  # everything gone: the key's state goes too
    assert key.logic is None
    assert step([b]) == ({"c2"}, [])  # a fresh state retracts nothing it never emitted


def test_llm_pairs_follow_the_groups_through_a_closure_and_a_later_change() -> None:
    def market(i: int, date: str) -> GroupMarket:
        return GroupMarket(f"m{i}", f"Q{i}?", date, f"y{i}", f"n{i}", date)

    def premise(*ms: GroupMarket, title: str = "Ann by ...?") -> Group:
        return Group("p", title, PartitionType.TIMEFRAME, ms)

    conclusion = Group("c", "Ann is a candidate?", PartitionType.SINGLE, (market(21, "2028-11-07"),))
    imp = GroupImplication("p", "c", "implies", "p", "why", "", "m", "v1")
    june, sep, dec = market(11, "2028-06-30"), market(12, "2028-09-30"), market(13, "2028-12-31")
    key = Keyed(lambda r: LlmCoverDiff(r, pair_covers(0.98)))
    found = ImplicationFound(imp, premise(june, sep, dec), conclusion)
    assert implication_key(found) == "p>c"
    first = key(found)
    # December resolves after the conclusion's date: no pair; June and September pair
    assert sorted(c.legs[1].market_id for c in first) == ["m11", "m12"]
    assert all(c.cover_probability == 0.98 and c.legs[0].market_id == "m21" for c in first)
    by_market = {c.legs[1].market_id: c.id for c in first}
    out = key(ImplicationFound(imp, premise(june, dec), conclusion))  # September closed
    assert [r for r in out if isinstance(r, CoverRetracted)] == [CoverRetracted(by_market["m12"], ("y21", "y12"))]
    # a second change to the premise (a retitle) after the closure: the June pair stays, nothing is retracted
    out = key(ImplicationFound(imp, premise(june, dec, title="Ann by when?"), conclusion))
    assert [c.id for c in out] == [by_market["m11"]]
    # the premise event closes: its last pair goes and the key is freed
    out = key(ImplicationFound(imp, premise(), conclusion))
    assert out == [CoverRetracted(by_market["m11"], ("y21", "y11"))] and key.logic is None


def test_repricing_is_counted_and_a_removed_cover_is_never_repriced() -> None:
    j = Join()
    m = j.metrics
    s = pair(1, 2)
    r0 = m.get("repriced")
    j.register(s)
    j.price(px(1, 0.40, 0.42))
    j.price(px(2, 0.55, 0.57))
    assert m.get("repriced") - r0 == 3  # registration + two prices
    j.price(px(2, 0.55, 0.99))  # the side no leg buys: not evaluated
    assert m.get("repriced") - r0 == 3
    j.close("m2", "y2")
    j.price(px(1, 0.41, 0.42))  # the cover's other token: it is gone from there too
    assert m.get("repriced") - r0 == 3


def test_the_flow_wires_retractions_to_every_leg_token() -> None:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    from operators.portfolio_join import portfolio_join
    from tests.test_price_join import Gated

    s, t = pair(1, 2), pair(2, 3)
    prices = [px(1, 0.40, 0.42), px(2, 0.55, 0.57), px(3, 0.30, 0.32)]
    out: list[Any] = []
    first = [("c", s), ("c", t)] + [("p", p) for p in prices]
    late = [("r", CoverRetracted(s.id, ("y1", "y2"))), ("p", px(2, 0.50, 0.53, ts=5))]
    flow = Dataflow("retract_test")
    src = op.input("in", flow, Gated(first, late, lambda: len(out) >= 2))
    cov = op.filter_map("covers", src, lambda x: x[1] if x[0] == "c" else None)
    prc = op.filter_map("prices", src, lambda x: x[1] if x[0] == "p" else None)
    ret = op.filter_map("retracted", src, lambda x: x[1] if x[0] == "r" else None)
    cls = op.filter_map("closed", src, lambda x: None)
    op.output("out", portfolio_join("join", prc, cov, cls, min_coverage=MIN_COV, max_cost=MAX_COST, retracted=ret),
              TestingSink(out))
    run_main(flow)
    removed = [c for c in out if isinstance(c, PortfolioRemoved)]
    assert removed == [PortfolioRemoved(s.id, "retracted")]
    # after the retraction only the other cover follows y2's move
    last = {c.quote.cover_id: c.quote for c in out if isinstance(c, PortfolioUpsert)}
    assert set(last) == {s.id, t.id}
    assert last[t.id] == priced(t, px(2, 0.50, 0.53, ts=5), px(3, 0.30, 0.32))


def test_a_crossed_book_removes_the_portfolio_until_it_uncrosses() -> None:
    j = Join()
    s = pair(1, 2)
    j.register(s)
    j.price(px(1, 0.40, 0.42))
    (up,) = j.price(px(2, 0.55, 0.57))
    assert isinstance(up, PortfolioUpsert)
    crossed = j.price(px(1, 0.90, 0.10, ts=3))
    assert crossed == [PortfolioRemoved(s.id, "crossed_book")] and j.metrics.get("crossed_book") == 1
    assert j.price(px(1, 0.91, 0.10, ts=4)) == []  # still crossed: nothing published, nothing removed twice
    (back,) = j.price(px(1, 0.40, 0.43, ts=5))
    assert isinstance(back, PortfolioUpsert) and back.quote.legs[0].ask == 0.43
