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

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    PartitionType,
    PriceUpdate,
    Side,
)

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
