"""Depth-aware pricing (operators/pricing.py, issue 16): equal share counts walked through the
legs' books, net of taker fees, minimum orders, ticks and lock-up — every number below is
computed by hand in the comments, never by the code under test."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.clob.protocol import BookTracker
from connectors.gamma.protocol import parse_event
from operators.pricing import evaluate, fee_per_share, limit_price
from polyalphascan.records import CoverKind, CoverSpec, Leg, MarketTerms, PriceUpdate, Side

FREE = MarketTerms(tick=0.01, min_size=5.0)
FEE5 = MarketTerms(tick=0.01, min_size=5.0, fees_enabled=True, fee_rate=0.05)  # the real economics schedule


def px(token: str, bids: tuple[float, ...] = (), asks: tuple[float, ...] = (), tick: float = 0.0,
       ts: int = 0) -> PriceUpdate:
    return PriceUpdate(token, bids[0] if bids else None, asks[0] if asks else None, bids[1] if bids else None,
                       asks[1] if asks else None, ts, ts, 0, False, bids, asks, tick)


def pair(yes_terms: MarketTerms = FREE, no_terms: MarketTerms = FREE) -> CoverSpec:
    return CoverSpec(CoverKind.TIMEFRAME, (Leg("late", Side.YES, "Y", "y-no", "late?", "e", yes_terms),
                                           Leg("early", Side.NO, "N", "n-no", "early?", "e", no_terms)),
                     guaranteed=True, cover_probability=1.0)


# YES leg asks 0.40×30, 0.42×50, 0.50×100; NO leg from YES bids 0.55×20, 0.53×40, 0.45×100,
# i.e. NO asks 0.45×20, 0.47×40, 0.55×100.
BOOKS = {"Y": px("Y", bids=(0.30, 5.0), asks=(0.40, 30.0, 0.42, 50.0, 0.50, 100.0)),
         "N": px("N", bids=(0.55, 20.0, 0.53, 40.0, 0.45, 100.0), asks=(0.60, 9.0))}


def price(spec: CoverSpec, books: dict[str, PriceUpdate]):  # type: ignore[no-untyped-def]
    q, reason = evaluate(spec, books, min_coverage=0.85, max_cost=1.5)
    assert q is not None, reason
    return q


def test_two_legs_fee_free_walk_vwap_size_curve_and_limits() -> None:
    # segments: 20 @0.85 (+0.15), 10 @0.87 (+0.13), 30 @0.89 (+0.11), 20 @0.97 (+0.03), then 1.05 (−0.05)
    q = price(pair(), BOOKS)
    assert (q.cost, q.profit) == (0.85, 0.15)  # the top of book, as before
    assert q.size_at_profit == 80.0
    assert q.net_profit == pytest.approx(8.2)  # 3.0 + 1.3 + 3.3 + 0.6
    assert q.vwap_cost == pytest.approx(71.8 / 80)  # 17 + 8.7 + 26.7 + 19.4
    assert q.fees == 0.0
    # 10: 1.5; 100: 8.2 − 20·0.05 = 7.2; 1000: the NO book ends at 160 share-sets
    assert q.curve[0] == pytest.approx(1.5) and q.curve[1] == pytest.approx(7.2) and q.curve[2] is None
    yes, no = q.legs
    # YES took 30 @0.40 + 50 @0.42; NO took 20 @0.45 + 40 @0.47 + 20 @0.55
    assert (yes.shares, yes.limit, no.shares, no.limit) == (80.0, 0.42, 80.0, 0.55)
    assert yes.vwap == pytest.approx(33.0 / 80) and no.vwap == pytest.approx(38.8 / 80)
    assert (yes.token_id, yes.side, no.token_id, no.side) == ("Y", Side.YES, "n-no", Side.NO)
    assert (yes.tick, yes.min_size, yes.neg_risk) == (0.01, 5.0, False)


def test_no_leg_vwap_is_one_minus_the_yes_bids_level_by_level() -> None:
    q = price(pair(), BOOKS)
    # the NO leg took 20 @0.45, 40 @0.47, 20 @0.55 (1 − 0.55, 1 − 0.53, 1 − 0.45): the YES asks
    # (a wrong book side) or the bids unflipped would give other numbers
    assert q.legs[1].vwap == pytest.approx((20 * 0.45 + 40 * 0.47 + 20 * 0.55) / 80)
    assert q.legs[0].vwap == pytest.approx((30 * 0.40 + 50 * 0.42) / 80)


def test_a_fee_charging_market_nets_the_taker_fee() -> None:
    # fee per share = 0.05·p(1−p): 0.012 @0.40, 0.012375 @0.45, 0.012455 @0.47, 0.01218 @0.42, 0.012375 @0.55
    assert fee_per_share(FEE5, 0.40) == pytest.approx(0.012)
    q = price(pair(FEE5, FEE5), BOOKS)
    # margins 0.125625×20, 0.105545×10, 0.085365×30, 0.005445×20 → 6.2378; fees 1.9622
    assert q.size_at_profit == 80.0
    assert q.net_profit == pytest.approx(6.2378) and q.fees == pytest.approx(1.9622)
    assert q.legs[0].fee == pytest.approx(20 * 0.012 + 10 * 0.012 + 30 * 0.01218 + 20 * 0.01218)
    assert (q.cost, q.profit) == (0.85, 0.15)  # top of book, gross, unchanged


def test_fees_can_remove_a_thin_top_of_book_edge_while_fee_free_markets_keep_it() -> None:
    books = {"Y": px("Y", asks=(0.49, 50.0, 0.60, 100.0)), "N": px("N", bids=(0.51, 50.0, 0.30, 100.0))}
    free = price(pair(), books)
    assert (free.profit, free.size_at_profit, free.net_profit) == (pytest.approx(0.02), 50.0, pytest.approx(1.0))
    taxed = price(pair(FEE5, FEE5), books)  # 0.98 + 2·0.012495 = 1.00499 per share-set: a loss
    assert taxed.profit == pytest.approx(0.02) and (taxed.size_at_profit, taxed.net_profit) == (0.0, 0.0)
    assert taxed.curve == ()  # the first share-set already loses: the walk stops there


def test_below_the_minimum_order_is_no_opportunity() -> None:
    books = {"Y": px("Y", asks=(0.40, 3.0, 0.60, 100.0)), "N": px("N", bids=(0.55, 100.0))}
    q = price(pair(), books)  # 3 share-sets at +0.15, then 1.05: 3 < 5 shares
    assert q.profit == pytest.approx(0.15) and (q.size_at_profit, q.net_profit) == (0.0, 0.0)
    assert q.legs[0].limit is None
    q = price(pair(MarketTerms(min_size=0.0), MarketTerms(min_size=2.0)), books)
    assert (q.size_at_profit, q.net_profit) == (3.0, pytest.approx(0.45))


def test_many_legs_all_no_basket() -> None:
    legs = tuple(Leg(m, Side.NO, m, f"{m}-no", "", "e", FREE) for m in "ABC")
    spec = CoverSpec(CoverKind.ALL_NO, legs, guaranteed=True, cover_probability=1.0, payout=2.0)
    books = {"A": px("A", bids=(0.30, 10.0, 0.20, 50.0)), "B": px("B", bids=(0.35, 40.0)),
             "C": px("C", bids=(0.40, 25.0, 0.38, 100.0))}
    # NO asks A 0.70×10, 0.80×50; B 0.65×40; C 0.60×25, 0.62×100
    # 10 @1.95 (+0.05), then 15 @2.05 (−0.05), 15 @2.07 (−0.07), then B ends at 40
    q = price(spec, books)
    assert (q.cost, q.payout) == (1.95, 2.0)
    assert (q.size_at_profit, q.net_profit, q.vwap_cost) == (10.0, pytest.approx(0.5), pytest.approx(1.95))
    assert q.curve[0] == pytest.approx(0.5) and q.curve[1:] == (None, None)
    assert [lq.limit for lq in q.legs] == [0.7, 0.65, 0.6]


def test_a_tick_change_moves_the_limit_rounding() -> None:
    # NO leg from a YES bid of 0.695: NO pays 0.305; a 0.01 tick rounds the limit up to 0.31
    books = {"Y": px("Y", asks=(0.60, 10.0)), "N": px("N", bids=(0.695, 10.0))}
    assert price(pair(), books).legs[1].limit == 0.31
    books["N"] = px("N", bids=(0.695, 10.0), tick=0.001)  # the live tick_size_change wins over Gamma's
    q = price(pair(), books)
    assert (q.legs[1].limit, q.legs[1].tick) == (0.305, 0.001)
    assert limit_price(0.42, 0.01) == 0.42 and limit_price(0.421, 0.01) == 0.43


def test_lock_up_payout_date_and_annualised_return() -> None:
    late = MarketTerms(min_size=5.0, end_date="2026-12-31T12:00:00Z")
    early = MarketTerms(min_size=5.0, end_date="2026-06-30T00:00:00Z")
    now = 1793404800000  # 2026-10-31T00:00:00Z: 61 days to 2026-12-31
    books = {k: v._replace(exchange_ts_ms=now) for k, v in BOOKS.items()}
    q = price(pair(late, early), books)
    assert q.payout_date == "2026-12-31"
    assert q.annualised == pytest.approx(8.2 / 71.8 * 365 / 61)
    assert price(pair(late, FREE), books).annualised is None  # a leg without a date: unknown


def test_a_real_order_book_with_a_real_fee_schedule() -> None:
    """The real `book` frame (tests/fixtures/clob_real) and the real World Cup market terms
    (tests/fixtures/gamma_real, fee rate 0.03): YES + NO of one market pays exactly 1.
    YES asks 0.009×25, 0.999×50; NO asks 1 − bids: 0.996×100, 0.999×2200.8."""
    frames = orjson.loads((Path(__file__).parent / "fixtures/clob_real/market_channel_frames.json").read_bytes())
    tok = "63691357964355397861776339416833450653158434687925250159757815624217137833471"
    t = BookTracker()
    t.subscribed = {tok}
    (u,) = t.handle(frames["book"], 1786728432400)
    wc = next(e for e in orjson.loads((Path(__file__).parent / "fixtures/gamma_real/polyarb_world_cup_winner.json")
                                      .read_bytes()))
    terms = parse_event(wc).markets[0].terms
    legs = (Leg("m", Side.YES, tok, "no", "", "e", terms), Leg("m", Side.NO, tok, "no", "", "e", terms))
    spec = CoverSpec(CoverKind.ALL_YES, legs, guaranteed=True, cover_probability=1.0)
    q = price(spec, {tok: u})
    assert q.cost == pytest.approx(1.005) and (q.size_at_profit, q.net_profit) == (0.0, 0.0)
    assert q.curve == () and q.fees == 0.0 and q.legs[0].limit is None  # loses from the first share-set
    assert (q.legs[0].tick, q.legs[0].min_size, q.legs[0].neg_risk) == (0.001, 5.0, True)


# ----------------------------------------------------------------------------- the small pure functions, at their edges
def test_fee_per_share_at_its_edges() -> None:
    from operators.pricing import fee_per_share as fee
    assert fee(MarketTerms(fee_rate=0.0), 0.5) == 0.0 and fee(MarketTerms(fee_rate=-0.1), 0.5) == 0.0
    assert fee(FEE5, 0.0) == 0.0 and fee(FEE5, 1.0) == 0.0 and fee(FEE5, 1.5) == 0.0  # no fee outside (0, 1)
    assert fee(FEE5, 0.5) == 0.05 * 0.25 and fee(FEE5, 1e-9) > 0.0
    assert fee(MarketTerms(fee_rate=0.1, fee_exponent=2.0), 0.5) == 0.1 * 0.25 ** 2


def test_limit_price_at_its_edges() -> None:
    assert limit_price(0.995, 0.01) == 1.0  # never above 1
    assert limit_price(1.3, 0.01) == 1.0
    assert limit_price(0.42, 0.01) == 0.42 and limit_price(0.421, 0.01) == 0.43
    assert limit_price(0.3000000001, 0.01) == 0.3  # a float a hair above the grid is on it (6 decimals)
    assert limit_price(0.30001, 0.01) == 0.31
    assert limit_price(0.4237, 0.0) == 0.4237  # no tick: the price itself
    assert limit_price(0.1 + 0.2, 0.1) == 0.3  # 0.30000000000000004 -> 0.3, not 0.30000000000000004
    assert repr(limit_price(0.123456, 0.0001)) == "0.1235"


def test_annualise_at_its_edges() -> None:
    from operators.pricing import annualise
    day_ms = 86_400_000
    now = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    assert annualise(1.0, 10.0, "2026-12-31", now) == pytest.approx(0.1 * 365 / 364)
    assert annualise(1.0, 10.0, "2026-01-01", now) == pytest.approx(0.1 * 365)  # today: one day at least
    assert annualise(1.0, 10.0, "2026-01-02", now) == pytest.approx(0.1 * 365)
    assert annualise(1.0, 10.0, "2026-01-03", now) == pytest.approx(0.1 * 365 / 2)
    assert annualise(1.0, 10.0, "2026-01-03", now + day_ms - 1) == pytest.approx(0.1 * 365 / 2)  # the UTC day counts
    assert annualise(1.0, 10.0, "2026-01-03", now + day_ms) == pytest.approx(0.1 * 365)
    assert annualise(1.0, 0.0, "2026-12-31", now) is None and annualise(1.0, -1.0, "2026-12-31", now) is None
    assert annualise(1.0, 10.0, "2026-12-31", 0) is None and annualise(1.0, 10.0, None, now) is None
    assert annualise(1.0, 10.0, "2026-12-31", 1) is not None
    assert annualise(1.0, 10.0, "not a date", now) is None


def test_tier_bounds_take_the_bound_itself() -> None:
    from operators.pricing import EPS, tier_of
    assert [tier_of(c) for c in (1.0, 0.95, 0.95 - EPS, 0.9, 0.85, 0.85 - 2 * EPS)] == [1, 1, 1, 2, 3, 4]


def test_a_taxed_leg_pays_its_top_fee_at_the_first_level_of_its_own_side() -> None:
    """A taxed YES leg whose first ask level is not the announced best ask (an inconsistent
    update): the early exit charges the fee at the level the walk would take, as the walk does."""
    rich = MarketTerms(tick=0.01, fees_enabled=True, fee_rate=0.25)
    spec = CoverSpec(CoverKind.TIMEFRAME, (Leg("a", Side.YES, "ya", "na", terms=rich),
                                           Leg("b", Side.NO, "yb", "nb", terms=FREE)), True, 1.0)
    # announced ask 0.40, first level 0.02: the fee at 0.02 is tiny, at 0.40 it would eat the edge
    books = {"ya": PriceUpdate("ya", 0.01, 0.40, 10.0, 10.0, 1, 1, 0, False, (0.01, 10.0), (0.02, 10.0)),
             "yb": PriceUpdate("yb", 0.45, 0.47, 10.0, 10.0, 1, 1, 0, False, (0.45, 10.0), (0.47, 10.0))}
    quote, _ = evaluate(spec, books, min_coverage=0.0, max_cost=2.0)
    assert quote is not None and quote.size_at_profit > 0 and quote.curve  # walked: profitable net of fees
