"""Pair expansion over its cap (operators/pairs.py): the cap handed in is the one applied, the
first pairs in market order are kept, and the excess is both counted and logged with the
implication's ids and the kept / dropped counts.
"""

from __future__ import annotations

from typing import Any

import pytest

import operators.pairs as pairs
from operators.grouping import group_event
from polyalphascan.logs import RateLimitedLog
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import CoverKind, Event, Group, GroupImplication, Market, Side

MONTHS = ["January", "February", "March"]


class Recorder:
    """A logger that keeps what it is asked to log."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))


def things() -> Group:
    """Three unrelated yes/no questions (not mutually exclusive)."""
    return group_event(Event(id="p", slug="", title="Which things?", markets=tuple(
        Market(id=str(i), event_id="p", question=f"Will {i} happen?", slug="", condition_id="", yes_token=f"y{i}",
               no_token=f"n{i}", group_item_title=f"Thing {i}x") for i in range(1, 4))))


def deadlines() -> Group:
    """A ladder of three dated markets."""
    return group_event(Event(id="c", slug="", title="By when?", markets=tuple(
        Market(id=str(100 + i), event_id="c", question=f"Will it happen by {m} 2030?", slug="", condition_id="",
               yes_token=f"y{100 + i}", no_token=f"n{100 + i}", group_item_title=f"{m} 2030")
        for i, m in enumerate(MONTHS))))


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(pairs, "_limited", RateLimitedLog(rec, interval=10.0))
    return rec


def test_the_cap_handed_in_keeps_the_first_pairs_and_logs_the_excess(recorder: Recorder) -> None:
    premise, conclusion = things(), deadlines()
    assert len(pairs.market_pairs(premise, conclusion)) == 9  # a mixed pair of shapes: every date-compatible pair
    imp = GroupImplication("p", "c", "implies", "p", explanation="because")
    m = MetricGroup("llm")
    covers = pairs.expand_implication(imp, premise, conclusion, 0.9, max_pairs=4, metrics=m)
    assert [(c.legs[1].market_id, c.legs[0].market_id) for c in covers] == [
        ("1", "100"), ("1", "101"), ("1", "102"), ("2", "100")]  # the first four in market order
    assert all(c.kind is CoverKind.LLM and not c.guaranteed and c.cover_probability == 0.9 and c.payout == 1.0
               and c.explanation == "because" and (c.legs[0].side, c.legs[1].side) == (Side.YES, Side.NO)
               for c in covers)
    assert m.get("rejected_pairs_over_cap") == 5
    assert recorder.lines == [("llm_pairs_over_cap", {"suppressed_since_last": 0, "premise": "p",
                                                     "conclusion": "c", "kept": 4, "dropped": 5})]


def test_pairs_within_the_cap_log_nothing(recorder: Recorder) -> None:
    m = MetricGroup("llm")
    imp = GroupImplication("p", "c", "implies", "p")
    covers = pairs.expand_implication(imp, things(), deadlines(), 0.9, max_pairs=9, metrics=m)
    assert len(covers) == 9 and m.get("rejected_pairs_over_cap") == 0 and recorder.lines == []
    assert covers[0].explanation == "Which things? implies By when?"  # no explanation: the titles say why
