"""A record that makes a step raise is dropped, counted and logged; the flow goes on."""

from __future__ import annotations

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from operators.grouping import empty_group, event_group
from operators.guard import guarded
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Event, Market


def market(i: int, label: object) -> Market:
    return Market(id=str(i), event_id="e", question=f"Will {label} win?", slug="", condition_id="", yes_token=f"y{i}",
                  no_token=f"n{i}", group_item_title=label, neg_risk=True)  # type: ignore[arg-type]


def event(eid: str, *labels: object) -> Event:
    return Event(id=eid, slug="", title=f"E{eid}", neg_risk=True,
                 markets=tuple(market(int(eid) * 10 + i, lab) for i, lab in enumerate(labels)))


def test_guarded_returns_the_fallback_counts_by_kind_and_passes_the_rest() -> None:
    m = MetricGroup("steps")
    fn = guarded("div", lambda x: 10 // x, lambda _x: -1, str, m)
    assert [fn(x) for x in (5, 0, 2, 0)] == [2, -1, 5, -1]
    assert m.get("rejected_div_ZeroDivisionError") == 2
    broken_ident = guarded("div", lambda x: 10 // x, lambda _x: -1, lambda _x: 1 // 0, m)
    assert broken_ident(0) == -1 and m.get("rejected_div_ZeroDivisionError") == 3


def test_a_record_that_breaks_grouping_retracts_only_its_own_event_in_a_running_flow() -> None:
    good, bad, later = event("1", "Ann", "Bo"), event("2", "Cy", None), event("3", "Di", "Ed")
    m = MetricGroup("steps")
    flow = Dataflow("guard")
    src = op.input("in", flow, TestingSource([good, bad, later]))
    groups = op.map("group", src, guarded("group", event_group, empty_group, lambda e: e.id, m))
    out: list = []
    op.output("out", groups, TestingSink(out))
    run_main(flow)
    assert [(g.event_id, len(g.markets)) for g in out] == [("1", 2), ("2", 0), ("3", 2)]
    assert m.get("rejected_group_TypeError") == 1  # a label that is no text


def test_a_keyed_step_that_raises_keeps_its_state_and_the_flow_goes_on() -> None:
    from bytewax.operators import StatefulLogic

    from operators.guard import guarded_logic

    class Summer(StatefulLogic):
        def __init__(self, resume: int | None) -> None:
            self.total = resume or 0

        def on_item(self, value: int) -> tuple[list[int], bool]:
            self.total += 100 // value  # 0 raises
            return [self.total], StatefulLogic.RETAIN

        def snapshot(self) -> int:
            return self.total

    m = MetricGroup("steps")
    flow = Dataflow("guard_logic")
    src = op.input("in", flow, TestingSource([("k", 50), ("k", 0), ("k", 25), ("j", 0), ("j", 10)]))
    out: list = []
    op.output("out", op.stateful("sum", src, guarded_logic("sum", Summer, m)), TestingSink(out))
    run_main(flow)
    assert out == [("k", 2), ("k", 6), ("j", 10)]  # the raising items emitted nothing, state kept
    assert m.get("rejected_sum_ZeroDivisionError") == 2
    assert guarded_logic("sum", Summer, None) is Summer  # no metric group: the logic as is
