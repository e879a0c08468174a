"""The implication prompt, candidate retrieval and answer parsing (pure; no I/O).

Prompt (in the spirit of the seed's): for one target group, a list of candidate group
titles; the model returns JSON only with two lists — `implied_by` (candidate YES makes the
target YES certain) and `implies` (target YES makes the candidate YES certain) — each item
naming the candidate's exact title, an explanation and a counterexample attempt; strict
logical necessity, no correlations, "when in doubt, leave it out".

Retrieval: a 5,000-group universe must not put 5,000 titles in every prompt. Candidates
are the groups sharing the most informative words with the target (an inverted index
over lower-cased title words without stop words, weighted by inverse document frequency),
at most `LLM_CANDIDATES_PER_TARGET` (default 40) per prompt; words too common to tell
groups apart only fill the list when the rarer words found fewer than that.

Answers are matched back to groups robustly: exact title, then case-insensitive, then
normalised (punctuation and spacing), then a unique substring match; anything else is
counted as unmatched and ignored.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from typing import Any

import orjson

from polyalphascan.records import Group, GroupImplication

PROMPT_VERSION = "v1"

SYSTEM_PROMPT = (
    "You find strict logical implications between prediction-market questions. "
    "A implies B only if A resolving YES makes B resolving YES logically certain under the "
    "markets' stated rules: no correlations, no 'likely', no causal stories. For every implication "
    "you propose, first try to construct a counterexample (a world where the premise is YES and the "
    "conclusion is NO); if you can, leave it out. When in doubt, leave it out. "
    "Answer with JSON only, no prose."
)

_STOP = {
    "will", "the", "a", "an", "of", "in", "on", "by", "be", "to", "and", "or", "for", "at", "is", "its", "who",
    "what", "which", "how", "before", "after", "than", "more", "less", "with", "from", "win", "wins", "winner",
    "2024", "2025", "2026", "2027", "2028", "2029", "2030", "above", "below", "over", "under", "yes", "no", "end",
    "this", "that", "does", "do", "reach", "dip", "hit", "happen", "any", "new",
}
_WORD = re.compile(r"[a-z0-9$][a-z0-9$.'&-]*")


def title_words(title: str) -> set[str]:
    return {w.strip(".'-") for w in _WORD.findall(title.lower()) if len(w) > 2 and w not in _STOP}


def normalise_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


class RetrievalIndex:
    """Inverted index of group titles for cheap candidate selection."""

    def __init__(self) -> None:
        self.words: dict[str, set[str]] = {}  # event id -> words
        self.postings: dict[str, set[str]] = defaultdict(set)  # word -> event ids

    def upsert(self, event_id: str, title: str) -> None:
        self.remove(event_id)
        words = title_words(title)
        self.words[event_id] = words
        for w in words:
            self.postings[w].add(event_id)

    def remove(self, event_id: str) -> None:
        for w in self.words.pop(event_id, set()):
            ids = self.postings.get(w)
            if ids is not None:
                ids.discard(event_id)
                if not ids:
                    del self.postings[w]

    def candidates(self, event_id: str, k: int) -> list[str]:
        """The `k` groups sharing the most informative words. Words in more than a fifth of
        the catalogue ("trump" among 5,000 political titles) only score groups that rarer
        words already found, unless those are fewer than `k`: then they fill up."""
        words = self.words.get(event_id, set())
        n = max(len(self.words), 1)
        scores: dict[str, float] = defaultdict(float)
        common: list[tuple[int, str]] = []
        for w in words:
            ids = self.postings.get(w, set())
            if len(ids) > max(50, n // 5):
                common.append((len(ids), w))
                continue
            idf = math.log(1 + n / len(ids))
            for other in ids:
                if other != event_id:
                    scores[other] += idf
        for size, w in sorted(common):  # rarest of the common words first
            idf = math.log(1 + n / size)
            fill = len(scores) < k
            for other in self.postings[w]:
                if other != event_id and (fill or other in scores):
                    scores[other] += idf
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [eid for eid, _ in ranked[:k]]


def build_messages(target_title: str, candidate_titles: list[str]) -> list[dict[str, str]]:
    lines = [f"TARGET: {target_title}", "CANDIDATES:"]
    lines += [f"{i}. {t}" for i, t in enumerate(candidate_titles, 1)]
    lines += [
        "",
        'Return {"implied_by": [...], "implies": [...]} where each item is '
        '{"title": "<exact candidate title>", "explanation": "...", "counterexample_attempt": "..."}.',
        "implied_by: candidates whose YES makes the TARGET's YES certain.",
        "implies: candidates whose YES is made certain by the TARGET's YES.",
        "Use only titles from CANDIDATES, copied exactly. Empty lists are a fine answer.",
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def parse_prompt(content: str) -> tuple[str, list[str]]:
    """The inverse of `build_messages` (used by the stand-in server)."""
    target = ""
    cands: list[str] = []
    in_list = False
    for line in content.splitlines():
        if line.startswith("TARGET: "):
            target = line[len("TARGET: "):]
        elif line.strip() == "CANDIDATES:":
            in_list = True
        elif in_list:
            m = re.match(r"^(\d+)\. (.*)$", line)
            if m:
                cands.append(m.group(2))
            elif line.strip() == "":
                in_list = False
    return target, cands


def cache_key(model: str, target_title: str, candidate_titles: list[str]) -> str:
    raw = orjson.dumps([model, PROMPT_VERSION, target_title, sorted(candidate_titles)])
    return hashlib.sha1(raw).hexdigest()


class LLMAnswerError(ValueError):
    """The model's answer is not the JSON we asked for."""


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = re.sub(r"^```[a-zA-Z]*\s*", "", t)
        t = re.sub(r"\s*```$", "", t)
    return t


def parse_answer(text: str) -> dict[str, list[dict[str, Any]]]:
    try:
        data = orjson.loads(_strip_fences(text))
    except orjson.JSONDecodeError as exc:
        raise LLMAnswerError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LLMAnswerError("not a JSON object")
    out: dict[str, list[dict[str, Any]]] = {}
    for key in ("implied_by", "implies"):
        items = data.get(key, [])
        if not isinstance(items, list):
            raise LLMAnswerError(f"{key} is not a list")
        out[key] = [i if isinstance(i, dict) else {"title": str(i)} for i in items]
    return out


def match_title(title: str, by_title: dict[str, str]) -> str | None:
    """Event id of the candidate `title` names: exact, case-insensitive, normalised, substring."""
    if title in by_title:
        return by_title[title]
    low = title.lower().strip()
    for t, eid in by_title.items():
        if t.lower() == low:
            return eid
    norm = normalise_title(title)
    for t, eid in by_title.items():
        if normalise_title(t) == norm:
            return eid
    if len(norm) >= 8:
        hits = {eid for t, eid in by_title.items() if norm in normalise_title(t) or normalise_title(t) in norm}
        if len(hits) == 1:
            return hits.pop()
    return None


def implications_from_answer(answer: dict[str, list[dict[str, Any]]], target: Group,
                             candidates: dict[str, str], model: str) -> tuple[list[GroupImplication], int]:
    """Group implications in the answer and how many titles could not be matched."""
    out: list[GroupImplication] = []
    unmatched = 0
    for direction in ("implied_by", "implies"):
        for item in answer.get(direction, []):
            other = match_title(str(item.get("title", "")), candidates)
            if other is None or other == target.event_id:
                unmatched += 1
                continue
            premise, conclusion = (other, target.event_id) if direction == "implied_by" else (target.event_id, other)
            out.append(GroupImplication(premise, conclusion, direction, target.event_id,
                                        str(item.get("explanation", ""))[:500],
                                        str(item.get("counterexample_attempt", ""))[:500], model, PROMPT_VERSION))
    return out, unmatched
