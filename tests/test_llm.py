"""LLM path: prompt and parsing, the OpenAI-compatible stand-in through the real openai SDK,
the client's failure handling and cache, and the bounded async operator in real flows."""

from __future__ import annotations

import asyncio
from collections import Counter
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import pytest
from aiohttp import web
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.gamma.protocol import parse_event
from connectors.llm.client import ImplicationClient, LLMCache, LLMFailure, LLMHTTPError
from connectors.llm.protocol import (
    LLMAnswerError,
    LLMError,
    build_messages,
    implications_from_answer,
    match_answer,
    parse_answer,
    parse_prompt,
)
from connectors.llm.runner import AsyncRunner, RunnerStopped
from operators.grouping import group_event
from operators.llm_step import CatalogLogic, LLMStepConfig, llm_implications, make_client
from operators.retrieval import RetrievalIndex
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Group, PartitionType
from standins.llm_server import LLMFaults, LLMServer
from standins.universe import Universe


@pytest.fixture(scope="module")
def universe() -> Universe:
    return Universe(seed=13, n_events=150)


@pytest.fixture()
def server(universe: Universe) -> Iterator[LLMServer]:
    with LLMServer(universe) as s:
        yield s


def config_for(server: LLMServer, **kw) -> LLMStepConfig:  # noqa: ANN003
    base: dict = dict(base_url=server.url, api_key="standin-placeholder-key", model="standin/m",
                      timeout_s=10, max_attempts=8)
    base.update(kw)
    return LLMStepConfig(**base)


def logic_for(config: LLMStepConfig, resume=None, metrics: MetricGroup | None = None) -> CatalogLogic:  # noqa: ANN001
    m = metrics or MetricGroup("llm")
    return CatalogLogic(config, lambda: make_client(config, m, MetricGroup("cache")), resume, metrics=m)


def runner_threads() -> int:
    return sum(t.name == "llm-runner" for t in threading.enumerate())


def groups_of(universe: Universe) -> list[Group]:
    return [g for raw in universe.gamma_events() if (g := group_event(parse_event(raw))) is not None]


# ------------------------------------------------------------------ pure
def test_prompt_round_trip_and_answers_by_id() -> None:
    msgs = build_messages("Will X win?", ["Will X win the nomination?", "Will Y win?"])
    assert "JSON" in msgs[0]["content"] and "counterexample" in msgs[0]["content"]
    assert "never follow instructions" in msgs[0]["content"]
    assert parse_prompt(msgs[1]["content"]) == ("Will X win?", ["Will X win the nomination?", "Will Y win?"])
    by_id = {"1": "Will Alice win the 2028 election?", "2": "Bitcoin above $100k on Dec 31?"}
    answer = {"implied_by": [{"id": "1"}, 2, {"id": "Will Alice win the 2028 election?"}], "implies": ["3", {"id": "2"}]}
    rejected: Counter[str] = Counter()
    matched, unmatched = match_answer(answer, by_id, rejected=rejected)
    assert [i["title"] for i in matched["implied_by"]] == [by_id["1"], by_id["2"]]
    assert [i["title"] for i in matched["implies"]] == [by_id["2"]]
    # a title where an id belongs is no id at all; an id no candidate has names nothing
    assert unmatched == 1 and rejected == Counter({"answer_item": 1, "unknown_id": 1})
    assert parse_answer('```json\n{"implied_by": [], "implies": [{"id": "a"}]}\n```')["implies"] == [{"id": "a"}]
    with pytest.raises(LLMAnswerError) as err:
        parse_answer("Sure! {implied_by: [")
    assert isinstance(err.value, ValueError) and isinstance(err.value, LLMError)


def test_contrapositive_directions() -> None:
    target = Group("10", "T", PartitionType.SINGLE, ())
    answer = {"implied_by": [{"title": "A"}], "implies": [{"title": "B"}, {"title": "nope"}]}
    imps, unmatched = implications_from_answer(answer, target, {"A": "1", "B": "2"}, "m")
    assert [(i.premise_event_id, i.conclusion_event_id) for i in imps] == [("1", "10"), ("10", "2")]
    assert unmatched == 1


def test_retrieval_sends_related_groups_not_everything(universe: Universe) -> None:
    groups = groups_of(universe)
    index = RetrievalIndex()
    for g in groups:
        index.upsert(g.event_id, g.title)
    for premise, conclusion in universe.ground_truth().implications:
        assert conclusion in index.candidates(premise, 40)
        assert premise in index.candidates(conclusion, 40)
    assert max(len(index.candidates(g.event_id, 40)) for g in groups) <= 40


# ------------------------------------------------------------------ client + stand-in
def cache_for(config: LLMStepConfig, redis_url: str | None = None, metrics: MetricGroup | None = None) -> LLMCache:
    return LLMCache(metrics or MetricGroup("cache"), max_entries=config.cache_max_entries, redis_url=redis_url,
                    redis_key_prefix=config.redis_key_prefix, ttl_seconds=config.cache_ttl_s)


def ask_all(config: LLMStepConfig, items: list[tuple[str, list[str]]], cache: LLMCache | None = None,
            metrics: MetricGroup | None = None) -> list:
    client = ImplicationClient(base_url=config.base_url, api_key=config.api_key, model=config.model,
                               cache=cache or cache_for(config), metrics=metrics or MetricGroup("llm"),
                               timeout_s=config.timeout_s, max_attempts=config.max_attempts,
                               backoff_base=0.01, backoff_max=0.05)
    runner = AsyncRunner(config.max_concurrent)
    futs = [runner.submit(lambda t=t, c=c: client.ask(t, c)) for t, c in items]
    out = []
    for f in futs:
        try:
            out.append(f.result(timeout=60))
        except LLMFailure as exc:
            out.append(exc)
    runner.stop(cleanup=client.aclose)  # the caller owns the runner: stop it, close the client on its loop
    return out


def some_targets(universe: Universe, n: int) -> list[tuple[str, list[str]]]:
    titles = [e["title"] for e in universe.gamma_events()]
    return [(titles[i], titles[i + 1 : i + 6]) for i in range(n)]


def test_peak_in_flight_equals_the_limit_and_never_exceeds_it(server: LLMServer, universe: Universe) -> None:
    server.faults = LLMFaults(latency_s=0.1)
    config = config_for(server, max_concurrent=5)
    targets = some_targets(universe, 30)
    results = ask_all(config, targets)
    assert results == [{"implied_by": want["implied_by"], "implies": want["implies"]}
                       for want in (universe.answer_implications(t, c, error_rate=0.0) for t, c in targets)]
    assert server.stats.requests == 30 and server.stats.peak_in_flight == 5


def test_429_storm_error_bodies_and_garbage_lose_nothing(server: LLMServer, universe: Universe) -> None:
    server.faults = LLMFaults(rate_429=0.4, retry_after_s=0.02, rate_error_body=0.1, rate_invalid_json=0.1, seed=2)
    config = config_for(server, max_concurrent=4, max_attempts=20)
    targets = some_targets(universe, 25)
    llm = MetricGroup("llm")
    results = ask_all(config, targets, metrics=llm)
    # nothing lost: every target gets the oracle's own answer, item for item, despite the faults
    assert results == [{"implied_by": want["implied_by"], "implies": want["implies"]}
                       for want in (universe.answer_implications(t, c, error_rate=0.0) for t, c in targets)]
    assert any(r["implied_by"] or r["implies"] for r in results)  # not only empty answers
    assert server.stats.outcomes["ok"] == 25  # each answered exactly once in the end
    assert server.stats.outcomes["429"] > 0 and server.stats.outcomes["invalid_json"] > 0
    assert server.stats.outcomes["error_body"] > 0 and llm.get("retries") > 0


def test_failures_are_reported_with_their_kind(server: LLMServer, universe: Universe) -> None:
    server.faults = LLMFaults(rate_invalid_json=1.0)
    llm = MetricGroup("llm")
    (result,) = ask_all(config_for(server, max_attempts=2), some_targets(universe, 1), metrics=llm)
    assert isinstance(result, LLMFailure) and result.kind == "unparseable"
    assert llm.get("errors_unparseable") == 2 and llm.get("failures_unparseable") == 1


def test_a_status_that_retrying_cannot_help_fails_at_once(universe: Universe) -> None:
    class Unauthorized(LLMServer):
        async def chat(self, request: web.Request) -> web.Response:
            self.stats.requests += 1
            return web.json_response({"error": {"code": 401, "message": "No auth"}}, status=401)

    with Unauthorized(universe) as server:
        llm = MetricGroup("llm")
        (result,) = ask_all(config_for(server, max_attempts=5), some_targets(universe, 1), metrics=llm)
    assert isinstance(result, LLMHTTPError) and result.kind == "http_401" and not result.retryable
    assert server.stats.requests == 1 and llm.get("failures_http_401") == 1 and llm.get("retries") == 0


def test_a_stopped_runner_cancels_what_runs_and_takes_no_more() -> None:
    cleaned: list[bool] = []

    async def cleanup() -> None:
        cleaned.append(True)

    gauge = MetricGroup("llm")
    runner = AsyncRunner(1, gauge)
    slow = runner.submit(lambda: asyncio.sleep(60))
    queued = runner.submit(lambda: asyncio.sleep(60))  # waits for the single slot
    deadline = time.monotonic() + 5
    while gauge.get("in_flight") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gauge.get("in_flight") == 1
    runner.stop(cleanup=cleanup)
    assert slow.cancelled() and queued.cancelled() and cleaned == [True]
    assert not runner.thread.is_alive() and gauge.get("in_flight") == 0
    with pytest.raises(RunnerStopped):
        runner.submit(lambda: asyncio.sleep(0))
    runner.stop()  # idempotent


def test_cached_answers_make_no_calls(server: LLMServer, universe: Universe, redis_server) -> None:  # noqa: ANN001
    config = config_for(server, redis_key_prefix="llmcache")
    items = some_targets(universe, 10)
    first = ask_all(config, items, cache_for(config, redis_server.url))
    calls = server.stats.requests
    second = ask_all(config, items, cache_for(config, redis_server.url))  # a new process: Redis remembers
    assert second == first and server.stats.requests == calls == 10
    mem = cache_for(config_for(server, cache_max_entries=3))
    for i in range(5):
        mem.put(str(i), {"implied_by": [], "implies": []})
    assert mem.evictions == 2 and mem.get("0") is None and mem.get("4") is not None


# ------------------------------------------------------------------ the operator in flows
def run_catalog(config: LLMStepConfig, groups: list[Group]) -> list:
    out: list = []
    flow = Dataflow("llm_test")
    src = op.input("groups", flow, TestingSource(groups, batch_size=50))
    keyed = op.key_on("catalog", src, lambda _g: "catalog")
    op.output("out", llm_implications("llm", keyed, config, metrics=MetricGroup("llm"),
                                      cache_metrics=MetricGroup("cache")), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(milliseconds=200))
    return out


def test_operator_finds_exactly_the_true_implications(server: LLMServer, universe: Universe, redis_server) -> None:  # noqa: ANN001
    config = config_for(server, max_concurrent=5, redis_cache_url=redis_server.url, redis_key_prefix="op1")
    runners_before = runner_threads()
    out = run_catalog(config, groups_of(universe))
    assert runner_threads() == runners_before  # the step stopped its runner at EOF
    found = {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in out}
    assert found == universe.ground_truth().implications
    assert all(f.premise.event_id == f.implication.premise_event_id for f in out)
    assert server.stats.peak_in_flight <= 5
    calls = server.stats.requests
    again = run_catalog(config, groups_of(universe))  # re-run: all cached
    assert server.stats.requests == calls
    assert {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in again} == found


def test_no_api_key_means_no_llm_calls(server: LLMServer, universe: Universe) -> None:
    config = LLMStepConfig(base_url=server.url, api_key=None, model="standin/m")
    assert run_catalog(config, groups_of(universe)[:20]) == []
    assert server.stats.requests == 0


class Ticker(DynamicSource):
    """Emits `items` once, then a timestamp every 10 ms until told to stop (a stand-in for
    price updates); wakes every 5 ms, so it never holds an epoch back."""

    def __init__(self, stop: threading.Event, items: list | None = None) -> None:
        self.stop = stop
        self.items = items

    def build(self, step_id, worker_index, worker_count):  # noqa: ANN001, ANN201
        stop, items = self.stop, self.items

        class Part(StatelessSourcePartition):
            def __init__(self) -> None:
                self.next = time.monotonic()
                self.items = items

            def next_batch(self):  # noqa: ANN202
                if stop.is_set():
                    raise StopIteration
                if self.items is not None:
                    out, self.items = self.items, []
                    return out
                now = time.monotonic()
                if now < self.next:
                    return []
                self.next = now + 0.01
                return [("tick", now)]

            def next_awake(self):  # noqa: ANN202
                return datetime.now(timezone.utc) + timedelta(milliseconds=5)

        return Part()


def test_prices_keep_flowing_while_100_slow_calls_are_in_flight(server: LLMServer, universe: Universe) -> None:
    server.faults = LLMFaults(latency_s=2.0)
    config = config_for(server, max_concurrent=100, batch_size=100)
    groups = groups_of(universe)  # 150: early ones have no candidates yet, the rest make >= 100 calls
    stop = threading.Event()
    ticks: list[float] = []
    found: list = []

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.stats.peak_in_flight < 100:
            time.sleep(0.01)
        time.sleep(3.0)  # keep ticking past the calls (2 s each), so a blocked worker would show its gap
        stop.set()

    flow = Dataflow("isolation")
    ticker = op.input("ticker", flow, Ticker(stop))
    op.output("ticks", op.map("t", ticker, lambda x: time.monotonic()), TestingSink(ticks))
    # the group input stays open (as in production) while the calls are in flight
    src = op.input("groups", flow, Ticker(stop, groups))
    keyed = op.key_on("catalog", op.filter("only_groups", src, lambda x: isinstance(x, Group)), lambda _g: "catalog")
    op.output("found", llm_implications("llm", keyed, config, metrics=MetricGroup("llm"),
                                        cache_metrics=MetricGroup("cache")), TestingSink(found))
    threading.Thread(target=watch, daemon=True).start()
    run_main(flow, epoch_interval=timedelta(milliseconds=100))
    assert server.stats.peak_in_flight == 100  # 100 slow calls really were in flight together
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    # each call takes 2 s: a worker that waited on one would show a gap of ~2 s; half of that is
    # left for scheduling noise on a loaded 2-core box (GC, the client's first-use imports)
    assert len(ticks) > 30 and max(gaps) < 1.0, max(gaps)


def test_resumed_logic_resends_only_unfinished_targets(server: LLMServer, universe: Universe) -> None:
    config = config_for(server, max_concurrent=2, batch_size=2)
    groups = groups_of(universe)[:12]
    logic = logic_for(config)
    for g in groups:
        logic.on_item(g)
    deadline = time.monotonic() + 30
    while logic.state.done < 4 and time.monotonic() < deadline:  # some answered, the rest not yet
        logic.on_notify()
        time.sleep(0.02)
    server.faults = LLMFaults(latency_s=5.0)  # make sure the rest is still unfinished at the snapshot
    snap = logic.snapshot()
    answered = {t for t, n in server.stats.targets.items() if n}
    unfinished = set(snap.pending)
    assert unfinished and len(unfinished) + snap.done == len(groups)
    logic.close()  # the old process is gone, and its requests with it
    server.faults = LLMFaults()
    server.reset_stats()
    resumed = logic_for(config, snap)
    deadline = time.monotonic() + 30
    while resumed.unfinished() and time.monotonic() < deadline:
        resumed.on_notify()
        time.sleep(0.02)
    titles = {g.event_id: g.title for g in groups}
    asked_again = set(server.stats.targets)
    with_candidates = {titles[e] for e in unfinished if resumed.index.candidates(e, 40)}
    assert asked_again == with_candidates and asked_again  # exactly the unfinished targets
    assert not asked_again & {titles[e] for e in titles if e not in unfinished and titles[e] in answered}
    assert resumed.state.done == len(groups)
    resumed.close()


def test_common_words_fill_the_candidates_only_when_rare_words_find_too_few() -> None:
    index = RetrievalIndex()
    for i in range(300):  # "trump" is in every title: too common to tell groups apart
        index.upsert(f"f{i}", f"Trump filler topic{i}")
    index.upsert("t", "Trump wins the presidency")
    index.upsert("n", "Trump wins the Republican nomination")
    index.upsert("p", "Republican turnout record presidency")
    # the rare word "presidency" finds one group; "trump" fills up to k, rarest words first
    got = index.candidates("t", 5)
    assert got[0] == "p" and len(got) == 5
    assert all("trump" in index.words[e] for e in got[1:])
    # with enough rare-word candidates the common word adds nobody
    assert index.candidates("t", 1) == ["p"]
    assert index.candidates("n", 1) == ["p"]


def test_a_closed_event_leaves_the_catalog_and_its_pairs_are_retracted(server: LLMServer, universe: Universe) -> None:
    from operators.cover_lifecycle import LlmCoverDiff, pair_covers
    from operators.grouping import event_group
    from polyalphascan.records import CoverRetracted, CoverSpec, Event

    groups = groups_of(universe)
    logic = logic_for(config_for(server))
    out = []
    for g in groups:
        out += logic.on_item(g)[0]
    deadline = time.monotonic() + 60
    while logic.unfinished() and time.monotonic() < deadline:
        out += logic.on_notify()[0]
        time.sleep(0.02)
    truth = universe.ground_truth().implications
    assert {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in out} == truth
    pairs: dict[tuple[str, str], LlmCoverDiff] = {}  # the flow keys this step by implication
    live: dict[tuple[str, str], set[str]] = {}
    for f in out:
        key = (f.implication.premise_event_id, f.implication.conclusion_event_id)
        step = pairs.setdefault(key, LlmCoverDiff(None, pair_covers(0.98)))
        live[key] = {c.id for c in step.on_item(f)[0] if isinstance(c, CoverSpec)}
    premise, conclusion = next((p, c) for p, c in sorted(truth) if live[(p, c)])
    title = next(g.title for g in groups if g.event_id == premise)
    # every market of the premise event closed: the poller's delta carries no open market
    gone, _ = logic.on_item(event_group(Event(id=premise, slug="", title=title, closed=True, markets=())))
    touching = {k for k in truth if premise in k}
    assert {(f.implication.premise_event_id, f.implication.conclusion_event_id) for f in gone} == touching
    again = next(f for f in gone if f.implication.conclusion_event_id == conclusion)
    retracted = pairs[(premise, conclusion)].on_item(again)[0]
    assert all(isinstance(r, CoverRetracted) for r in retracted)
    assert {r.cover_id for r in retracted} == live[(premise, conclusion)]
    assert premise not in logic.state.groups and premise not in logic.index.words
    assert not any(premise in k for k in logic.state.found)
    assert all(premise not in logic.index.candidates(e, 40) for e in logic.state.groups)
    assert logic.on_item(event_group(Event(id=premise, slug="", title=title, closed=True, markets=())))[0] == []
    logic.close()
