"""Bounds of the LLM path (issue 14): what a model or a market sends cannot make a prompt, a
match, a cache entry or a pair expansion big, and bad replies are counted, never raised past
the protocol layer. Property-based over replies (Hypothesis), targeted per bound; real HTTP
to the OpenAI-compatible stand-in over loopback where the client is under test."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import operators.llm_step as llm_step
from connectors.llm.client import ImplicationClient, LLMBadAnswer, LLMCache
from connectors.llm.protocol import (
    MAX_ANSWER_ITEMS,
    MAX_REPLY_BYTES,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    SYSTEM_PROMPT,
    LLMAnswerError,
    TitleIndex,
    build_messages,
    cache_key,
    implications_from_answer,
    item_cap,
    match_answer,
    parse_prompt,
    prompt_title,
    read_answer,
)
from operators.llm_step import CatalogLogic, LLMStepConfig, make_client
from operators.pairs import MAX_PAIRS_PER_IMPLICATION, capped_pairs, expand_implication
from operators.retrieval import MAX_WORDS, RetrievalIndex
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Group, GroupImplication, GroupMarket, PartitionType
from standins.llm_server import LLMServer

FAST = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CANDS = [f"Will candidate number {i} win the 2028 election?" for i in range(10)]


def client_for(metrics: MetricGroup, cache: LLMCache | None = None, url: str = "http://127.0.0.1:9/v1",
               **kw: Any) -> ImplicationClient:  # noqa: ANN401
    return ImplicationClient(base_url=url, api_key="standin-placeholder-key", model="m",
                             cache=cache or LLMCache(MetricGroup("cache")), metrics=metrics, timeout_s=10,
                             max_attempts=3, backoff_base=0.01, backoff_max=0.02, **kw)


def index_for(titles: list[str]) -> TitleIndex:
    return TitleIndex({prompt_title(t): t for t in titles})


# ------------------------------------------------------------------ property-based: replies
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
finite_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=5)
                           | st.dictionaries(st.text(max_size=10), kids, max_size=5), max_leaves=30)
wrong_items = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.lists(finite_scalars, max_size=3)
               | st.fixed_dictionaries({"title": st.none() | st.integers() | st.lists(st.text(max_size=5), max_size=2)}))


@FAST
@given(text=st.text(max_size=300) | json_values.map(json.dumps))
def test_any_text_is_read_or_refused_with_an_answer_error(text: str) -> None:
    rejected: Counter[str] = Counter()
    try:
        answer = read_answer(text, rejected=rejected)
    except LLMAnswerError:
        return
    assert set(answer) == {"implied_by", "implies"}
    for items in answer.values():
        assert all(isinstance(i["title"], str) and all(isinstance(v, str) for v in i.values()) for i in items)
    matched, unmatched = match_answer(answer, index_for(CANDS), rejected=rejected)
    assert all(i["title"] in CANDS for items in matched.values() for i in items)
    assert unmatched >= 0


@FAST
@given(value=json_values)
def test_match_answer_takes_any_json_value(value: Any) -> None:  # noqa: ANN401 - a cached entry from Redis
    rejected: Counter[str] = Counter()
    matched, _ = match_answer(value, index_for(CANDS), rejected=rejected)
    assert all(i["title"] in CANDS for items in matched.values() for i in items)
    imps, _ = implications_from_answer(value, Group("t", "T", PartitionType.SINGLE, ()),
                                       {t: str(n) for n, t in enumerate(CANDS)}, "m")
    assert all(i.premise_event_id in {str(n) for n in range(10)} | {"t"} for i in imps)


@FAST
@given(data=st.data(), wrong_type_field=st.booleans())
def test_valid_items_survive_wrong_types_and_unknown_titles(data: st.DataObject, wrong_type_field: bool) -> None:
    cap = item_cap(len(CANDS))
    valid = {d: data.draw(st.lists(st.sampled_from(CANDS), unique=True, max_size=4), label=d)
             for d in ("implied_by", "implies")}
    answer: dict[str, Any] = {}
    for d, titles in valid.items():
        junk = data.draw(st.lists(wrong_items, max_size=6), label=f"junk {d}")
        unknown = data.draw(st.lists(st.integers(0, 99).map(lambda i: f"qqq unknown question #{i}?"), max_size=4))
        items: list[Any] = [{"title": t, "explanation": "because", "counterexample_attempt": 5} for t in titles]
        items += junk + unknown
        items = data.draw(st.permutations(items), label=f"order {d}")
        assert len(items) <= cap
        answer[d] = items
    if wrong_type_field:
        answer["implies"] = {"not": "a list"}
        valid["implies"] = []

    def usable(i: Any) -> bool:  # noqa: ANN401
        return isinstance(i, str) or (isinstance(i, dict) and isinstance(i.get("title"), str))

    n_wrong = sum(not usable(i) for items in answer.values() if isinstance(items, list) for i in items)
    m = MetricGroup("llm")
    result = client_for(m).matched(json.dumps(answer), index_for(CANDS), cap)
    for d in ("implied_by", "implies"):
        items = answer[d] if isinstance(answer[d], list) else []
        assert [i["title"] for i in result[d]] == [i["title"] for i in items if usable(i) and i in valid[d]
                                                   or isinstance(i, dict) and i.get("title") in valid[d]]
        assert all(i["explanation"] == "because" and i["counterexample_attempt"] == "5" for i in result[d])
    assert m.get("rejected_answer_item") == n_wrong
    assert m.get("rejected_answer_field") == (1 if wrong_type_field else 0)
    assert m.get("rejected_too_many_items") == 0


@FAST
@given(titles=st.lists(st.text(max_size=50), max_size=6), target=st.text(max_size=50))
def test_prompt_titles_are_clean_and_the_prompt_round_trips(titles: list[str], target: str) -> None:
    shown = [prompt_title(t) for t in titles]
    assert all(prompt_title(s) == s and len(s) <= MAX_TITLE_CHARS for s in shown)  # idempotent, capped
    content = build_messages(target, titles)[1]["content"]
    got_target, got = parse_prompt(content)
    assert got_target == prompt_title(target)
    assert got == shown  # no title can add or split a line
    orjson.dumps(cache_key("m", target, titles))  # no surrogate can break the key


# ------------------------------------------------------------------ reply size and item caps
def test_an_oversized_reply_is_refused_unread_and_counted() -> None:
    m = MetricGroup("llm")
    big = orjson.dumps({"implied_by": [{"title": CANDS[0], "explanation": "x" * MAX_REPLY_BYTES}]}).decode()
    with pytest.raises(LLMBadAnswer) as err:
        client_for(m).matched(big, index_for(CANDS), item_cap(10))
    assert err.value.kind == "reply_too_large" and not err.value.retryable
    assert m.get("rejected_reply_too_large") == 1
    # multi-byte characters count as bytes, not characters
    wide = '{"implies": [], "x": "' + "€" * (MAX_REPLY_BYTES // 3 + 10) + '"}'
    assert len(wide) < MAX_REPLY_BYTES
    with pytest.raises(LLMBadAnswer):
        client_for(m).matched(wide, index_for(CANDS), item_cap(10))
    assert m.get("rejected_reply_too_large") == 2


def test_200k_items_keep_the_cap_and_the_valid_ones_are_matched() -> None:
    items: list[Any] = [{"title": CANDS[3], "explanation": "e"}, CANDS[4].lower()] + ["x"] * 200_000
    text = orjson.dumps({"implied_by": items, "implies": [1] * 50_000}).decode()
    assert len(text) < MAX_REPLY_BYTES
    m = MetricGroup("llm")
    cap = item_cap(len(CANDS))
    result = client_for(m).matched(text, index_for(CANDS), cap)
    assert [i["title"] for i in result["implied_by"]] == [CANDS[3], CANDS[4]] and result["implies"] == []
    assert m.get("rejected_too_many_items") == (200_002 - cap) + (50_000 - cap)
    assert m.get("unmatched_titles") == cap - 2  # the kept "x" items
    assert m.get("rejected_answer_item") == cap  # the kept 1s
    assert cap == 28 and item_cap(10**6) == MAX_ANSWER_ITEMS
    # the worker's own pass over an answer (e.g. from Redis) keeps the same cap
    rejected: Counter[str] = Counter()
    imps, unmatched = implications_from_answer({"implied_by": items}, Group("t", "T", PartitionType.SINGLE, ()),
                                               {t: str(n) for n, t in enumerate(CANDS)}, "m", rejected=rejected)
    assert [i.premise_event_id for i in imps] == ["3", "4"] and unmatched == cap - 2
    assert rejected["too_many_items"] == 200_002 - cap


def test_substring_matching_is_budgeted_per_answer() -> None:
    near = [f"Candidate number {i % 10} win the 2028 election extra words {i}" for i in range(500)]
    rejected: Counter[str] = Counter()
    matched, unmatched = match_answer({"implies": near}, index_for(CANDS), max_items=500, rejected=rejected)
    assert rejected["match_budget"] == 500 - 64 and unmatched + sum(len(v) for v in matched.values()) + \
        rejected["duplicate_item"] == 500


# ------------------------------------------------------------------ titles in prompts
@pytest.fixture()
def _settle_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_step, "SETTLE_S", 3600.0)  # everything is asked at EOF, against the whole catalogue


class RecordingClient:
    """Records what the step asks; answers nothing."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    async def ask(self, target: str, candidates: list[str]) -> dict[str, Any]:
        self.asked.append((target, candidates))
        return {"implied_by": [], "implies": []}

    async def aclose(self) -> None:
        pass


def single(eid: str, title: str) -> Group:
    return Group(eid, title, PartitionType.SINGLE, (GroupMarket(f"m{eid}", title, "", f"y{eid}", f"n{eid}"),))


@pytest.mark.usefixtures("_settle_never")
def test_a_1mb_title_cannot_inflate_any_prompt() -> None:
    huge = "Will Zorkland election results " + "\x00\n\u2028 zorkland " * 90_000 + "?"
    assert len(huge) > 1_000_000
    groups = [single("huge", huge)] + [single(str(i), f"Zorkland election question {i}?") for i in range(30)]
    config = LLMStepConfig(base_url="http://127.0.0.1:9/v1", api_key="k", model="m", candidates_per_target=40)
    client = RecordingClient()
    logic = CatalogLogic(config, lambda: client, None, metrics=MetricGroup("llm"))  # type: ignore[arg-type, return-value]
    for g in groups:
        logic.on_item(g)
    logic.on_eof()
    assert len(client.asked) == len(groups)
    shown_huge = prompt_title(huge)
    assert len(shown_huge) == MAX_TITLE_CHARS and "\n" not in shown_huge
    bound = len(SYSTEM_PROMPT) + 600 + (40 + 1) * (MAX_TITLE_CHARS + 8)
    for target, cands in client.asked:
        assert all(len(c) <= MAX_TITLE_CHARS for c in cands) and len(target) <= MAX_TITLE_CHARS
        assert sum(len(m["content"]) for m in build_messages(target, cands)) <= bound
    assert sum(shown_huge in c for _t, c in client.asked) == 30  # it is still a candidate, at its capped length
    assert shown_huge in {t for t, _c in client.asked}
    assert len(logic.index.words["huge"]) <= MAX_WORDS


def test_retrieval_indexes_a_bounded_part_of_a_title() -> None:
    index = RetrievalIndex()
    index.upsert("x", " ".join(f"word{i}" for i in range(100_000)))
    assert len(index.words["x"]) == MAX_WORDS and len(index.postings) == MAX_WORDS


# ------------------------------------------------------------------ requests and cache, over loopback
class ScriptedServer(LLMServer):
    """Answers every request with `reply`, recording request bodies."""

    reply: str = "{}"

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.stats.requests += 1
        return web.json_response(self._completion(self.reply, str(body.get("model")), 10))


@pytest.fixture()
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer(None) as s:  # type: ignore[arg-type]
        s.bodies = []
        yield s


def ask(client: ImplicationClient, target: str, cands: list[str]) -> Any:  # noqa: ANN401
    from connectors.llm.runner import AsyncRunner

    runner = AsyncRunner(1)
    try:
        return runner.submit(lambda: client.ask(target, cands)).result(timeout=30)
    except Exception as exc:  # noqa: BLE001
        return exc
    finally:
        runner.stop(cleanup=client.aclose)


def test_requests_carry_max_tokens(scripted: ScriptedServer) -> None:
    scripted.reply = '{"implied_by": [], "implies": []}'
    config = LLMStepConfig(base_url=scripted.url, api_key="k", model="m", max_tokens=321)
    client = make_client(config, MetricGroup("llm"), MetricGroup("cache"))
    assert ask(client, "T", CANDS) == {"implied_by": [], "implies": []}
    assert [b["max_tokens"] for b in scripted.bodies] == [321]
    assert LLMStepConfig(base_url="u", api_key=None, model="m").max_tokens == 2048


def test_only_the_matched_result_is_cached(scripted: ScriptedServer) -> None:
    junk = [{"title": f"unknown {i}", "explanation": "y" * 400} for i in range(1000)]
    scripted.reply = orjson.dumps({"implied_by": junk[:10] + [{"title": CANDS[1], "explanation": "z" * 900}],
                                   "implies": [CANDS[2]] + junk[10:]}).decode()
    cache = LLMCache(MetricGroup("cache"))
    m = MetricGroup("llm")
    got = ask(client_for(m, cache, scripted.url), "T", CANDS)
    want = {"implied_by": [{"title": CANDS[1], "explanation": "z" * MAX_TEXT_CHARS, "counterexample_attempt": ""}],
            "implies": [{"title": CANDS[2], "explanation": "", "counterexample_attempt": ""}]}
    assert got == want
    ((key, raw),) = cache._lru.items()
    assert key == cache_key("m", "T", CANDS) and orjson.loads(raw) == want and len(raw) < 1_000
    assert cache.bytes == len(raw) + len(key)
    assert m.get("rejected_too_many_items") == 991 - 28  # implies: 991 items, implied_by: 11 (under the cap)
    assert m.get("unmatched_titles") == 10 + 27


def test_an_oversized_reply_fails_at_once_and_caches_nothing(scripted: ScriptedServer) -> None:
    scripted.reply = orjson.dumps({"implies": [CANDS[0]], "pad": "x" * (MAX_REPLY_BYTES + 1)}).decode()
    cache = LLMCache(MetricGroup("cache"))
    m = MetricGroup("llm")
    got = ask(client_for(m, cache, scripted.url), "T", CANDS)
    assert isinstance(got, LLMBadAnswer) and got.kind == "reply_too_large"
    assert scripted.stats.requests == 1 and m.get("rejected_reply_too_large") == 1
    assert m.get("failures_reply_too_large") == 1 and not cache._lru


def test_the_in_memory_cache_is_bounded_in_bytes() -> None:
    cm = MetricGroup("cache")
    cache = LLMCache(cm, max_entries=1_000_000, max_bytes=10_000)
    entry = {"implied_by": [{"title": "t" * 400}], "implies": []}
    entry_bytes = len(orjson.dumps(entry)) + len("k000")
    for i in range(100):
        cache.put(f"k{i:03d}", entry)
        assert cache.bytes <= 10_000
    kept = 10_000 // entry_bytes
    assert len(cache._lru) == kept and cache.bytes == kept * entry_bytes
    assert cache.evictions == 100 - kept and cm.get("evictions") == 100 - kept and cm.get("bytes") == cache.bytes
    assert cache.get("k099") == entry and cache.get("k000") is None
    cache.put("big", {"implied_by": [{"title": "b" * 20_000}]})  # larger than the whole bound: not cached
    assert cm.get("rejected_entry_too_large") == 1 and "big" not in cache._lru and len(cache._lru) == kept
    cache.put("k099", entry)  # replacing an entry does not count it twice
    assert cache.bytes == kept * entry_bytes


def test_an_unreadable_cache_entry_is_a_miss() -> None:
    cm = MetricGroup("cache")
    cache = LLMCache(cm)
    cache._lru["bad"] = b"\xff not json"
    cache._lru["list"] = b"[1]"
    assert cache.get("bad") is None and cache.get("list") is None
    assert cm.get("rejected_cache_entry") == 2 and cm.get("misses") == 2


# ------------------------------------------------------------------ pairs per implication
def wide(eid: str, n: int) -> Group:
    ms = tuple(GroupMarket(f"{eid}{i}", f"Q{i}", f"Outcome {i}", f"{eid}y{i}", f"{eid}n{i}") for i in range(n))
    return Group(eid, f"Event {eid}", PartitionType.CANDIDATE, ms, mutually_exclusive=False)


def test_covers_per_implication_are_capped_and_the_excess_counted() -> None:
    p, c = wide("p", 60), Group("c", "Event c", PartitionType.TIMEFRAME, wide("c", 60).markets)
    m = MetricGroup("llm")
    covers = expand_implication(GroupImplication("p", "c", "implies", "p"), p, c, 0.9, metrics=m)
    assert len(covers) == MAX_PAIRS_PER_IMPLICATION == 100
    assert m.get("rejected_pairs_over_cap") == 60 * 60 - 100
    assert [cv.legs[1].market_id for cv in covers[:61]] == ["p0"] * 60 + ["p1"]  # the first pairs in market order
    kept, excess = capped_pairs(p, c, 10)
    assert len(kept) == 10 and excess == 3590
    # under the cap nothing is dropped or counted
    small = expand_implication(GroupImplication("p", "c", "implies", "p"), wide("p", 5), Group(
        "c", "c", PartitionType.TIMEFRAME, wide("c", 5).markets), 0.9, metrics=m)
    assert len(small) == 25 and m.get("rejected_pairs_over_cap") == 3500
