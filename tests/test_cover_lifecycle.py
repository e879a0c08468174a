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
