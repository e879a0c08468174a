"""The LLM wire protocol: the implication prompt, the answer's JSON, the cache key (pure; no I/O).

Prompt: for one target group, a list of candidate group titles; the model returns JSON only
with two lists — `implied_by` (candidate YES makes the target YES certain) and `implies`
(target YES makes the candidate YES certain) — each item naming the candidate's exact title,
an explanation and a counterexample attempt; strict logical necessity, no correlations,
"when in doubt, leave it out". `parse_prompt` is the inverse of `build_messages` (the
OpenAI-compatible stand-in reads prompts with it).

Answers are matched back to groups robustly: exact title, then case-insensitive, then
normalised (punctuation and spacing), then a unique substring match; anything else is
counted as unmatched and ignored. An answer that is not the JSON asked for raises
`LLMAnswerError`.

Errors of the LLM system share one base, `LLMError`: `LLMAnswerError` (here) for an answer
that cannot be read, `LLMFailure` and its kinds (connectors/llm/client.py) for a request
that produced no answer.
"""

from __future__ import annotations

import hashlib
import re
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


def normalise_title(title: str) -> str:
    """Lower case, punctuation and spacing folded to single spaces (for matching titles)."""
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def build_messages(target_title: str, candidate_titles: list[str]) -> list[dict[str, str]]:
    """The chat messages asking which candidates imply, or are implied by, the target."""
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
    """Stable key of one question: model, prompt version, target and the candidate set (order-free)."""
    raw = orjson.dumps([model, PROMPT_VERSION, target_title, sorted(candidate_titles)])
    return hashlib.sha1(raw).hexdigest()


class LLMError(Exception):
    """Base of every error of the LLM system (answers that cannot be read, failed requests)."""


class LLMAnswerError(LLMError, ValueError):
    """The model's answer is not the JSON we asked for."""


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = re.sub(r"^```[a-zA-Z]*\s*", "", t)
        t = re.sub(r"\s*```$", "", t)
    return t


def parse_answer(text: str) -> dict[str, list[dict[str, Any]]]:
    """`{"implied_by": [...], "implies": [...]}` from the model's text (code fences allowed);
    items that are not objects become `{"title": str(item)}`. Raises `LLMAnswerError`."""
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
