"""The LLM operator's group-retry path (operators/llm_step.py `CatalogLogic`): a target whose
request failed is asked again later with a doubling delay, at most `MAX_GROUP_RETRIES` times,
never twice at once, and its answer counts once it comes. Real HTTP to the OpenAI-compatible
stand-in over loopback; the passage of time is simulated by moving the scheduled retry times
into the past, never by sleeping until they come.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import operators.llm_step as llm_step
from operators.llm_step import MAX_GROUP_RETRIES, RETRY_BASE_S, CatalogLogic, LLMStepConfig, make_client
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Group, GroupMarket, ImplicationFound, PartitionType
from standins.llm_server import LLMFaults, LLMServer

A = Group("a", "Will Alice Zork win the presidency?", PartitionType.SINGLE,
          (GroupMarket("ma", "Will Alice Zork win the presidency?", "", "ya", "na"),))
B = Group("b", "Will Alice Zork win the nomination?", PartitionType.SINGLE,
          (GroupMarket("mb", "Will Alice Zork win the nomination?", "", "yb", "nb"),))


class Oracle:
    """A wins the presidency => A wins the nomination; nothing else."""

    def answer_implications(self, target: str, candidates: list[str]) -> dict[str, Any]:
        if target == A.title and B.title in candidates:
            return {"implied_by": [], "implies": [{"title": B.title, "explanation": "nominee first"}]}
        if target == B.title and A.title in candidates:
            return {"implied_by": [{"title": A.title, "explanation": "nominee first"}], "implies": []}
        return {"implied_by": [], "implies": []}


@pytest.fixture(autouse=True)
def _settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_step, "SETTLE_S", 0.0)  # dispatch at once: the settling delay is not under test


@pytest.fixture()
def server() -> Iterator[LLMServer]:
    with LLMServer(Oracle()) as s:  # type: ignore[arg-type]
        yield s



def make_logic(config: LLMStepConfig, logics: list[CatalogLogic], metrics: MetricGroup | None = None) -> CatalogLogic:
    m = metrics or MetricGroup("llm")
    logic = CatalogLogic(config, lambda: make_client(config, m, MetricGroup("cache")), None, metrics=m)
    logics.append(logic)
    return logic


@pytest.fixture()
def logic_for(logics: list[CatalogLogic]) -> Callable[..., CatalogLogic]:
    def make(server: LLMServer, metrics: MetricGroup | None = None) -> CatalogLogic:
        config = LLMStepConfig(base_url=server.url, api_key="standin-placeholder-key", model="standin/m",
                               timeout_s=10, max_attempts=1)
        return make_logic(config, logics, metrics)

    return make


def settle(logic: CatalogLogic, out: list[ImplicationFound], until: Callable[[], bool] | None = None) -> None:
    """on_notify until nothing is in flight (as the flow's 20 ms notify loop does)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out += logic.on_notify()[0]
        if not logic.unfinished() and (until is None or until()):
            return
        time.sleep(0.01)
    raise AssertionError("LLM requests did not finish")


def come_due(logic: CatalogLogic) -> None:
    """Time passes: every scheduled retry is due now."""
    logic.state.retry_at = {eid: (0.0, n) for eid, (_at, n) in logic.state.retry_at.items()}


def test_failed_targets_retry_with_doubling_delays_then_give_up(server: LLMServer, logic_for) -> None:  # noqa: ANN001
    m = MetricGroup("llm")
    scheduled0, failed0 = m.get("groups_retry_scheduled"), m.get("groups_failed")
    server.faults = LLMFaults(rate_invalid_json=1.0)
    logic = logic_for(server, m)
    out: list[ImplicationFound] = []
    out += logic.on_item(A)[0]  # alone: no candidate yet, nothing to ask
    assert logic.state.done == 1 and not logic.inflight
    out += logic.on_item(B)[0]
    settle(logic, out)
    assert server.stats.targets[B.title] == 1
    for attempt in range(1, MAX_GROUP_RETRIES + 1):
        (eid,) = logic.state.retry_at
        at, n = logic.state.retry_at[eid]
        assert eid == "b" and n == attempt
        # 30 s, 60 s, 120 s from the failure
        assert at - time.time() == pytest.approx(RETRY_BASE_S * 2 ** (attempt - 1), abs=5)
        assert logic.notify_at() == datetime.fromtimestamp(at, timezone.utc)  # wake up for it, not before
        assert logic.on_notify()[0] == [] and not logic.inflight  # not due yet: not asked again
        assert server.stats.targets[B.title] == attempt
        come_due(logic)
        settle(logic, out)
        assert server.stats.targets[B.title] == attempt + 1  # asked again once, never twice at once
    assert logic.state.retry_at == {} and logic.notify_at() is None  # given up after the last retry
    assert out == [] and logic.state.done == 2 and logic.state.found == {}
    assert m.get("groups_retry_scheduled") - scheduled0 == MAX_GROUP_RETRIES
    assert m.get("groups_failed") - failed0 == 1
    come_due(logic)
    settle(logic, out)
    assert server.stats.targets[B.title] == MAX_GROUP_RETRIES + 1  # and never asked again


def test_a_retry_that_succeeds_emits_the_implication_and_clears_the_schedule(server: LLMServer, logic_for) -> None:  # noqa: ANN001
    server.faults = LLMFaults(rate_invalid_json=1.0)
    logic = logic_for(server)
    out: list[ImplicationFound] = []
    out += logic.on_item(A)[0]
    out += logic.on_item(B)[0]
    settle(logic, out)
    assert set(logic.state.retry_at) == {"b"} and out == []
    # the retry schedule is part of the snapshot: a resumed flow keeps it
    snap = logic.snapshot()
    assert snap.retry_at == logic.state.retry_at and snap.pending == []
    server.faults = LLMFaults()
    come_due(logic)
    settle(logic, out)
    assert logic.state.retry_at == {} and logic.state.done == 2
    assert [(f.implication.premise_event_id, f.implication.conclusion_event_id, f.premise, f.conclusion)
            for f in out] == [("a", "b", A, B)]
    assert set(logic.state.found) == {("a", "b")}


def test_a_closed_event_drops_its_scheduled_retry(server: LLMServer, logic_for) -> None:  # noqa: ANN001
    server.faults = LLMFaults(rate_invalid_json=1.0)
    logic = logic_for(server)
    out: list[ImplicationFound] = []
    out += logic.on_item(A)[0]
    out += logic.on_item(B)[0]
    settle(logic, out)
    assert set(logic.state.retry_at) == {"b"}
    assert logic.on_item(Group("b", B.title, PartitionType.SINGLE, ()))[0] == []
    assert logic.state.retry_at == {} and logic.notify_at() is None
    server.faults = LLMFaults()
    asked = sum(server.stats.targets.values())
    settle(logic, out)
    assert sum(server.stats.targets.values()) == asked and out == []


def test_a_changed_group_already_waiting_for_a_retry_is_not_queued_twice(server: LLMServer, logic_for) -> None:  # noqa: ANN001
    server.faults = LLMFaults(rate_invalid_json=1.0)
    logic = logic_for(server)
    out: list[ImplicationFound] = []
    out += logic.on_item(A)[0]
    out += logic.on_item(B)[0]
    settle(logic, out)
    server.faults = LLMFaults()
    come_due(logic)
    logic.state.pending.append("b")  # the target is also queued (e.g. re-titled) when its retry comes due
    settle(logic, out)
    assert server.stats.targets[B.title] == 2  # one failed request, one retry: not two retries
    assert {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in out} == {("a", "b")}


C = Group("c", "Will Alice Zork win the primary?", PartitionType.SINGLE,
          (GroupMarket("mc", "Will Alice Zork win the primary?", "", "yc", "nc"),))


def test_targets_wait_for_the_burst_to_settle_and_go_out_one_batch_at_a_time(
        server: LLMServer, monkeypatch: pytest.MonkeyPatch, logics: list[CatalogLogic]) -> None:
    monkeypatch.setattr(llm_step, "SETTLE_S", 3600.0)  # the burst never settles by itself here
    config = LLMStepConfig(base_url=server.url, api_key="standin-placeholder-key", model="standin/m",
                           max_attempts=1, batch_size=1, max_concurrent=1)
    logic = make_logic(config, logics)
    for g in (A, B, C):
        logic.on_item(g)
    assert logic.on_notify()[0] == [] and not logic.inflight and logic.state.pending == ["a", "b", "c"]
    logic._dispatch(force=True)  # what on_eof and a resume do: no waiting
    assert list(logic.inflight) == ["a"] and logic.state.pending == ["b", "c"]  # one batch: one target
    out: list[ImplicationFound] = []
    out += logic.on_eof()[0]  # drains the rest, one at a time
    assert not logic.inflight and logic.state.pending == [] and logic.state.done == 3
    assert {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in out} == {("a", "b")}


def test_answers_become_implications_with_every_field() -> None:
    from connectors.llm.protocol import PROMPT_VERSION, implications_from_answer
    from polyalphascan.records import GroupImplication

    answer = {
        "implied_by": [{"title": A.title, "explanation": "x" * 600, "counterexample_attempt": "none found"},
                       {"title": B.title}],  # the target itself: not an implication
        "implies": [{"title": "unknown title"}, {"title": A.title, "explanation": 7},
                    {"title": A.title.lower()}],  # cached answers carry exact titles: no other match
    }
    imps, unmatched = implications_from_answer(answer, B, {A.title: "a", B.title: "b"}, "model/x")
    assert imps == [
        GroupImplication("a", "b", "implied_by", "b", "x" * 500, "none found", "model/x", PROMPT_VERSION),
        GroupImplication("b", "a", "implies", "b", "7", "", "model/x", PROMPT_VERSION),
    ]
    assert unmatched == 3


def _failed_once_then_due(server: LLMServer, logic_for) -> tuple[CatalogLogic, list[ImplicationFound]]:  # noqa: ANN001
    """A and B asked once, both failed; the faults off; their retries due now."""
    server.faults = LLMFaults(rate_invalid_json=1.0)
    logic = logic_for(server)
    out: list[ImplicationFound] = []
    logic.on_item(A)
    out += logic.on_item(B)[0]
    logic._dispatch(force=True)  # noqa: SLF001 - the first burst, asked
    settle(logic, out)
    assert server.stats.targets[B.title] == 1 and set(logic.state.retry_at) == {"a", "b"}
    server.faults = LLMFaults()
    come_due(logic)
    return logic, out


def test_the_same_groups_again_and_again_do_not_hold_a_due_retry_back(
        server: LLMServer, logic_for, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Groups re-emitted unchanged less than `SETTLE_S` apart (the same events, poll after
    poll) add nothing to ask against: they do not restart the settling wait."""
    monkeypatch.setattr(llm_step, "SETTLE_S", 0.5)
    logic, out = _failed_once_then_due(server, logic_for)
    time.sleep(0.5)  # the first burst has settled
    start = time.monotonic()
    while server.stats.targets[B.title] == 1 and time.monotonic() - start < 5:
        out += logic.on_item(A)[0]  # unchanged, every 20 ms
        out += logic.on_notify()[0]
        time.sleep(0.02)
    assert server.stats.targets[B.title] == 2, "the due retry was held back by unchanged groups"
    assert time.monotonic() - start < 0.5
    settle(logic, out)
    assert {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in out} == {("a", "b")}


def test_a_stream_of_new_groups_delays_a_due_retry_at_most_settle_max_s(
        server: LLMServer, logic_for, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """New groups that keep coming less than `SETTLE_S` apart hold dispatch back (a burst is
    asked against the whole catalogue), but not forever: `SETTLE_MAX_S` after the stream began."""
    monkeypatch.setattr(llm_step, "SETTLE_S", 0.2)
    monkeypatch.setattr(llm_step, "SETTLE_MAX_S", 1.0)
    logic, out = _failed_once_then_due(server, logic_for)
    start = time.monotonic()
    i = 0
    while server.stats.targets[B.title] == 1 and time.monotonic() - start < 10:
        i += 1
        title = f"Will Zed Quux{i} win race {i}?"
        out += logic.on_item(Group(f"n{i}", title, PartitionType.SINGLE,
                                   (GroupMarket(f"mn{i}", title, "", f"yn{i}", f"nn{i}"),)))[0]
        out += logic.on_notify()[0]
        time.sleep(0.05)
    waited = time.monotonic() - start
    assert server.stats.targets[B.title] == 2, "the due retry was starved by the stream"
    assert 1.0 <= waited < 8.0  # held back at least SETTLE_MAX_S; new targets queued first go first
