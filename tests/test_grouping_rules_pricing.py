"""Unit tests of grouping, rule covers, pair expansion and pricing on hand-made events."""

from __future__ import annotations

import pytest

from operators.grouping import group_event
from operators.pairs import expand_implication
from operators.pricing import evaluate, price_cover, quote_changed, tier_of
from operators.rule_covers import rule_covers
from polyalphascan.records import (
    CoverKind,
    Event,
    GroupImplication,
    Market,
    PartitionType,
    PriceUpdate,
    Side,
)


def mk(i: int, label: str, question: str = "", end: str | None = "2026-12-31T12:00:00Z", desc: str = "",
       closed: bool = False) -> Market:
    return Market(id=str(i), event_id="e", question=question or f"Will X happen by {label}?", slug=f"m{i}", condition_id=f"0x{i}",
                  yes_token=f"y{i}", no_token=f"n{i}", group_item_title=label, description=desc, end_date=end,
                  closed=closed)


def ev(markets: list[Market], title: str = "Event", neg_risk: bool = False, end: str | None = "2026-12-31T12:00:00Z",
       eid: str = "1") -> Event:
    return Event(id=eid, slug="e", title=title, end_date=end, neg_risk=neg_risk, markets=tuple(markets))


def ids(specs):  # (kind, ((market, side), ...)) in leg order
    return sorted((s.kind.value, tuple((leg.market_id, leg.side.value) for leg in s.legs)) for s in specs)


def test_timeframe_ladder_gives_every_earlier_later_pair() -> None:
    g = group_event(ev([mk(1, "March 31, 2026"), mk(2, "June 30, 2026"), mk(3, "December 31, 2026")]))
    assert g.partition_type is PartitionType.TIMEFRAME and not g.mutually_exclusive
    assert ids(rule_covers(g)) == [
        ("timeframe", (("2", "YES"), ("1", "NO"))),
        ("timeframe", (("3", "YES"), ("1", "NO"))),
        ("timeframe", (("3", "YES"), ("2", "NO"))),
    ]
    assert all(s.guaranteed and s.cover_probability == 1.0 for s in rule_covers(g))


def test_equal_dates_give_no_cover_and_closed_markets_are_left_out() -> None:
    g = group_event(ev([mk(1, "June 30, 2026"), mk(2, "June 30, 2026"), mk(3, "Q4 2026", closed=True)]))
    assert g.partition_type is PartitionType.TIMEFRAME
    assert rule_covers(g) == []
    assert [m.market_id for m in g.markets] == ["1", "2"]


def test_threshold_ladders_above_and_below() -> None:
    up = group_event(ev([mk(1, "$100k", "Will BTC be above $100k?"), mk(2, "$120k", "Will BTC be above $120k?")]))
    assert up.partition_type is PartitionType.THRESHOLD and not up.mutually_exclusive
    assert ids(rule_covers(up)) == [("threshold", (("1", "YES"), ("2", "NO")))]
    down = group_event(ev([mk(1, "↓ 50"), mk(2, "↓ 40")], title="How low will X dip?"))
    assert ids(rule_covers(down)) == [("threshold", (("1", "YES"), ("2", "NO")))]  # below 40 ⇒ below 50


def test_mixed_arrow_ladders_pair_only_within_a_direction() -> None:
    g = group_event(ev([mk(1, "↑ 120k"), mk(2, "↑ 130k"), mk(3, "↓ 80k"), mk(4, "↓ 70k")],
                       title="What price will Bitcoin hit in November?"))
    assert g.partition_type is PartitionType.THRESHOLD
    assert [m.direction for m in g.markets] == ["above", "above", "below", "below"]
    # reach 130k ⇒ reach 120k; dip to 70k ⇒ dip to 80k; nothing between a "reach" and a "dip" bar
    assert ids(rule_covers(g)) == [("threshold", (("1", "YES"), ("2", "NO"))),
                                   ("threshold", (("3", "YES"), ("4", "NO")))]


def test_range_buckets_are_exclusive_outcomes_not_a_ladder() -> None:
    buckets = [mk(1, "<200"), mk(2, "200-219"), mk(3, "220–239"), mk(4, "240+")]
    g = group_event(ev(buckets, title="How many posts will X make this week?", neg_risk=True))
    assert g.partition_type is PartitionType.CANDIDATE and g.mutually_exclusive
    assert all(m.threshold is None and m.direction is None for m in g.markets)
    assert sorted(s.kind for s in rule_covers(g)) == sorted([CoverKind.ALL_NO, CoverKind.ALL_YES])
    # a plain ladder of bars is still a ladder
    assert group_event(ev([mk(1, "200+"), mk(2, "240+")])).partition_type is PartitionType.THRESHOLD


def test_candidates_placeholders_and_baskets() -> None:
    names = [mk(1, "Alice"), mk(2, "Bob"), mk(3, "Other")]
    g = group_event(ev(names, neg_risk=True))
    assert g.partition_type is PartitionType.CANDIDATE and g.mutually_exclusive
    covers = {s.kind: s for s in rule_covers(g)}
    assert covers[CoverKind.ALL_NO].payout == 2.0 and len(covers[CoverKind.ALL_NO].legs) == 3
    assert covers[CoverKind.ALL_YES].payout == 1.0
    with_placeholder = group_event(ev(names + [mk(4, "Person A")], neg_risk=True))
    assert with_placeholder.placeholders_dropped == 1 and len(with_placeholder.markets) == 3
    assert [s.kind for s in rule_covers(with_placeholder)] == [CoverKind.ALL_NO]  # not exhaustive any more


def test_single_and_non_exclusive_candidates_give_no_rule_cover() -> None:
    assert group_event(ev([mk(1, "")])).partition_type is PartitionType.SINGLE
    assert rule_covers(group_event(ev([mk(1, "")]))) == []
    g = group_event(ev([mk(1, "Alice", end="2026-01-01T00:00:00Z"), mk(2, "Bob", end="2027-01-01T00:00:00Z")]))
    assert g.partition_type is PartitionType.CANDIDATE and not g.mutually_exclusive and rule_covers(g) == []
    assert group_event(ev([mk(1, "x", closed=True)])) is None


def test_expansion_shapes() -> None:
    pres = group_event(ev([mk(1, "Alice"), mk(2, "Bob")], neg_risk=True, eid="10"))
    nom = group_event(ev([mk(3, "Bob"), mk(4, "Carol")], neg_risk=True, eid="11"))
    imp = GroupImplication("10", "11", "implied_by", "11")
    assert ids(expand_implication(imp, pres, nom, 0.98)) == [("llm", (("3", "YES"), ("2", "NO")))]
    early = group_event(ev([mk(5, "March 31, 2026"), mk(6, "June 30, 2026")], eid="12"))
    late = group_event(ev([mk(7, "April 30, 2026")], eid="13"))
    late_ladder = group_event(ev([mk(7, "April 30, 2026"), mk(8, "May 31, 2026")], eid="13"))
    got = ids(expand_implication(GroupImplication("12", "13", "implies", "12"), early, late_ladder, 0.9))
    assert got == [("llm", (("7", "YES"), ("5", "NO"))), ("llm", (("8", "YES"), ("5", "NO")))]
    # exclusive premise with unmatched labels: no NO legs on it (the seed's rule)
    assert expand_implication(GroupImplication("10", "13", "implies", "10"), pres, late, 0.9) == []
    s = expand_implication(imp, pres, nom, 0.98)[0]
    assert not s.guaranteed and s.cover_probability == 0.98


def px(token: str, bid: float | None, ask: float | None, bs: float = 10, as_: float = 20, ts: int = 5) -> PriceUpdate:
    return PriceUpdate(token, bid, ask, bs, as_, ts, ts)


def test_pricing_numbers_for_a_guaranteed_pair() -> None:
    g = group_event(ev([mk(1, "March 31, 2026"), mk(2, "June 30, 2026")]))
    spec = rule_covers(g)[0]  # YES June (2) + NO March (1)
    q = price_cover(spec, {"y2": px("y2", 0.50, 0.52, as_=30), "y1": px("y1", 0.55, 0.57, bs=12, ts=9)},
                    min_coverage=0.85, max_cost=1.5)
    # NO March ask = 1 - 0.55 = 0.45 (size 12); cost = 0.52 + 0.45 = 0.97
    assert q.cost == pytest.approx(0.97) and q.profit == pytest.approx(0.03)
    assert q.profit_pct == pytest.approx(0.03 / 0.97 * 100)
    assert (q.coverage, q.loss_probability, q.tier) == (1.0, 0.0, 1)
    assert q.expected_profit == pytest.approx(0.03) and q.size_at_profit == 12 and q.updated_ms == 9
    assert [(lq.side, lq.ask) for lq in q.legs] == [(Side.YES, 0.52), (Side.NO, pytest.approx(0.45))]


def test_pricing_llm_pair_coverage_tiers_and_filters() -> None:
    a = group_event(ev([mk(1, "")], eid="20"))
    b = group_event(ev([mk(2, "")], eid="21"))
    spec = expand_implication(GroupImplication("20", "21", "implied_by", "21"), a, b, 0.8)[0]  # YES 2 + NO 1
    quotes = {"y2": px("y2", 0.28, 0.30), "y1": px("y1", 0.35, 0.40)}
    q = price_cover(spec, quotes, min_coverage=0.0, max_cost=1.5)
    p_t = 0.30
    assert q.coverage == pytest.approx(p_t + (1 - p_t) * 0.8)  # 0.86 → tier 3
    assert q.loss_probability == pytest.approx((1 - p_t) * 0.2) and q.tier == 3
    assert q.cost == pytest.approx(0.95) and q.profit == pytest.approx(0.05)
    assert q.expected_profit == pytest.approx(q.coverage - 0.95) and q.size_at_profit == 10  # min(20, bid size 10)
    assert evaluate(spec, quotes, min_coverage=0.9, max_cost=1.5) == (None, "low_coverage")
    assert evaluate(spec, quotes, min_coverage=0.0, max_cost=0.9) == (None, "too_expensive")
    assert evaluate(spec, {"y2": quotes["y2"]}, min_coverage=0.0, max_cost=2) == (None, "no_price")
    assert evaluate(spec, {**quotes, "y1": px("y1", None, 0.4)}, min_coverage=0.0, max_cost=2) == (None, "no_price")
    assert [tier_of(x) for x in (0.95, 0.9499, 0.90, 0.85, 0.8499)] == [1, 2, 2, 3, 4]


def test_basket_max_cost_is_per_dollar_of_payout_and_changes_are_detected() -> None:
    g = group_event(ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Carol")], neg_risk=True))
    all_no = next(s for s in rule_covers(g) if s.kind is CoverKind.ALL_NO)
    quotes = {f"y{i}": px(f"y{i}", 0.30, 0.33) for i in (1, 2, 3)}
    q = price_cover(all_no, quotes, min_coverage=0.85, max_cost=1.5)
    assert q.cost == pytest.approx(2.1) and q.payout == 2.0 and q.profit == pytest.approx(-0.1)
    assert price_cover(all_no, quotes, min_coverage=0.85, max_cost=1.0) is None  # 1.05 per $ of payout
    moved = price_cover(all_no, {**quotes, "y1": px("y1", 0.40, 0.43, ts=99)}, min_coverage=0.85, max_cost=1.5)
    same_later = price_cover(all_no, {**quotes, "y1": px("y1", 0.30, 0.33, ts=99)}, min_coverage=0.85, max_cost=1.5)
    assert quote_changed(q, moved) and not quote_changed(q, same_later)
