"""The implication prompt, retrieval and answer parsing, value by value: the LLM wire protocol
(connectors/llm/protocol.py) and candidate retrieval (operators/retrieval.py).

Pure and fast: no server, no Redis. Each test pins a value a plausible bug would change
(a word kept or dropped, a candidate ranked above another, a title matched to the wrong group,
the prompt text the cache key's PROMPT_VERSION stands for). Ported from tests/test_llm_prompt.py
(operators/llm_prompt.py); where the protocol deliberately changed (wrong-typed items dropped
and counted, a list that is not a list read as empty, titles cleaned in prompts) the expected
values follow the new module's documented rules."""

from __future__ import annotations

from collections import Counter

import pytest

from connectors.llm.protocol import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    LLMAnswerError,
    build_messages,
    implications_from_answer,
    match_title,
    normalise_title,
    parse_answer,
    parse_prompt,
    prompt_title,
    read_answer,
)
from operators.retrieval import RetrievalIndex, title_words
from polyalphascan.records import Group, PartitionType


# ------------------------------------------------------------------ words
def test_title_words_drop_short_and_stop_words_and_trim_punctuation() -> None:
    assert title_words("Will the U.S. GDP grow in 2025?") == {"u.s", "gdp", "grow"}
    assert title_words("AI beats 'Magnus' at chess") == {"beats", "magnus", "chess"}


def test_normalise_title_keeps_only_lower_case_letters_digits_and_single_spaces() -> None:
    assert normalise_title("  Bitcoin -- above $100k,  on Dec. 31?  ") == "bitcoin above 100k on dec 31"


# ------------------------------------------------------------------ retrieval
def index_of(titles: dict[str, str]) -> RetrievalIndex:
    index = RetrievalIndex()
    for eid, title in titles.items():
        index.upsert(eid, title)
    return index


def test_upsert_replaces_the_old_title_words() -> None:
    index = index_of({"a": "bitcoin price", "b": "bitcoin halving", "c": "ethereum merge"})
    index.upsert("a", "ethereum price")
    assert index.words["a"] == {"ethereum", "price"}
    assert index.postings["bitcoin"] == {"b"}
    assert index.candidates("b", 5) == []
    assert index.candidates("c", 5) == ["a"]


def test_unknown_event_has_no_candidates() -> None:
    assert index_of({"a": "bitcoin price", "b": "bitcoin halving"}).candidates("zzz", 5) == []


def commonness_probe(n_total: int, df: int) -> str:
    """The best candidate of `t` when its words "alpha" and "gamma" are each in `df` titles
    (t and the a-groups) and its word "zeta" in `df - 5` (t and the z-groups): if alpha and
    gamma count as informative the a-groups (two shared words) win, if they are too common
    (in more than max(50, n/5) titles) they score nobody the rare word "zeta" did not find."""
    titles = {"t": "alpha gamma zeta"}
    titles |= {f"a{i:03}": "alpha gamma" for i in range(1, df)}
    titles |= {f"z{i:03}": "zeta" for i in range(1, df - 5)}
    titles |= {f"f{i:03}": f"filler{i:03}" for i in range(n_total - len(titles))}
    index = index_of(titles)
    assert len(index.words) == n_total
    return index.candidates("t", 1)[0]


@pytest.mark.parametrize(("n_total", "df", "best"), [
    (100, 50, "a001"),  # in exactly 50 of 100 titles: still informative
    (100, 51, "z001"),  # in 51: too common
    (300, 60, "a001"),  # the bound grows to a fifth of the catalogue: 60 of 300 informative
    (300, 61, "z001"),
    (300, 55, "a001"),
])
def test_a_word_is_too_common_in_more_than_max_50_or_a_fifth_of_titles(n_total: int, df: int, best: str) -> None:
    assert commonness_probe(n_total, df) == best


def test_rare_words_weigh_more_and_scores_add_up() -> None:
    # x shares a word found in 2 titles, y two words found in 4 each, w one word found in 4
    titles = {"t": "xenon yak1 yak2", "x": "xenon"}
    titles |= {f"y{i}": "yak1 yak2" for i in range(3)}
    titles |= {f"w{i}": "yak1" for i in range(3, 5)}  # yak1 is in 6 titles
    titles |= {f"f{i}": f"filler{i}" for i in range(10)}
    index = index_of(titles)
    # n = 20: xenon log(1 + 20/2) = 2.40; yak2 log(1 + 20/4) = 1.79, yak1 log(1 + 20/6) = 1.47
    assert index.candidates("t", 10) == ["y0", "y1", "y2", "x", "w3", "w4"]


def test_idf_is_log_of_one_plus_catalogue_over_document_frequency() -> None:
    # z: one word in 10 of 100 titles, log(11) = 2.40; a: two words in 50 of 100, 2 log(3) = 2.20
    titles = {"t": "alpha gamma zeta"}
    titles |= {f"a{i:02}": "alpha gamma" for i in range(1, 50)}
    titles |= {f"z{i:02}": "zeta" for i in range(1, 10)}
    titles |= {f"f{i:02}": f"filler{i:02}" for i in range(100 - len(titles))}
    assert index_of(titles).candidates("t", 1) == ["z01"]


def test_common_words_score_with_the_same_idf_when_they_fill() -> None:
    # n = 300: "com1" and "com2" are each in 100 titles (too common): p-groups score
    # 2 log(1 + 3) = 2.77 when they fill; q-groups share the rare "quark" (16 titles) log(19.75) = 2.98
    titles = {"t": "quark com1 com2"}
    titles |= {f"p{i:02}": "com1 com2" for i in range(1, 100)}
    titles |= {f"q{i:02}": "quark" for i in range(1, 16)}
    titles |= {f"f{i:03}": f"filler{i:03}" for i in range(300 - len(titles))}
    got = index_of(titles).candidates("t", 20)
    assert got == [f"q{i:02}" for i in range(1, 16)] + [f"p{i:02}" for i in range(1, 6)]


def test_common_words_only_boost_found_groups_once_k_are_found() -> None:
    # n = 300; "rare" finds r1..r3 (k = 3 already); r3 also has common words, so it ranks
    # first; the c-groups with five common words each would outscore the r-groups but are
    # never added: rare words found enough
    titles = {"t": "rare com1 com2 com3 com4 com5", "r1": "rare", "r2": "rare", "r3": "rare com1"}
    titles |= {f"c{i:02}": "com1 com2 com3 com4 com5" for i in range(1, 99)}
    titles |= {f"f{i:03}": f"filler{i:03}" for i in range(300 - len(titles))}
    index = index_of(titles)
    assert len(index.postings["com1"]) == 100
    assert index.candidates("t", 3) == ["r3", "r1", "r2"]
    assert index.candidates("t", 2) == ["r3", "r1"]
    # k = 4: rare words found fewer, the common words fill (never the target itself)
    assert index.candidates("t", 4) == ["c01", "c02", "c03", "c04"]
    everyone = index.candidates("t", 500)
    assert len(everyone) == 101 and "t" not in everyone


def test_ties_rank_by_event_id() -> None:
    titles = {"t": "topic"} | {f"e{i}": "topic" for i in (7, 3, 9, 1, 5, 8, 2, 6, 4)}
    assert index_of(titles).candidates("t", 9) == [f"e{i}" for i in range(1, 10)]


# ------------------------------------------------------------------ prompt
def test_the_prompt_text_is_pinned_to_its_version() -> None:
    """Cached answers are keyed by PROMPT_VERSION: a change to this text must bump it."""
    assert PROMPT_VERSION == "v1"
    msgs = build_messages("Will X win?", ["Will X win the nomination?", "Will Y win?"])
    assert msgs == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": (
            "TARGET: Will X win?\n"
            "CANDIDATES:\n"
            "1. Will X win the nomination?\n"
            "2. Will Y win?\n"
            "\n"
            'Return {"implied_by": [...], "implies": [...]} where each item is '
            '{"title": "<exact candidate title>", "explanation": "...", "counterexample_attempt": "..."}.\n'
            "implied_by: candidates whose YES makes the TARGET's YES certain.\n"
            "implies: candidates whose YES is made certain by the TARGET's YES.\n"
            "Use only titles from CANDIDATES, copied exactly. Empty lists are a fine answer.")},
    ]


def test_parse_prompt_reads_only_the_candidate_list() -> None:
    content = "1. not a candidate\nTARGET: T?\nCANDIDATES:\n1. A?\n2. B?\n\n3. after the list\nTARGET: "
    assert parse_prompt(content) == ("", ["A?", "B?"])
    assert parse_prompt("no prompt here") == ("", [])
    assert parse_prompt("TARGET: T?\nCANDIDATES:\n1. A?\nnot numbered\n2. B?") == ("T?", ["A?", "B?"])


def test_parse_prompt_reads_back_the_titles_as_the_prompt_shows_them() -> None:
    target, cands = "Will X\nwin?", ["Will  X win\u2028the nomination?\x00", "Y" * 400]
    content = build_messages(target, cands)[1]["content"]
    assert parse_prompt(content) == (prompt_title(target), [prompt_title(c) for c in cands])
    assert parse_prompt(content) == ("Will X win?", ["Will X win the nomination?", "Y" * 300])


# ------------------------------------------------------------------ answers
def test_fenced_answers_with_any_language_tag_parse() -> None:
    text = '```JSON\n{"implied_by": [{"title": "a"}], "implies": []}\n```'
    assert parse_answer(text) == {"implied_by": [{"title": "a"}], "implies": []}


def test_missing_lists_are_empty_and_bare_string_items_become_titles() -> None:
    assert parse_answer('{"implies": []}') == {"implied_by": [], "implies": []}
    # a bare string is a title; an item that is neither an object nor a string is dropped and counted
    rejected: Counter[str] = Counter()
    assert read_answer('{"implied_by": ["A?", 3]}', rejected=rejected) == {"implied_by": [{"title": "A?"}],
                                                                             "implies": []}
    assert rejected == Counter({"answer_item": 1})
    assert parse_answer('{"implied_by": ["A?", 3]}') == {"implied_by": [{"title": "A?"}], "implies": []}


def test_malformed_answers_say_what_is_wrong() -> None:
    with pytest.raises(LLMAnswerError, match="^not JSON: "):
        parse_answer("Sure! {implied_by: [")
    with pytest.raises(LLMAnswerError, match="^not a JSON object$"):
        parse_answer("[1, 2]")


def test_a_list_that_is_not_a_list_reads_as_empty_and_is_counted() -> None:
    rejected: Counter[str] = Counter()
    answer = read_answer('{"implied_by": [{"title": "B?"}], "implies": "A?"}', rejected=rejected)
    assert answer == {"implied_by": [{"title": "B?"}], "implies": []}
    assert rejected == Counter({"answer_field": 1})


def test_case_insensitive_match_comes_before_normalised_match() -> None:
    by = {"A-B test": "e1", "a b test": "e2"}
    assert match_title("A B TEST", by) == "e2"
    assert match_title("  a-b TEST ", by) == "e1"


def test_substring_match_needs_eight_normalised_characters() -> None:
    by = {"Abcd efgh ijk": "e1", "Other title": "e2"}
    assert match_title("abcd efg", by) == "e1"  # 8 characters
    assert match_title("abcd ef", by) is None  # 7


def test_implications_keep_texts_truncated_and_default_to_empty() -> None:
    target = Group("10", "T", PartitionType.SINGLE, ())
    answer = {"implies": [{"title": "A", "counterexample_attempt": "c" * 600}, {"title": "B", "explanation": "why"},
                          {"explanation": "no title"}]}
    rejected: Counter[str] = Counter()
    imps, unmatched = implications_from_answer(answer, target, {"A": "1", "B": "2", "None": "3"}, "m",
                                               rejected=rejected)
    # the item without a title matches nothing, not even a group titled "None": it is a
    # wrong-typed item (dropped, counted `answer_item`), not an unmatched title
    assert unmatched == 0
    assert rejected == Counter({"answer_item": 1})
    assert [(i.premise_event_id, i.conclusion_event_id, i.explanation, i.counterexample) for i in imps] == [
        ("10", "1", "", "c" * 500), ("10", "2", "why", "")]
    assert all(i.model == "m" and i.prompt_version == PROMPT_VERSION and i.target_event_id == "10" for i in imps)
