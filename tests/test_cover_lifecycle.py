"""Rule covers that stop holding are retracted when their event changes."""

from __future__ import annotations

from operators.cover_lifecycle import RuleCoverDiff
from operators.grouping import group_event
from polyalphascan.records import CoverKind, CoverRetracted, CoverSpec, Event, Market


def mk(i: int, label: str) -> Market:
    return Market(id=str(i), event_id="e", question=f"Will {label} win?", slug="", condition_id="",
                  yes_token=f"y{i}", no_token=f"n{i}", group_item_title=label, end_date="2028-11-07T00:00:00Z")


def test_new_outcome_retracts_the_old_baskets_and_nothing_else() -> None:
    logic = RuleCoverDiff(None)
    three = Event(id="1", slug="", title="Who wins?", neg_risk=True, markets=(mk(1, "Ann"), mk(2, "Bo"), mk(3, "Cy")))
    first, _ = logic.on_item(group_event(three))
    assert {c.kind for c in first if isinstance(c, CoverSpec)} == {CoverKind.ALL_NO, CoverKind.ALL_YES}
    assert not any(isinstance(c, CoverRetracted) for c in first)
    again, _ = logic.on_item(group_event(three))  # same shape: nothing retracted
    assert not any(isinstance(c, CoverRetracted) for c in again)
    four = Event(id="1", slug="", title="Who wins?", neg_risk=True, markets=three.markets + (mk(4, "Di"),))
    out, _ = logic.on_item(group_event(four))
    retracted = {r.cover_id for r in out if isinstance(r, CoverRetracted)}
    assert retracted == {c.id for c in first if isinstance(c, CoverSpec)}  # both 3-outcome baskets
    assert all(set(r.yes_tokens) == {"y1", "y2", "y3"} for r in out if isinstance(r, CoverRetracted))
    resumed = RuleCoverDiff(logic.snapshot())
    out2, _ = resumed.on_item(group_event(four))
    assert not any(isinstance(c, CoverRetracted) for c in out2)


def test_augmentation_or_a_new_placeholder_retracts_the_yes_basket_only() -> None:
    logic = RuleCoverDiff(None)
    plain = Event(id="1", slug="", title="Who wins?", neg_risk=True, markets=(mk(1, "Ann"), mk(2, "Bo")))
    first, _ = logic.on_item(group_event(plain))
    ids = {c.kind: c.id for c in first if isinstance(c, CoverSpec)}
    augmented = Event(id="1", slug="", title="Who wins?", neg_risk=True, neg_risk_augmented=True,
                      markets=plain.markets)
    out, _ = logic.on_item(group_event(augmented))
    assert [r.cover_id for r in out if isinstance(r, CoverRetracted)] == [ids[CoverKind.ALL_YES]]
    assert [c.id for c in out if isinstance(c, CoverSpec)] == [ids[CoverKind.ALL_NO]]
    # back to plain, then an inactive "Person K" slot is listed: the YES basket goes again
    logic.on_item(group_event(plain))
    slot = Market(id="3", event_id="e", question="Will Person K win?", slug="", condition_id="", yes_token="y3",
                  no_token="n3", group_item_title="Person K", active=False)
    out, _ = logic.on_item(group_event(Event(id="1", slug="", title="Who wins?", neg_risk=True,
                                             markets=plain.markets + (slot,))))
    assert [r.cover_id for r in out if isinstance(r, CoverRetracted)] == [ids[CoverKind.ALL_YES]]
    # the slot becomes a named, active outcome: both old baskets go, the 3-outcome ones come
    named = Market(id="3", event_id="e", question="Will Cy win?", slug="", condition_id="", yes_token="y3",
                   no_token="n3", group_item_title="Cy")
    out, _ = logic.on_item(group_event(Event(id="1", slug="", title="Who wins?", neg_risk=True,
                                             markets=plain.markets + (named,))))
    assert [r.cover_id for r in out if isinstance(r, CoverRetracted)] == [ids[CoverKind.ALL_NO]]
    assert sorted(len(c.legs) for c in out if isinstance(c, CoverSpec)) == [3, 3]


def test_llm_pairs_of_a_closed_market_are_retracted_on_every_leg() -> None:
    from operators.cover_lifecycle import LlmCoverDiff, pair_covers, implication_key
    from polyalphascan.records import GroupImplication, ImplicationFound

    def ladder(*markets: Market) -> Event:
        return Event(id="p", slug="", title="Ann wins by...?", markets=markets)

    by_june = Market(id="11", event_id="p", question="Ann by June?", slug="", condition_id="", yes_token="y11",
                     no_token="n11", group_item_title="June 30, 2028")
    by_sep = Market(id="12", event_id="p", question="Ann by September?", slug="", condition_id="", yes_token="y12",
                    no_token="n12", group_item_title="September 30, 2028")
    conclusion = group_event(Event(id="c", slug="", title="Ann is a candidate?", markets=(mk(21, "Ann"),)))
    imp = GroupImplication("p", "c", "implies", "p", "", "", "m", "v1")
    logic = LlmCoverDiff(None, pair_covers(0.98))
    first, _ = logic.on_item(ImplicationFound(imp, group_event(ladder(by_june, by_sep)), conclusion))
    assert sorted(c.legs[1].market_id for c in first) == ["11", "12"]  # NO on each premise market
    assert implication_key(ImplicationFound(imp, group_event(ladder(by_june)), conclusion)) == "p>c"
    # the September market closes: the implication comes again with the fresh premise group
    out, _ = logic.on_item(ImplicationFound(imp, group_event(ladder(by_june)), conclusion))
    (gone,) = [c for c in out if isinstance(c, CoverRetracted)]
    dead = next(c for c in first if c.legs[1].market_id == "12")
    assert gone.cover_id == dead.id and set(gone.yes_tokens) == {"y12", "y21"}
    assert [c.id for c in out if isinstance(c, CoverSpec)] == [c.id for c in first if c.legs[1].market_id == "11"]


def test_a_closed_event_retracts_all_its_rule_covers_and_frees_the_key() -> None:
    from bytewax.operators import StatefulLogic

    from operators.grouping import event_group

    logic = RuleCoverDiff(None)
    three = Event(id="1", slug="", title="Who wins?", neg_risk=True, markets=(mk(1, "Ann"), mk(2, "Bo"), mk(3, "Cy")))
    first, keep = logic.on_item(event_group(three))
    assert keep is StatefulLogic.RETAIN
    closed = Event(id="1", slug="", title="Who wins?", neg_risk=True, closed=True, markets=())
    out, keep = logic.on_item(event_group(closed))
    assert {r.cover_id for r in out} == {c.id for c in first} and all(isinstance(r, CoverRetracted) for r in out)
    assert keep is StatefulLogic.DISCARD


def test_a_resumed_diff_retracts_what_its_snapshot_held_and_no_longer_holds() -> None:
    from operators.cover_lifecycle import LlmCoverDiff, pair_covers

    three = Event(id="1", slug="", title="Who wins?", neg_risk=True, markets=(mk(1, "Ann"), mk(2, "Bo"), mk(3, "Cy")))
    out, _ = RuleCoverDiff({"all_no-gone": ("y9",)}).on_item(group_event(three))
    assert [r for r in out if isinstance(r, CoverRetracted)] == [CoverRetracted("all_no-gone", ("y9",))]
    from polyalphascan.records import GroupImplication, ImplicationFound

    g = group_event(three)
    found = ImplicationFound(GroupImplication("1", "1", "implies", "1"), g, g)
    out, _ = LlmCoverDiff({"llm-gone": ("y8",)}, pair_covers(0.98)).on_item(found)
    assert CoverRetracted("llm-gone", ("y8",)) in out


def test_pairs_over_the_cap_are_counted_in_the_group_handed_in() -> None:
    from operators.cover_lifecycle import pair_covers
    from operators.pairs import MAX_PAIRS_PER_IMPLICATION
    from polyalphascan.metrics import MetricGroup
    from polyalphascan.records import GroupImplication, ImplicationFound

    many = [Market(id=str(i), event_id="e", question=f"Will {i} happen?", slug="", condition_id="", yes_token=f"y{i}",
                   no_token=f"n{i}", group_item_title=f"Thing {i}x") for i in range(1, 25)]
    premise = group_event(Event(id="p", slug="", title="Which things?", markets=tuple(many[:12])))
    dated = [Market(id=str(100 + i), event_id="c", question=f"Will it happen by {i} 2030?", slug="", condition_id="",
                    yes_token=f"y{100 + i}", no_token=f"n{100 + i}", group_item_title=f"{month} 2030")
             for i, month in enumerate(["January", "February", "March", "April", "May", "June", "July", "August",
                                        "September", "October", "November", "December"])]
    conclusion = group_event(Event(id="c", slug="", title="By when?", markets=tuple(dated)))  # a mixed pair of shapes
    m = MetricGroup("llm")
    found = ImplicationFound(GroupImplication("p", "c", "implies", "p"), premise, conclusion)
    covers = pair_covers(0.98, m)(found)  # 12 x 12 = 144 pairs licensed
    assert len(covers) == MAX_PAIRS_PER_IMPLICATION == 100 and m.get("rejected_pairs_over_cap") == 44


def test_single_premise_pairs_with_every_outcome_of_a_plain_event_and_empty_groups_pair_nothing() -> None:
    from operators.pairs import market_pairs
    from polyalphascan.records import Group, PartitionType

    single = group_event(Event(id="s", slug="", title="Will X happen?", markets=(mk(1, ""),)))
    plain = group_event(Event(id="c", slug="", title="Which?", markets=(mk(2, "Ann"), mk(3, "Bo"))))
    assert single.partition_type is PartitionType.SINGLE and plain.partition_type is PartitionType.CANDIDATE
    assert [(p.market_id, c.market_id) for p, c in market_pairs(single, plain)] == [("1", "2"), ("1", "3")]
    empty = Group(event_id="e", title="gone", partition_type=PartitionType.SINGLE, markets=())
    assert market_pairs(single, empty) == [] and market_pairs(empty, single) == []
