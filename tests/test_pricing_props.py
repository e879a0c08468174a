"""Pricing (operators/pricing.py) and pair expansion (operators/pairs.py), tested directly.

The property tests compare `evaluate` with a reference written from the pricing module's
documented rules, in integer ticks (cents) so nothing is compared by the same float
arithmetic it checks: which side of the book each leg pays, sizes, timestamps, coverage,
tiers and both filters, on random books and random portfolios. The example tests pin the
boundaries a flipped comparison would move (tier bounds, `min_coverage`, `max_cost`, a
portfolio at exactly zero profit) and the cases the flow tests never produce (a change of
size alone, an empty side of a book, a portfolio that turns unprofitable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from operators import pricing
from operators.pairs import expand_implication, market_pairs
from operators.pricing import (
    REASON_LOW_COVERAGE,
    REASON_NO_PRICE,
    REASON_OK,
    REASON_TOO_EXPENSIVE,
    evaluate,
    price_cover,
    quote_changed,
    tier_of,
)
from polyalphascan.records import (
    CoverKind,
    CoverSpec,
    Group,
    GroupImplication,
    GroupMarket,
    Leg,
    MarketTerms,
    PartitionType,
    PriceUpdate,
    Side,
)
from tests import pricing_reference

FAST = settings(max_examples=150, derandomize=True, deadline=None)


def leg(i: int, side: Side) -> Leg:
    return Leg(f"m{i}", side, f"y{i}", f"n{i}", f"Q{i}?", f"e{i}")


def book(i: int, bid: int | None, ask: int | None, bid_size: float | None = 10.0, ask_size: float | None = 20.0,
         ts: int = 0, recv: int = 0) -> PriceUpdate:
    """YES book of market i, prices in ticks (cents)."""
    return PriceUpdate(f"y{i}", None if bid is None else bid / 100, None if ask is None else ask / 100,
                       bid_size, ask_size, ts, recv)


def spec(*legs: Leg, guaranteed: bool = True, q: float = 1.0, payout: float = 1.0, why: str = "") -> CoverSpec:
    return CoverSpec(CoverKind.LLM if not guaranteed else CoverKind.TIMEFRAME, legs, guaranteed, q, payout, why)


def ev(s: CoverSpec, books: list[PriceUpdate], min_coverage: float = 0.85, max_cost: float = 1.5):  # noqa: ANN201
    return evaluate(s, {b.token_id: b for b in books}, min_coverage=min_coverage, max_cost=max_cost)


# ----------------------------------------------------------------------------- reference
def reference(s: CoverSpec, books: dict[str, tuple[int | None, int | None, float | None, float | None, int, int]],
              min_coverage: float, max_cost: float) -> tuple[str, dict | None]:
    """The module docstring's rules, in ticks: YES pays the ask (ask size), NO pays 100 − bid
    (bid size); coverage 1 for guaranteed, else p + (1 − p)·q with p the first leg's price."""
    ticks, sizes, stamps = [], [], []
    for lg in s.legs:
        if lg.yes_token not in books:
            return REASON_NO_PRICE, None
        bid, ask, bsz, asz, ts, recv = books[lg.yes_token]
        if lg.side is Side.YES:
            if ask is None:
                return REASON_NO_PRICE, None
            ticks.append(ask)
            sizes.append(asz)
        else:
            if bid is None:
                return REASON_NO_PRICE, None
            ticks.append(100 - bid)
            sizes.append(bsz)
        stamps.append(ts if ts else recv)
    cost_ticks = sum(ticks)
    if s.guaranteed:
        coverage, loss = 1.0, 0.0
    else:
        p = ticks[0] / 100
        coverage = p + (1 - p) * s.cover_probability
        loss = (1 - p) * (1 - s.cover_probability)
    tier = 1 if coverage >= 0.95 - 1e-9 else 2 if coverage >= 0.90 - 1e-9 else 3 if coverage >= 0.85 - 1e-9 else 4
    if not s.guaranteed:
        tier = max(tier, 2)  # tier 1 is for guaranteed covers only
    if tier == 4 or coverage < min_coverage - 1e-9:
        return REASON_LOW_COVERAGE, None
    if cost_ticks > (max_cost * s.payout) * 100 + 1e-6:
        return REASON_TOO_EXPENSIVE, None
    profit_ticks = round(s.payout * 100) - cost_ticks
    size = min((z if z is not None else 0.0) for z in sizes) if profit_ticks > 0 else 0.0
    return REASON_OK, {
        "cost": cost_ticks / 100, "profit": profit_ticks / 100, "coverage": coverage, "loss": loss, "tier": tier,
        "expected": coverage * s.payout - cost_ticks / 100, "size": size, "updated": max(stamps),
        "pct": (profit_ticks / cost_ticks * 100) if cost_ticks else 0.0,
    }


@st.composite
def portfolios(draw):  # noqa: ANN001, ANN201
    n = draw(st.integers(1, 4))
    markets = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n, unique=True))
    sides = draw(st.lists(st.sampled_from([Side.YES, Side.NO]), min_size=n, max_size=n))
    guaranteed = draw(st.booleans())
    q = 1.0 if guaranteed else draw(st.sampled_from([0.5, 0.8, 0.9, 0.98, 1.0]))
    payout = draw(st.sampled_from([1.0, 2.0, 3.0]))
    s = CoverSpec(CoverKind.ALL_NO if guaranteed else CoverKind.LLM, tuple(leg(m, sd) for m, sd in zip(markets, sides)),
                  guaranteed, q, payout, "why")
    books = {}
    for m in range(6):
        if draw(st.integers(0, 9)) == 0:
            continue  # no book at all for this token
        bid = draw(st.one_of(st.none(), st.integers(1, 97)))
        ask = draw(st.one_of(st.none(), st.integers((bid or 0) + 1, 99)))
        bsz = draw(st.one_of(st.none(), st.sampled_from([0.5, 3.0, 7.25, 100.0])))
        asz = draw(st.one_of(st.none(), st.sampled_from([1.0, 4.5, 9.0, 250.0])))
        ts = draw(st.sampled_from([0, 5, 1000, 2000]))
        books[f"y{m}"] = (bid, ask, bsz, asz, ts, draw(st.sampled_from([1, 7, 1500])))
    min_cov = draw(st.sampled_from([0.0, 0.85, 0.9, 0.95, 0.99]))
    max_cost = draw(st.sampled_from([0.5, 0.9, 1.0, 1.2, 1.5]))
    return s, books, min_cov, max_cost


@FAST
@given(portfolios())
def test_evaluate_agrees_with_the_documented_rules(case) -> None:  # noqa: ANN001
    s, raw, min_cov, max_cost = case
    books = {tok: PriceUpdate(tok, None if b is None else b / 100, None if a is None else a / 100, bs, az, ts, rv)
             for tok, (b, a, bs, az, ts, rv) in raw.items()}
    quote, reason = evaluate(s, books, min_coverage=min_cov, max_cost=max_cost)
    want_reason, want = reference(s, raw, min_cov, max_cost)
    assert reason == want_reason
    assert (quote is None) == (want is None)
    assert price_cover(s, books, min_coverage=min_cov, max_cost=max_cost) == quote
    if want is None:
        return
    assert quote is not None
    assert quote.cost == pytest.approx(want["cost"], abs=1e-9)
    assert quote.profit == pytest.approx(want["profit"], abs=1e-9)
    assert quote.profit_pct == pytest.approx(want["pct"], abs=1e-6)
    assert quote.coverage == pytest.approx(want["coverage"], abs=1e-12)
    assert quote.loss_probability == pytest.approx(want["loss"], abs=1e-12)
    assert quote.expected_profit == pytest.approx(want["expected"], abs=1e-9)
    assert quote.tier == want["tier"]
    assert quote.size_at_profit == want["size"]
    assert quote.updated_ms == want["updated"]
    assert quote.payout == s.payout and quote.guaranteed == s.guaranteed and quote.kind is s.kind
    assert quote.cover_id == s.id and quote.explanation == "why" and quote.question == s.legs[0].question
    assert quote.profitable == (want["profit"] > 1e-9)
    # each leg: the position bought, its price, its size and its own bid
    for lq, lg in zip(quote.legs, s.legs, strict=True):
        bid, ask, bsz, asz, _ts, _rv = raw[lg.yes_token]
        assert (lq.market_id, lq.side, lq.token_id) == (lg.market_id, lg.side, lg.token_id)
        if lg.side is Side.YES:
            assert (lq.ask, lq.ask_size) == (pytest.approx(ask / 100), asz)
            assert lq.bid == (None if bid is None else pytest.approx(bid / 100))
        else:
            assert (lq.ask, lq.ask_size) == (pytest.approx((100 - bid) / 100), bsz)
            assert lq.bid == (None if ask is None else pytest.approx((100 - ask) / 100))


# ----------------------------------------------------------------------------- sides and sizes
def test_each_leg_pays_its_own_side_of_the_book() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO))
    q, reason = ev(s, [book(1, 40, 42, bid_size=3, ask_size=5), book(2, 55, 57, bid_size=8, ask_size=9)])
    assert reason == REASON_OK and q is not None
    assert [(lq.token_id, lq.ask, lq.ask_size, lq.bid) for lq in q.legs] == [
        ("y1", 0.42, 5, 0.40),  # YES: buys at the YES ask, the ask's size
        ("n2", 0.45, 8, 0.43),  # NO: buys at 1 − YES bid, the bid's size; its bid is 1 − YES ask
    ]
    assert q.cost == 0.87 and q.profit == 0.13 and q.size_at_profit == 5


def test_an_empty_side_only_matters_to_the_leg_that_buys_it() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO))
    # the sides no leg buys are empty: still priced
    q, reason = ev(s, [book(1, None, 42), book(2, 55, None)])
    assert reason == REASON_OK and q is not None and q.legs[0].bid is None and q.legs[1].bid is None
    assert ev(s, [book(1, 40, None), book(2, 55, 57)]) == (None, REASON_NO_PRICE)  # YES leg: no ask
    assert ev(s, [book(1, 40, 42), book(2, None, 57)]) == (None, REASON_NO_PRICE)  # NO leg: no bid
    assert ev(s, [book(1, 40, 42)]) == (None, REASON_NO_PRICE)  # no book at all


def test_size_at_profit_is_the_smallest_leg_size_and_only_when_profitable() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO), leg(3, Side.YES), payout=2.0)
    books = [book(1, 20, 30, ask_size=12), book(2, 60, 70, bid_size=4), book(3, 10, 20, ask_size=9)]
    q, _ = ev(s, books)
    assert q is not None and q.cost == pytest.approx(0.9) and q.size_at_profit == 4
    # a change of size alone: the quote changes, and a consumer is told
    books[1] = book(2, 60, 70, bid_size=2.5)
    q2, _ = ev(s, books)
    assert q2 is not None and q2.size_at_profit == 2.5 and q2.cost == q.cost and quote_changed(q, q2)
    # a missing size counts as nothing available
    books[1] = book(2, 60, 70, bid_size=None)
    q3, _ = ev(s, books)
    assert q3 is not None and q3.size_at_profit == 0.0 and q3.legs[1].ask_size is None


def test_a_portfolio_that_turns_unprofitable_offers_no_size() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO))
    q, _ = ev(s, [book(1, 40, 45), book(2, 50, 60)])  # 0.45 + 0.50 = 0.95
    assert q is not None and q.profitable and q.size_at_profit == 10
    even, _ = ev(s, [book(1, 40, 50), book(2, 50, 60)])  # exactly 1.00: no profit
    assert even is not None and even.profit == 0 and not even.profitable and even.size_at_profit == 0
    assert even.profit_pct == 0 and even.expected_profit == pytest.approx(0.0)
    loss, _ = ev(s, [book(1, 40, 55), book(2, 50, 60)])  # 1.05
    assert loss is not None and loss.profit == pytest.approx(-0.05) and loss.size_at_profit == 0
    assert loss.profit_pct == pytest.approx(-0.05 / 1.05 * 100)
    assert quote_changed(q, loss) and quote_changed(q, even)


def test_updated_is_the_newest_leg_timestamp_exchange_first() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO))
    q, _ = ev(s, [book(1, 40, 42, ts=500, recv=900), book(2, 55, 57, ts=0, recv=700)])
    assert q is not None and q.updated_ms == 700  # leg 1: exchange 500 (not its receive 900); leg 2: receive 700
    q, _ = ev(s, [book(1, 40, 42, ts=800, recv=1), book(2, 55, 57, ts=600, recv=2)])
    assert q is not None and q.updated_ms == 800


# ----------------------------------------------------------------------------- coverage, tiers, filters
@pytest.mark.parametrize("coverage,tier", [
    (1.0, 1), (0.95, 1), (0.95 - 5e-10, 1), (0.9499, 2), (0.90, 2), (0.90 - 5e-10, 2), (0.8999, 3),
    (0.85, 3), (0.85 - 5e-10, 3), (0.8499, 4), (0.0, 4),
])
def test_tier_bounds(coverage: float, tier: int) -> None:
    assert tier_of(coverage) == tier


def test_llm_pair_coverage_loss_and_expected_profit() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO), guaranteed=False, q=0.9)
    q, _ = ev(s, [book(1, 58, 60), book(2, 30, 35)], min_coverage=0.0)  # p_t = 0.60 (the target's ask)
    assert q is not None
    assert q.coverage == pytest.approx(0.60 + 0.40 * 0.9) and q.loss_probability == pytest.approx(0.40 * 0.1)
    # coverage 0.96 would be tier 1, but an LLM cover is never riskless: tier 2 at best
    assert q.cost == pytest.approx(1.30) and q.expected_profit == pytest.approx(0.96 - 1.30) and q.tier == 2
    # p_t is the first leg's ask: with the legs swapped the coverage follows the other leg
    swapped = spec(leg(2, Side.NO), leg(1, Side.YES), guaranteed=False, q=0.9)
    q2, _ = ev(swapped, [book(1, 58, 60), book(2, 30, 35)], min_coverage=0.0)
    assert q2 is not None and q2.coverage == pytest.approx(0.70 + 0.30 * 0.9)


def test_min_coverage_and_tier_4_filter_at_their_bounds() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO), guaranteed=False, q=0.5)
    books = [book(1, 68, 70), book(2, 50, 52)]  # coverage 0.7 + 0.3·0.5 = 0.85: tier 3
    q, reason = ev(s, books, min_coverage=0.85)
    assert reason == REASON_OK and q is not None and q.tier == 3
    assert ev(s, books, min_coverage=0.86) == (None, REASON_LOW_COVERAGE)
    low = [book(1, 66, 68), book(2, 50, 52)]  # 0.68 + 0.32·0.5 = 0.84: tier 4 even with no minimum
    assert ev(s, low, min_coverage=0.0) == (None, REASON_LOW_COVERAGE)


def test_max_cost_is_per_dollar_of_payout_and_inclusive() -> None:
    basket = spec(leg(1, Side.NO), leg(2, Side.NO), leg(3, Side.NO), payout=2.0)
    books = [book(1, 40, 41), book(2, 30, 31), book(3, 30, 31)]  # NO asks 0.60 + 0.70 + 0.70 = 2.00
    q, reason = ev(basket, books, max_cost=1.0)  # 2.00 / 2 = 1.0: allowed
    assert reason == REASON_OK and q is not None and q.cost == 2.0 and q.profit == 0.0
    assert ev(basket, books, max_cost=0.99) == (None, REASON_TOO_EXPENSIVE)
    assert ev(spec(leg(1, Side.YES), payout=0.0), [book(1, 40, 41)], max_cost=100.0) == (None, REASON_TOO_EXPENSIVE)
    # the coverage filter comes first
    llm = spec(leg(1, Side.YES), leg(2, Side.NO), guaranteed=False, q=0.0)
    assert ev(llm, [book(1, 10, 12), book(2, 10, 12)], max_cost=0.01) == (None, REASON_LOW_COVERAGE)


# ----------------------------------------------------------------------------- quote_changed
def test_quote_changed_sees_every_number_a_consumer_acts_on_and_not_the_clock() -> None:
    s = spec(leg(1, Side.YES), leg(2, Side.NO))
    q, _ = ev(s, [book(1, 40, 42, ts=1), book(2, 55, 57, ts=1)])
    assert q is not None
    assert not quote_changed(q, replace(q, updated_ms=99, profit_pct=q.profit_pct))
    for name, value in [("cost", 0.5), ("tier", 2), ("size_at_profit", 1.0), ("coverage", 0.9), ("payout", 2.0)]:
        assert quote_changed(q, replace(q, **{name: value})), name
    for i in range(2):
        for attr, value in [("ask", 0.01), ("ask_size", 1234.0)]:
            legs = list(q.legs)
            legs[i] = replace(legs[i], **{attr: value})
            assert quote_changed(q, replace(q, legs=tuple(legs))), (i, attr)


# ----------------------------------------------------------------------------- pair expansion
def gm(i: int, label: str = "", date: str | None = None) -> GroupMarket:
    return GroupMarket(f"m{i}", f"Q{i}?", label or f"L{i}", f"y{i}", f"n{i}", date)


def grp(eid: str, kind: PartitionType, *markets: GroupMarket, exclusive: bool = False) -> Group:
    return Group(eid, f"Title {eid}", kind, markets, mutually_exclusive=exclusive)


def ids(pairs: list[tuple[GroupMarket, GroupMarket]]) -> list[tuple[str, str]]:
    return [(p.market_id, c.market_id) for p, c in pairs]


def test_pairs_single_and_candidates() -> None:
    assert ids(market_pairs(grp("p", PartitionType.SINGLE, gm(1)), grp("c", PartitionType.SINGLE, gm(2)))) == [("m1", "m2")]
    prem = grp("p", PartitionType.CANDIDATE, gm(1, "Ann Lee"), gm(2, "Bo"), gm(3, "Cy"), exclusive=True)
    conc = grp("c", PartitionType.CANDIDATE, gm(4, "ann  lee!"), gm(5, "Cy"), gm(6, "Di"), exclusive=True)
    # same person only (labels compared normalised), never across people
    assert ids(market_pairs(prem, conc)) == [("m1", "m4"), ("m3", "m5")]


def test_pairs_timeframes_need_both_dates_and_a_later_or_equal_conclusion() -> None:
    prem = grp("p", PartitionType.TIMEFRAME, gm(1, date="2028-06-30"), gm(2, date="2028-12-31"), gm(3))
    conc = grp("c", PartitionType.TIMEFRAME, gm(4, date="2028-06-30"), gm(5, date="2028-03-31"), gm(6, date="2029-01-01"))
    assert sorted(ids(market_pairs(prem, conc))) == [("m1", "m4"), ("m1", "m6"), ("m2", "m6")]


def test_pairs_other_mixes_skip_only_incompatible_dates_and_exclusive_premises() -> None:
    prem = grp("p", PartitionType.THRESHOLD, gm(1, date="2028-06-30"), gm(2))
    conc = grp("c", PartitionType.SINGLE, gm(3, date="2028-01-01"))
    # m1's date is after the conclusion's: skipped; m2 has no date: compatible
    assert ids(market_pairs(prem, conc)) == [("m2", "m3")]
    conc_late = grp("c", PartitionType.SINGLE, gm(4, date="2028-06-30"))
    assert ids(market_pairs(prem, conc_late)) == [("m1", "m4"), ("m2", "m4")]  # equal dates are compatible
    undated = grp("c", PartitionType.SINGLE, gm(5))
    assert ids(market_pairs(prem, undated)) == [("m1", "m5"), ("m2", "m5")]
    exclusive = grp("p", PartitionType.CANDIDATE, gm(1, "Ann"), gm(2, "Bo"), exclusive=True)
    assert market_pairs(exclusive, conc) == []
    inclusive = grp("p", PartitionType.CANDIDATE, gm(1, "Ann"), gm(2, "Bo"), exclusive=False)
    assert ids(market_pairs(inclusive, conc)) == [("m1", "m3"), ("m2", "m3")]


def test_expansion_is_yes_on_the_conclusion_and_no_on_the_premise() -> None:
    prem = grp("p", PartitionType.SINGLE, gm(1))
    conc = grp("c", PartitionType.SINGLE, gm(2))
    imp = GroupImplication("p", "c", "implies", "p", "because", "", "m", "v1")
    (cover,) = expand_implication(imp, prem, conc, 0.97)
    assert [(lg.market_id, lg.side, lg.yes_token, lg.no_token, lg.event_id, lg.question) for lg in cover.legs] == [
        ("m2", Side.YES, "y2", "n2", "c", "Q2?"), ("m1", Side.NO, "y1", "n1", "p", "Q1?")]
    assert (cover.kind, cover.guaranteed, cover.cover_probability, cover.payout, cover.explanation) == (
        CoverKind.LLM, False, 0.97, 1.0, "because")
    (plain,) = expand_implication(replace(imp, explanation=""), prem, conc, 0.97)
    assert plain.explanation == "Title p implies Title c"
    # the same market on both sides is no cover
    assert expand_implication(imp, prem, grp("c", PartitionType.SINGLE, gm(1)), 0.97) == []


def test_free_and_barely_profitable_portfolios() -> None:
    free, reason = ev(spec(leg(1, Side.YES)), [book(1, None, 0)])  # an ask of 0: nothing to pay
    assert reason == REASON_OK and free is not None
    assert free.cost == 0 and free.profit == 1.0 and free.profit_pct == 0.0 and free.size_at_profit == 20
    s = spec(leg(1, Side.YES))
    one_nano = PriceUpdate("y1", None, 0.999999999, None, 20.0)  # profit 1e-9: not a profit (EPS)
    q, _ = evaluate(s, {"y1": one_nano}, min_coverage=0.85, max_cost=1.5)
    assert q is not None and q.profit == pytest.approx(1e-9, abs=1e-15) and q.size_at_profit == 0.0
    assert not q.profitable


def test_no_timestamp_at_all_is_zero() -> None:
    q, _ = ev(spec(leg(1, Side.YES), leg(2, Side.NO)), [book(1, 40, 42), book(2, 55, 57)])
    assert q is not None and q.updated_ms == 0


def test_a_timeframe_premise_with_another_conclusion_is_a_mixed_pairing() -> None:
    prem = grp("p", PartitionType.TIMEFRAME, gm(1, date="2028-06-30"), gm(2, date="2028-12-31"))
    undated = grp("c", PartitionType.SINGLE, gm(3))  # no date: compatible with every rung
    assert ids(market_pairs(prem, undated)) == [("m1", "m3"), ("m2", "m3")]


def test_a_crossed_book_is_never_priced_let_alone_as_a_guaranteed_profit() -> None:
    """bid 0.9 / ask 0.1 on a YES token makes YES ask 0.1 and NO ask 0.1: a 'guaranteed' 80 % profit
    no order can take. Crossed tops price nothing; a touching book (bid == ask) still prices."""
    from operators.pricing import REASON_CROSSED, evaluate
    from polyalphascan.records import CoverKind, CoverSpec, Leg, PriceUpdate, Side

    legs = (Leg("a", Side.YES, "ya", "na"), Leg("b", Side.NO, "yb", "nb"))
    spec = CoverSpec(CoverKind.TIMEFRAME, legs, True, 1.0)
    fine = {"ya": PriceUpdate("ya", 0.40, 0.42, 10, 10, 1, 1), "yb": PriceUpdate("yb", 0.45, 0.47, 10, 10, 1, 1)}
    assert evaluate(spec, fine, min_coverage=0.0, max_cost=2.0)[1] == "ok"
    for token in ("ya", "yb"):
        crossed = {**fine, token: PriceUpdate(token, 0.9, 0.1, 10, 10, 2, 2)}
        assert evaluate(spec, crossed, min_coverage=0.0, max_cost=2.0) == (None, REASON_CROSSED)
    touching = {**fine, "ya": PriceUpdate("ya", 0.42, 0.42, 10, 10, 2, 2)}
    assert evaluate(spec, touching, min_coverage=0.0, max_cost=2.0)[1] == "ok"


# ----------------------------------------------------------------------------- the old implementation, bit for bit
def _bits(value: object) -> object:
    """`value` with every float as its exact repr (tells 0.0 from -0.0; nan equals nan)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return tuple(_bits(v) for v in value)
    return value


def _fields(quote: object) -> dict[str, object]:
    out = {f.name: _bits(getattr(quote, f.name)) for f in dataclasses.fields(quote)}  # type: ignore[arg-type]
    if "legs" in out:
        out["legs"] = [_fields(lq) for lq in getattr(quote, "legs")]
    return out


def _same(got: tuple[object, str], want: tuple[object, str]) -> None:
    assert got[1] == want[1]
    assert (got[0] is None) == (want[0] is None)
    if want[0] is not None:
        assert _fields(got[0]) == _fields(want[0])


_PRICES = st.one_of(st.integers(0, 100).map(lambda c: c / 100), st.integers(0, 1000).map(lambda m: m / 1000),
                    st.floats(0.0, 1.0, allow_nan=False))
_SIZES = st.sampled_from([0.0, 0.004, 0.5, 1.0, 3.0, 4.999, 5.0, 7.25, 20.0, 100.0, 1000.0])


@st.composite
def _terms(draw):  # noqa: ANN001, ANN202
    rate = draw(st.sampled_from([0.0, 0.0, 0.02, 0.05, 0.25, -0.1]))
    return MarketTerms(tick=draw(st.sampled_from([0.01, 0.001, 0.0, 0.05])),
                       min_size=draw(st.sampled_from([0.0, 1.0, 5.0, 15.0])), fees_enabled=rate != 0.0,
                       fee_rate=rate, fee_exponent=draw(st.sampled_from([1.0, 2.0, 0.5])),
                       neg_risk=draw(st.booleans()),
                       end_date=draw(st.sampled_from([None, "2026-12-31T12:00:00Z", "2027-03-01", "garbage"])))


@st.composite
def _levels(draw, least: int = 0):  # noqa: ANN001, ANN202
    """A depth side: flat (price, size, ...), sizes sometimes 0 (skipped by the walk)."""
    n = draw(st.integers(least, 6))
    return tuple(x for _ in range(n) for x in (draw(_PRICES), draw(_SIZES)))


@st.composite
def _book(draw, token: str):  # noqa: ANN001, ANN202
    """Mostly a real book (bids below a mid, asks above, best first, tops = the first levels);
    sometimes anything: unsorted, crossed, tops apart from the levels or missing."""
    wild = draw(st.integers(0, 3)) == 0
    bids, asks = draw(_levels(0 if wild else 1)), draw(_levels(0 if wild else 1))
    if not wild:
        mid = draw(_PRICES)
        bids = tuple(x for p in sorted(zip((b * mid for b in bids[::2]), bids[1::2]), reverse=True) for x in p)
        asks = tuple(x for p in sorted(zip((mid + a * (1 - mid) for a in asks[::2]), asks[1::2])) for x in p)
    tops = st.just(bids[0] if bids else None), st.just(asks[0] if asks else None)
    best_bid = draw(st.one_of(st.none(), tops[0], _PRICES)) if wild else draw(tops[0])
    best_ask = draw(st.one_of(st.none(), tops[1], _PRICES)) if wild else draw(tops[1])
    return PriceUpdate(token, best_bid, best_ask, draw(st.one_of(st.none(), _SIZES)), draw(st.one_of(st.none(), _SIZES)),
                       draw(st.sampled_from([0, 5, 1_790_000_000_000])), draw(st.sampled_from([0, 7, 1_790_000_100_000])),
                       0, False, bids, asks, draw(st.sampled_from([0.0, 0.0, 0.001, 0.01])))


@st.composite
def _cases(draw):  # noqa: ANN001, ANN202
    n = draw(st.integers(1, 5))
    markets = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))  # a market may appear twice
    legs = tuple(Leg(f"m{m}", draw(st.sampled_from([Side.YES, Side.NO])), f"y{m}", f"n{m}", f"Q{m}?", "e",
                     draw(_terms())) for m in markets)
    guaranteed = draw(st.booleans())
    s = CoverSpec(CoverKind.ALL_NO if guaranteed else CoverKind.LLM, legs, guaranteed,
                  1.0 if guaranteed else draw(st.sampled_from([0.5, 0.9, 0.97, 1.0])),
                  draw(st.sampled_from([1.0, 2.0, float(max(1, n - 1)), 0.0])), "why")
    books = {f"y{m}": draw(_book(f"y{m}")) for m in sorted(set(markets)) if draw(st.integers(0, 14))}
    return s, books, draw(st.sampled_from([0.0, 0.85, 0.95])), draw(st.sampled_from([0.9, 1.0, 1.5, 100.0]))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(_cases(), st.booleans())
def test_evaluate_is_bit_for_bit_the_old_implementation(case, depth: bool) -> None:  # noqa: ANN001
    s, books, min_cov, max_cost = case
    kw = {"min_coverage": min_cov, "max_cost": max_cost, "depth": depth}
    want = pricing_reference.evaluate(s, books, **kw)
    _same(evaluate(s, books, **kw), want)
    _same(evaluate(s, books, **kw), want)  # again: from the cached plan
    other = replace(s, payout=s.payout + 1.0)  # another spec on the same legs tuple
    _same(evaluate(other, books, **kw), pricing_reference.evaluate(other, books, **kw))


@st.composite
def _profitable_cases(draw):  # noqa: ANN001, ANN202
    """Sorted books whose first share-set makes money before fees: the depth walk runs (or,
    on a thin edge, the fees take it away at the top)."""
    n = draw(st.integers(1, 4))
    legs = tuple(Leg(f"m{i}", draw(st.sampled_from([Side.YES, Side.NO])), f"y{i}", f"n{i}", "", "e", draw(_terms()))
                 for i in range(n))
    payout = draw(st.sampled_from([1.0, 2.0]))
    tops = [draw(st.integers(1, max(1, 90 // n))) for _ in legs]
    if draw(st.booleans()):  # a thin edge: the top costs the payout less 1 to 3 cents
        tops[-1] = int(payout * 100) - draw(st.integers(1, 3)) - sum(tops[:-1])
        assume(1 <= tops[-1] <= 99)
    books = {}
    for lg, top in zip(legs, tops):
        steps = draw(st.lists(st.integers(0, 15), min_size=0, max_size=8))
        prices = [top + sum(steps[:k]) for k in range(len(steps) + 1)]
        prices = [p / 100 for p in prices if p < 100]
        sizes = [draw(_SIZES) for _ in prices]
        side = tuple(x for p, z in zip(prices, sizes) for x in ((p if lg.side is Side.YES else 1 - p), z))
        books[lg.yes_token] = PriceUpdate(lg.yes_token, side[0] if lg.side is Side.NO else None,
                                          side[0] if lg.side is Side.YES else None, sizes[0], sizes[0], 1_790_000_000_000,
                                          0, 0, False, side if lg.side is Side.NO else (),
                                          side if lg.side is Side.YES else (), draw(st.sampled_from([0.0, 0.001])))
    s = CoverSpec(CoverKind.ALL_YES, legs, True, 1.0, payout, "why")
    return s, books


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_profitable_cases())
def test_depth_walks_are_bit_for_bit_the_old_implementation(case) -> None:  # noqa: ANN001
    s, books = case
    kw = {"min_coverage": 0.0, "max_cost": 100.0}
    want = pricing_reference.evaluate(s, books, **kw)
    got = evaluate(s, books, **kw)
    _same(got, want)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(_cases(), st.data())
def test_quote_changed_is_the_old_implementation(case, data) -> None:  # noqa: ANN001
    s, books, _min_cov, _max_cost = case
    changed = {tok: data.draw(_book(tok)) if data.draw(st.booleans()) else b for tok, b in books.items()}
    a, _ = pricing_reference.evaluate(s, books, min_coverage=0.0, max_cost=100.0)
    b, _ = pricing_reference.evaluate(s, changed, min_coverage=0.0, max_cost=100.0)
    if a is None or b is None:
        return
    variants = [b, a, replace(a, updated_ms=a.updated_ms + 1)]
    for i, lq in enumerate(a.legs):  # one leg's number moved, alone
        for attr in ("ask", "ask_size", "limit", "tick", "vwap", "shares", "fee", "bid"):
            value = getattr(lq, attr)
            legs = list(a.legs)
            legs[i] = replace(lq, **{attr: 0.5 if value is None else value + 0.001})
            variants.append(replace(a, legs=tuple(legs)))
    for y in variants:
        for x, z in ((a, y), (y, a)):
            assert quote_changed(x, z) == pricing_reference.quote_changed(x, z)


def test_the_plan_cache_is_bounded_and_never_confuses_two_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "PLAN_CACHE_SIZE", 2)
    monkeypatch.setattr(pricing, "_plans", {})
    books = [book(1, 40, 42), book(2, 55, 57), book(3, 10, 12)]
    specs = [spec(leg(1, Side.YES), leg(2, Side.NO)), spec(leg(2, Side.YES), leg(3, Side.NO)),
             spec(leg(3, Side.YES), leg(1, Side.NO), leg(2, Side.NO), payout=2.0)]
    for _ in range(3):
        for s in specs:
            _same(ev(s, books), pricing_reference.evaluate(s, {b.token_id: b for b in books}, min_coverage=0.85,
                                                           max_cost=1.5))
            assert len(pricing._plans) <= 2


def test_the_top_of_book_fee_check_reads_the_first_level_as_the_walk_does() -> None:
    """A taxed NO leg whose first bid level is not its best bid (an inconsistent update): the
    first share-set's fee is the one at the first level, as in the walk."""
    taxed = MarketTerms(fees_enabled=True, fee_rate=0.25)
    s = CoverSpec(CoverKind.TIMEFRAME, (Leg("a", Side.YES, "ya", "na"), Leg("b", Side.NO, "yb", "nb", terms=taxed)),
                  True, 1.0)
    books = {"ya": PriceUpdate("ya", 0.49, 0.50, 10.0, 10.0, 1, 1, 0, False, (0.49, 10.0), (0.50, 10.0)),
             "yb": PriceUpdate("yb", 0.52, 0.60, 10.0, 10.0, 1, 1, 0, False, (0.99, 10.0), (0.60, 10.0))}
    want = pricing_reference.evaluate(s, books, min_coverage=0.0, max_cost=2.0)
    assert want[0] is not None and want[0].curve  # the fee at 0.01 (not at 0.48) leaves a margin: walked
    _same(evaluate(s, books, min_coverage=0.0, max_cost=2.0), want)


@pytest.mark.parametrize("tick", [0.0, -0.01, 0.01])
def test_memoised_numbers_keep_the_sign_of_zero(tick: float) -> None:
    """0.0 and −0.0 are equal dict keys: a memo must not hand one the other's result."""
    for price in (0.0, -0.0, 0.0):
        assert repr(pricing._limit(price, tick)) == repr(pricing_reference.limit_price(price, tick))
    for price in (0.0, -0.0, 1.0, 0.3):
        assert repr(pricing._flip(price)) == repr(round(1.0 - price, 10))


def test_a_cover_without_legs_prices_nothing_and_returns() -> None:
    empty = CoverSpec(CoverKind.ALL_NO, (), True, 1.0, id="empty")
    assert evaluate(empty, {}, min_coverage=0.0, max_cost=2.0) == (None, "no_price")
