"""Grouping and rule covers on hand-made events shaped like the real venue's: each test is one
way a "guaranteed" cover was false on real Gamma records (or one way it must still be found)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.grouping import event_group, group_event
from operators.labels import date_with_year, direction_of, label_date, parse_threshold
from operators.rule_covers import rule_covers
from polyalphascan.records import CoverKind, Event, Market, PartitionType


def mk(i: int, label: str, question: str = "", *, end: str | None = "2026-12-31T12:00:00Z", desc: str = "",
       active: bool = True, closed: bool = False, yes_price: float | None = None, neg_risk: bool | None = None,
       nr_id: str = "", other: bool = False) -> Market:
    return Market(id=str(i), event_id="e", question=question or f"Will {label} win?", slug=f"m{i}",
                  condition_id=f"0x{i}", yes_token=f"y{i}", no_token=f"n{i}", group_item_title=label,
                  description=desc, end_date=end, active=active, closed=closed, yes_price=yes_price,
                  neg_risk=bool(neg_risk), neg_risk_market_id=nr_id, neg_risk_other=other)


def ev(markets: list[Market], title: str = "Event", *, neg_risk: bool = False, augmented: bool = False,
       end: str | None = "2026-12-31T12:00:00Z") -> Event:
    if neg_risk:
        markets = [Market(**{**{f: getattr(m, f) for f in Market.__slots__}, "neg_risk": True}) for m in markets]
    return Event(id="1", slug="e", title=title, end_date=end, neg_risk=neg_risk, neg_risk_augmented=augmented,
                 markets=tuple(markets))


def covers(event: Event) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    g = group_event(event)
    assert g is not None
    return sorted((s.kind.value, tuple((leg.market_id, leg.side.value) for leg in s.legs)) for s in rule_covers(g))


def kinds(event: Event) -> list[str]:
    return sorted({k for k, _ in covers(event)})


NAMES = ["Alice", "Bob", "Carol"]


# ---------------------------------------------------------------- exclusivity and exhaustiveness
def test_a_neg_risk_event_with_every_outcome_listed_gives_both_baskets() -> None:
    e = ev([mk(i, n) for i, n in enumerate(NAMES, 1)], neg_risk=True)
    assert covers(e) == [("all_no", (("1", "NO"), ("2", "NO"), ("3", "NO"))),
                         ("all_yes", (("1", "YES"), ("2", "YES"), ("3", "YES")))]
    specs = {s.kind: s for s in rule_covers(group_event(e))}
    assert specs[CoverKind.ALL_NO].payout == 2.0 and specs[CoverKind.ALL_YES].payout == 1.0
    assert all(s.guaranteed and s.cover_probability == 1.0 for s in specs.values())


def test_augmented_event_with_inactive_placeholders_is_not_exhaustive() -> None:
    # the real shape: "Person K" / "Party A" slots listed with active=false
    markets = [mk(i, n) for i, n in enumerate(NAMES, 1)] + [mk(4, "Person K", active=False),
                                                           mk(5, "Party A", active=False)]
    e = ev(markets, neg_risk=True, augmented=True)
    assert covers(e) == [("all_no", (("1", "NO"), ("2", "NO"), ("3", "NO")))]
    all_no = rule_covers(group_event(e))[0]
    assert "negRiskAugmented=true" in all_no.explanation and "rule all_no" in all_no.explanation


def test_augmentation_alone_forbids_the_yes_basket() -> None:
    e = ev([mk(i, n) for i, n in enumerate(NAMES, 1)] + [mk(4, "Other", other=True)], neg_risk=True, augmented=True)
    assert kinds(e) == ["all_no"]
    assert len(covers(e)[0][1]) == 4  # the tradeable Other is one of the exclusive outcomes


def test_inactive_placeholder_alone_forbids_the_yes_basket() -> None:
    for slot in ("Person K", "Party A", "Candidate B", "Team C", "Player 2"):
        e = ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, slot, active=False)], neg_risk=True)
        assert kinds(e) == ["all_no"], slot
        assert group_event(e).placeholders_dropped == 1


def test_an_explicit_tradeable_other_keeps_a_plain_neg_risk_event_exhaustive() -> None:
    e = ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Other")], neg_risk=True)
    assert covers(e)[1] == ("all_yes", (("1", "YES"), ("2", "YES"), ("3", "YES")))


def test_an_inactive_named_outcome_forbids_the_yes_basket() -> None:
    e = ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Carol", active=False)], neg_risk=True)
    assert covers(e) == [("all_no", (("1", "NO"), ("2", "NO")))]


def test_closed_outcomes_keep_exhaustiveness_only_when_they_resolved_no() -> None:
    base = [mk(1, "Alice"), mk(2, "Bob"), mk(3, "Carol")]
    lost = ev(base + [mk(4, "Dan", closed=True, yes_price=0.0)], neg_risk=True)
    assert kinds(lost) == ["all_no", "all_yes"]
    won = ev(base + [mk(4, "Dan", closed=True, yes_price=1.0)], neg_risk=True)
    unknown = ev(base + [mk(4, "Dan", closed=True, yes_price=None)], neg_risk=True)
    assert kinds(won) == ["all_no"] and kinds(unknown) == ["all_no"]
    slot = ev(base + [mk(4, "Person D", closed=True, yes_price=0.0)], neg_risk=True)
    assert kinds(slot) == ["all_no"]  # a placeholder, even resolved, says the outcomes were open-ended


def test_shared_end_dates_do_not_make_a_plain_event_exclusive() -> None:
    # top-4 finishers, relegated teams, "which countries will…": any subset can be YES
    teams = [mk(i, t, f"Will {t} finish in the top 4?") for i, t in enumerate(["Arsenal", "Chelsea", "Spurs"], 1)]
    g = group_event(ev(teams, title="Premier League Top 4 Finish"))
    assert g.partition_type is PartitionType.CANDIDATE and not g.mutually_exclusive and rule_covers(g) == []


def test_neg_risk_markets_of_two_neg_risk_groups_are_not_exclusive() -> None:
    ms = [mk(1, "Alice", neg_risk=True, nr_id="0xa"), mk(2, "Bob", neg_risk=True, nr_id="0xb")]
    assert rule_covers(group_event(ev(ms))) == []
    same = [mk(1, "Alice", neg_risk=True, nr_id="0xa"), mk(2, "Bob", neg_risk=True, nr_id="0xa")]
    assert kinds(ev(same)) == ["all_no", "all_yes"]


# ---------------------------------------------------------------- buckets
def test_exact_count_buckets_of_a_neg_risk_event_are_exclusive_not_a_ladder() -> None:
    labels = [str(n) for n in range(2, 10)]
    e = ev([mk(i, lab, f"Will there be {lab} cuts in 2026?") for i, lab in enumerate(labels, 1)],
           title="How many Fed rate cuts in 2026?", neg_risk=True)
    g = group_event(e)
    assert g.partition_type is PartitionType.CANDIDATE and g.mutually_exclusive
    assert kinds(e) == ["all_no", "all_yes"]
    assert all(m.threshold is None and not m.cumulative for m in g.markets)


def test_count_labels_without_neg_risk_or_direction_give_nothing() -> None:
    e = ev([mk(i, lab, f"Will there be {lab} cuts in 2026?") for i, lab in enumerate(["2", "3", "4"], 1)],
           title="How many Fed rate cuts in 2026?")
    assert covers(e) == []


def test_open_ended_buckets() -> None:
    labels = ["<60M", "60M-80M", "80M-110M", "110M+"]
    qs = [f"Will the film gross {lab} on its opening weekend?" for lab in labels]
    plain = ev([mk(i, lab, q) for i, (lab, q) in enumerate(zip(labels, qs), 1)], title="Opening weekend box office?")
    assert covers(plain) == []  # buckets, and not neg-risk: nothing proven
    neg = ev([mk(i, lab, q) for i, (lab, q) in enumerate(zip(labels, qs), 1)], neg_risk=True)
    assert kinds(neg) == ["all_no", "all_yes"]
    # the two open ends alone are no ladder: "<60M" is below, "110M+" above
    ends = ev([mk(1, "<60M", qs[0]), mk(2, "110M+", qs[3])], title="Opening weekend box office?")
    assert [m.direction for m in group_event(ends).markets] == ["below", "above"]
    assert covers(ends) == []


def test_or_more_labels_form_an_above_ladder() -> None:
    e = ev([mk(1, "5+", "Will X score 5 or more goals?"), mk(2, "10 or more", "Will X score 10 or more goals?")],
           title="How many goals will X score?")
    assert covers(e) == [("threshold", (("1", "YES"), ("2", "NO")))]  # 10+ ⇒ 5+


# ---------------------------------------------------------------- threshold ladders
def test_above_ladder_on_one_date() -> None:
    e = ev([mk(1, "$100k", "Will BTC be above $100k on Dec 31?"), mk(2, "$120k", "Will BTC be above $120k on Dec 31?")],
           title="Bitcoin above ___ on December 31?")
    assert covers(e) == [("threshold", (("1", "YES"), ("2", "NO")))]
    spec = rule_covers(group_event(e))[0]
    assert "rule threshold" in spec.explanation and "negRisk=false" in spec.explanation and "above" in spec.explanation


def test_below_ladder_mirrors() -> None:
    e = ev([mk(1, "↓ 50", "Will X dip to 50?"), mk(2, "↓ 40", "Will X dip to 40?")], title="How low will X go?")
    assert covers(e) == [("threshold", (("1", "YES"), ("2", "NO")))]  # dip to 40 ⇒ dip to 50


def test_hit_ladders_pair_only_within_a_direction() -> None:
    e = ev([mk(1, "↑ 120,000", "Will Bitcoin reach $120,000 in November?"),
            mk(2, "↑ 130,000", "Will Bitcoin reach $130,000 in November?"),
            mk(3, "↓ 80,000", "Will Bitcoin dip to $80,000 in November?"),
            mk(4, "↓ 70,000", "Will Bitcoin dip to $70,000 in November?")], title="What price will Bitcoin hit in November?")
    assert covers(e) == [("threshold", (("1", "YES"), ("2", "NO"))), ("threshold", (("3", "YES"), ("4", "NO")))]


def test_a_bar_without_a_stated_direction_is_no_rung() -> None:
    # "hit" says no direction: a price hits a bar from either side
    e = ev([mk(1, "$80k", "Will Bitcoin hit $80k?"), mk(2, "$120k", "Will Bitcoin hit $120k?")],
           title="What price will Bitcoin hit?")
    assert covers(e) == []


def test_bars_on_different_dates_are_not_paired() -> None:
    e = ev([mk(1, "$100k", "Will BTC be above $100k?", end="2026-06-30T00:00:00Z"),
            mk(2, "$120k", "Will BTC be above $120k?", end="2026-12-31T00:00:00Z")])
    assert covers(e) == []


# ---------------------------------------------------------------- date ladders
def test_date_ladder_with_real_label_forms() -> None:
    e = ev([mk(1, "June 30, 2025", "Will X happen by June 30, 2025?"),
            mk(2, "End of 2025", "Will X happen by end of 2025?"),
            mk(3, "Before 2027", "Will X happen before 2027?")], title="X by...?")
    dates = [m.resolution_date for m in group_event(e).markets]
    assert dates == ["2025-06-30", "2025-12-31", "2026-12-31"]
    assert covers(e) == [("timeframe", (("2", "YES"), ("1", "NO"))), ("timeframe", (("3", "YES"), ("1", "NO"))),
                         ("timeframe", (("3", "YES"), ("2", "NO")))]


def test_the_label_date_wins_over_a_date_in_the_description() -> None:
    e = ev([mk(1, "March 31, 2026", "Will X happen by March 31, 2026?", desc="resolves by December 31, 2026"),
            mk(2, "June 30, 2026", "Will X happen by June 30, 2026?")])
    assert covers(e) == [("timeframe", (("2", "YES"), ("1", "NO")))]


def test_a_label_year_comes_from_the_question_not_the_end_date() -> None:
    e = ev([mk(1, "December 31", "Will X happen by December 31, 2026?", end="2027-03-31T00:00:00Z"),
            mk(2, "March 31", "Will X happen by March 31, 2027?", end="2027-03-31T00:00:00Z")],
           end="2027-03-31T00:00:00Z")
    assert [m.resolution_date for m in group_event(e).markets] == ["2026-12-31", "2027-03-31"]
    assert covers(e) == [("timeframe", (("2", "YES"), ("1", "NO")))]


def test_a_year_that_would_fall_after_the_event_end_is_not_guessed() -> None:
    e = ev([mk(1, "December 31", "Will X happen by December 31?", end="2027-03-31T00:00:00Z"),
            mk(2, "March 31", "Will X happen by March 31?", end="2027-03-31T00:00:00Z")], end="2027-03-31T00:00:00Z")
    g = group_event(e)
    assert [m.cumulative for m in g.markets] == [False, True]
    assert rule_covers(g) == []


def test_market_end_dates_never_order_a_ladder() -> None:
    # labels that are no dates, end dates that differ: no ladder
    e = ev([mk(1, "Soon", "Will X happen soon?", end="2026-03-31T00:00:00Z"),
            mk(2, "Later", "Will X happen later?", end="2026-06-30T00:00:00Z")])
    assert covers(e) == []


def test_date_windows_are_not_a_ladder() -> None:
    weeks = ev([mk(1, "Week of March 9", "Will X happen in the week of March 9?"),
                mk(2, "Week of March 16", "Will X happen in the week of March 16?")], title="When will X happen?")
    assert covers(weeks) == []
    months = ev([mk(1, "March 2026", "Will X happen in March 2026?"), mk(2, "April 2026", "Will X happen in April 2026?")],
                title="Which month will X happen?")
    assert covers(months) == []
    # the same months as deadlines are a ladder
    by = ev([mk(1, "March 2026", "Will X happen by March 31, 2026?"), mk(2, "April 2026", "Will X happen by April 30, 2026?")])
    assert covers(by) == [("timeframe", (("2", "YES"), ("1", "NO")))]


def test_neg_risk_date_outcomes_are_buckets() -> None:
    e = ev([mk(1, "March", "Will X happen in March?"), mk(2, "April", "Will X happen in April?"),
            mk(3, "Not before May", "Will X not happen before May?")], neg_risk=True, title="When will X happen?")
    assert kinds(e) == ["all_no", "all_yes"]


def test_timeframe_explanation_names_the_dates_and_where_they_were_read() -> None:
    e = ev([mk(1, "March 31", "Will X happen by March 31, 2026?"), mk(2, "June 30", "Will X happen by June 30, 2026?")])
    spec = rule_covers(group_event(e))[0]
    assert "2026-03-31" in spec.explanation and "2026-06-30" in spec.explanation
    assert "year from the question" in spec.explanation and "negRisk=false" in spec.explanation


# ---------------------------------------------------------------- shapes and robustness
def test_single_and_empty() -> None:
    assert group_event(ev([mk(1, "", "Will X happen?")])).partition_type is PartitionType.SINGLE
    assert group_event(ev([mk(1, "x", closed=True)])) is None
    assert group_event(ev([mk(1, "Person A"), mk(2, "Person B")], neg_risk=True)) is None
    empty = event_group(ev([mk(1, "x", closed=True)]))
    assert empty.markets == () and rule_covers(empty) == []


def test_label_date_bounds_and_before_forms() -> None:
    def d(label: str) -> str | None:
        ld = label_date(label)
        return ld.value.isoformat() if ld is not None and ld.value is not None else None

    assert [d(x) for x in ("2000", "2099", "1999", "2100")] == ["2000-12-31", "2099-12-31", None, None]
    assert [d(x) for x in ("January 1, 2000", "December 31, 2100", "December 31, 1999", "January 1, 2101")] == \
        ["2000-01-01", "2100-12-31", None, None]
    assert d("2027") == "2027-12-31" and d("Q1 2026") == "2026-03-31" and d("March 2026") == "2026-03-31"
    assert d("Before March 1, 2026") == "2026-02-28" and d("Before 2000") is None
    assert d("by end of March 2026") == "2026-03-31" and d("before January 2026") == "2025-12-31"
    first, last, before = label_date("March 1"), label_date("March 31st"), label_date("Before June 30")
    assert (first.needs_year, first.month, first.day, first.before) == (True, 3, 1, False)
    assert (last.month, last.day) == (3, 31) and label_date("March 32") is None and label_date("March 0") is None
    assert before.before and date_with_year(before, 2026).isoformat() == "2026-06-29"
    assert date_with_year(first, 2026).isoformat() == "2026-03-01" and date_with_year(label_date("June 31"), 2026) is None


def test_label_readers() -> None:
    assert label_date("Q1 0000").value is None and label_date("Week of March 9") is None
    assert label_date("by end of 2025").value.isoformat() == "2025-12-31"
    assert label_date("before March 2026").value.isoformat() == "2026-02-28"
    assert parse_threshold("$1.2M") == 1.2e6 and parse_threshold("↑ 120,000") == 120_000
    assert parse_threshold("200-219") is None and parse_threshold("Alice") is None
    assert parse_threshold("$" + "9" * 400) is None and parse_threshold("1.5bn") == 1.5e9
    assert [direction_of(x) for x in ("110M+", "<60M", "10 or more", "fewer than 3", "exactly 5", "hit $80k")] == \
        ["above", "below", "above", "below", None, None]


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["Q1 0000", "June 31", "February 30, 2026", "Before 0001", "9999", "end of 99999", "<>", "+", "1e400",
     "↑ ↓ 5", "Person ", "by 2026-13-45", "$" + "9" * 400])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_text, _text, st.booleans(), st.booleans()), min_size=1, max_size=5), _text,
       st.booleans(), st.booleans(), st.sampled_from([None, "2026-12-31T00:00:00Z", "0000-00-00", "x"]))
def test_grouping_never_raises_on_any_text(rows, title, neg_risk, augmented, end) -> None:  # type: ignore[no-untyped-def]
    markets = [mk(i, label, question or "q", active=active, closed=closed, end=end)
               for i, (label, question, active, closed) in enumerate(rows)]
    g = event_group(ev(markets, title or "t", neg_risk=neg_risk, augmented=augmented, end=end))
    for spec in rule_covers(g):
        assert spec.guaranteed and len(spec.legs) >= 2
        if spec.kind is CoverKind.ALL_YES:
            assert neg_risk and not augmented


# ---------------------------------------------------------------- the proof each cover states
def test_explanations_state_the_rule_the_facts_and_the_numbers() -> None:
    g = group_event(ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Carol")], neg_risk=True))
    all_no, all_yes = sorted(rule_covers(g), key=lambda s: s.kind.value)
    assert all_no.explanation == ("rule all_no (negRisk=true, negRiskAugmented=false; exhaustive: every outcome "
                                  "listed and open): at most one of the 3 outcomes ['Alice', 'Bob', 'Carol'] "
                                  "resolves YES, so their NOs pay at least 2")
    assert all_yes.explanation.startswith("rule all_yes (negRisk=true") and \
        all_yes.explanation.endswith("exactly one of the 3 outcomes ['Alice', 'Bob', 'Carol'] resolves YES")
    below = group_event(ev([mk(1, "↓ 50", "Will X dip to 50?"), mk(2, "↓ 40", "Will X dip to 40?")]))
    (spec,) = rule_covers(below)
    assert spec.explanation == ("rule threshold (negRisk=false, negRiskAugmented=false): below ↓ 40 [below (label)] "
                                "implies below ↓ 50 [below (label)] on 2026-12-31")
    assert all(s.payout == 1.0 for s in (spec, all_yes)) and all_no.payout == 2.0


def test_an_equal_bar_does_not_hide_the_next_one() -> None:
    e = ev([mk(1, "$100k", "Will BTC be above $100k?"), mk(2, "$100k", "Will BTC be above $100k?"),
            mk(3, "$120k", "Will BTC be above $120k?")])
    assert covers(e) == [("threshold", (("1", "YES"), ("3", "NO"))), ("threshold", (("2", "YES"), ("3", "NO")))]


def test_bars_without_an_end_date_are_no_rungs() -> None:
    e = ev([mk(1, "$100k", "Will BTC be above $100k?", end=None), mk(2, "$120k", "Will BTC be above $120k?", end=None)])
    assert [m.cumulative for m in group_event(e).markets] == [False, False]
    assert covers(e) == []


def test_facts_name_the_flags_and_why_a_basket_is_not_exhaustive() -> None:
    cases = [
        (ev([mk(1, "Alice"), mk(2, "Bob")], neg_risk=True, augmented=True),
         "negRisk=true, negRiskAugmented=true; not exhaustive: negRiskAugmented=true: outcomes can still be added"),
        (ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Person K", active=False)], neg_risk=True),
         "negRisk=true, negRiskAugmented=false; not exhaustive: placeholder outcome 'Person K'"),
        (ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Carol", active=False)], neg_risk=True),
         "negRisk=true, negRiskAugmented=false; not exhaustive: outcome 'Carol' is listed inactive"),
        (ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "", active=False)], neg_risk=True),
         "negRisk=true, negRiskAugmented=false; not exhaustive: outcome '3' is listed inactive"),
        (ev([mk(1, "Alice"), mk(2, "Bob"), mk(3, "Carol", closed=True, yes_price=1.0)], neg_risk=True),
         "negRisk=true, negRiskAugmented=false; not exhaustive: market 3 closed without resolving NO"),
        (ev([mk(1, "Alice"), mk(2, "Bob")], neg_risk=True),
         "negRisk=true, negRiskAugmented=false; exhaustive: every outcome listed and open"),
        (ev([mk(1, "Alice"), mk(2, "Bob")], augmented=True), "negRisk=false, negRiskAugmented=true"),
    ]
    for event, facts in cases:
        g = group_event(event)
        assert g.facts == facts
        assert g.exhaustive is facts.endswith("listed and open")


def test_group_fields_carry_the_event_and_every_market_field() -> None:
    e = ev([mk(1, "March 31, 2026", "Will X happen by March 31, 2026?", end="2026-03-31T00:00:00Z"),
            mk(2, "June 30, 2026", "Will X happen by June 30, 2026?", end="2026-06-30T00:00:00Z")],
           title="X by...?", end="2026-06-30T00:00:00Z")
    g = group_event(e)
    assert (g.event_id, g.title, g.end_date, g.neg_risk, g.mutually_exclusive, g.placeholders_dropped) == \
        ("1", "X by...?", "2026-06-30T00:00:00Z", False, False, 0)
    first = g.markets[0]
    assert (first.market_id, first.question, first.label, first.yes_token, first.no_token) == \
        ("1", "Will X happen by March 31, 2026?", "March 31, 2026", "y1", "n1")
    assert (first.resolution_date, first.cumulative, first.basis, first.threshold, first.direction) == \
        ("2026-03-31", True, "label 'March 31, 2026'", None, None)
    closed = event_group(ev([mk(1, "x", closed=True)], title="Gone", neg_risk=True, end="2026-01-01T00:00:00Z"))
    assert (closed.event_id, closed.title, closed.partition_type, closed.end_date, closed.neg_risk) == \
        ("1", "Gone", PartitionType.SINGLE, "2026-01-01T00:00:00Z", True)


def test_dates_of_outcomes_for_matching_across_events() -> None:
    """Not a rung's proof: the best date an outcome has, for the LLM step's date checks."""
    def date_of(m: Market, end: str | None = "2026-12-31T00:00:00Z") -> str | None:
        return group_event(ev([m, mk(9, "Zed")], neg_risk=True, end=end)).markets[0].resolution_date

    assert date_of(mk(1, "Q2 2026")) == "2026-06-30"
    assert date_of(mk(1, "June 30")) == "2026-06-30"  # the event's end year
    assert date_of(mk(1, "June 30", end=None), end=None) is None  # no year anywhere
    assert date_of(mk(1, "Alice", "Will Alice win by March 1, 2027?")) == "2027-03-01"
    assert date_of(mk(1, "Alice", desc="known by May 5, 2027")) == "2027-05-05"
    assert date_of(mk(1, "Alice", end="2028-01-02T00:00:00Z")) == "2028-01-02"
    assert date_of(mk(1, "Alice", end=None)) is None


def test_a_title_deadline_needs_labels_and_questions_without_a_window() -> None:
    def rungs(label: str, question: str) -> list[bool]:
        e = ev([mk(1, label, question), mk(2, "June 30, 2026", "Will X happen by June 30, 2026?")], title="X by...?")
        return [m.cumulative for m in group_event(e).markets]

    assert rungs("March 31, 2026", "Will X happen?") == [True, True]  # the title says "by"
    assert rungs("March 31, 2026", "Will X happen in the week of March 31?") == [False, True]
    assert rungs("March 31, 2026", "Will X happen during March 2026?") == [False, True]
    plain = ev([mk(1, "March 31, 2026", "Will X happen?"), mk(2, "June 30, 2026", "Will X happen?")], title="When?")
    assert [m.cumulative for m in group_event(plain).markets] == [False, False]


def test_the_year_of_a_month_day_label() -> None:
    def date_of(question: str, end: str) -> str | None:
        e = ev([mk(1, "December 31", question, end=end), mk(2, "Q1 2030", "Will X happen by Q1 2030?", end=end)],
               end=end)
        m = group_event(e).markets[0]
        return m.resolution_date if m.cumulative else None

    # the question's own full date wins, even when it names another year too
    assert date_of("Will the 2025 deal close by December 31, 2026?", "2027-03-31T00:00:00Z") == "2026-12-31"
    # one year in the question
    assert date_of("Will X happen by December 31 (2027)?", "2029-06-30T00:00:00Z") == "2027-12-31"
    # two years and no full date: the event's end year, only if that is not past the end
    assert date_of("Will the 2025 deal close by December 31 and not in 2026?", "2029-12-31T00:00:00Z") == "2029-12-31"
    assert date_of("Will the 2025 deal close by December 31 and not in 2026?", "2029-06-30T00:00:00Z") is None


def test_where_a_bar_direction_was_read() -> None:
    e = ev([mk(1, "$100k", "Will BTC close above $100k?"), mk(2, "$120k", "Will BTC close above $120k?")])
    assert [m.basis for m in group_event(e).markets] == ["above (question)", "above (question)"]
    t = ev([mk(1, "$100k", "Will BTC close at $100k?"), mk(2, "$120k", "Will BTC close at $120k?")],
           title="BTC above ___ on Dec 31?")
    assert [m.basis for m in group_event(t).markets] == ["above (title)", "above (title)"]


def test_what_is_no_rung_has_no_basis_and_never_raises() -> None:
    dates = ev([mk(1, "Q1 0000", "Will X happen by Q1 0000?"), mk(2, "December 31", "Will X happen by December 31?"),
                mk(3, "June 30, 2026", "Will X happen by June 30, 2026?"), mk(4, "July 31, 2026", "Will X?")],
               end=None)
    g = group_event(dates)
    assert g.partition_type is PartitionType.TIMEFRAME
    assert [(m.cumulative, m.basis) for m in g.markets] == \
        [(False, ""), (False, ""), (True, "label 'June 30, 2026'"), (False, "")]
    bars = ev([mk(1, "$100k", "Will BTC close at $100k?"), mk(2, "$120k", "Will BTC close above $120k?")])
    assert [(m.cumulative, m.basis) for m in group_event(bars).markets] == [(False, ""), (True, "above (question)")]
    assert group_event(ev([mk(1, "Alice"), mk(2, "Bob")], neg_risk=True)).neg_risk is True


def test_a_cover_leg_carries_both_tokens_the_question_and_the_event() -> None:
    from polyalphascan.records import Leg, Side

    e = ev([mk(1, "Alice", "Will Alice win?"), mk(2, "Bob", "Will Bob win?")], neg_risk=True)
    all_no = next(s for s in rule_covers(group_event(e)) if s.kind is CoverKind.ALL_NO)
    assert all_no.legs == (Leg("1", Side.NO, "y1", "n1", "Will Alice win?", "1"),
                           Leg("2", Side.NO, "y2", "n2", "Will Bob win?", "1"))
    assert [leg.token_id for leg in all_no.legs] == ["n1", "n2"]


def test_label_edges_the_last_year_and_a_before_that_is_out_of_range() -> None:
    from datetime import date

    from operators.labels import normalise_label

    assert label_date("Q4 2100").value == date(2100, 12, 31) and label_date("Q4 2101").value is None
    assert label_date("before January 1999").value is None  # no date to step back from
    assert normalise_label("  Donald J. Trump!! ") == "donald j trump" and normalise_label("São-Paulo") == "s o paulo"
