"""The LLM wire protocol: the implication prompt, the answer's JSON, the cache key (pure; no I/O).

Prompt: for one target group, a list of candidate group titles; the model returns JSON only
with two lists — `implied_by` (candidate YES makes the target YES certain) and `implies`
(target YES makes the candidate YES certain) — each item naming the candidate's exact title,
an explanation and a counterexample attempt; strict logical necessity, no correlations,
"when in doubt, leave it out". `parse_prompt` is the inverse of `build_messages` (the
OpenAI-compatible stand-in reads prompts with it).

Bounds (nothing a market or a model sends can make a prompt, a match or a cache entry big):
- titles enter a prompt through `prompt_title` — control, line-separator and surrogate
  characters become spaces, spacing is folded, and at most `MAX_TITLE_CHARS` characters are
  kept — so a 1 MB title costs one line of at most that length (`build_messages` applies it
  to every title it is given; the step computes it once per catalogue entry);
- a reply longer than `MAX_REPLY_BYTES` (UTF-8) is refused before it is parsed
  (`LLMReplyTooLarge`, counted `rejected_reply_too_large` by the client);
- each list keeps at most `item_cap(len(candidates))` items (2 per candidate + 8, at most
  `MAX_ANSWER_ITEMS`); the excess is counted `rejected_too_many_items`;
- items of the wrong type (not an object or a string, a title that is not a string) are
  dropped (`rejected_answer_item`), a list that is not a list is read as empty
  (`rejected_answer_field`); only a reply that is not a JSON object at all raises.

Answers are matched back to candidates robustly and in bounded time (`TitleIndex`, built once
per prompt): exact title, then case-insensitive, then normalised (punctuation and spacing) —
three dict look-ups per item — then a unique substring match, tried for at most
`MAX_FUZZY_MATCHES` items per answer (the rest: `rejected_match_budget`); anything else is
counted as unmatched (`unmatched_titles`) and ignored. `match_answer` keeps only matched items,
each under the candidate's exact title with explanation and counterexample cut to
`MAX_TEXT_CHARS`: that, never the raw reply, is what the client caches.

Errors of the LLM system share one base, `LLMError`: `LLMAnswerError` (here) for an answer
that cannot be read, `LLMFailure` and its kinds (connectors/llm/client.py) for a request
that produced no answer.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any

import orjson

from polyalphascan.records import Group, GroupImplication

PROMPT_VERSION = "v1"

#: the longest title a prompt shows (characters; longer titles are cut)
MAX_TITLE_CHARS = 300
#: the largest reply read (UTF-8 bytes): a full answer over 1,000 candidates fits many times over
MAX_REPLY_BYTES = 1 << 20
#: the most items read from one list of an answer, whatever the number of candidates
MAX_ANSWER_ITEMS = 2_000
#: answer items whose title needs the substring match (O(candidates) each), per answer
MAX_FUZZY_MATCHES = 64
#: explanation and counterexample kept per item (characters)
MAX_TEXT_CHARS = 500
DIRECTIONS = ("implied_by", "implies")
_TEXT_FIELDS = ("explanation", "counterexample_attempt")

SYSTEM_PROMPT = (
    "You find strict logical implications between prediction-market questions. "
    "A implies B only if A resolving YES makes B resolving YES logically certain under the "
    "markets' stated rules: no correlations, no 'likely', no causal stories. For every implication "
    "you propose, first try to construct a counterexample (a world where the premise is YES and the "
    "conclusion is NO); if you can, leave it out. When in doubt, leave it out. "
    "Answer with JSON only, no prose."
)

# C0/C1 controls, Unicode line/paragraph separators (str.splitlines splits on them) and lone surrogates
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
_SPACES = re.compile(r"\s+")


def prompt_title(title: str, max_chars: int = MAX_TITLE_CHARS) -> str:
    """A title as a prompt shows it: control characters out, spacing folded, at most
    `max_chars` characters. Idempotent; costs O(max_chars) whatever the title's length."""
    t = _CONTROL.sub(" ", title[: max_chars * 4])
    t = _SPACES.sub(" ", t).strip()
    return t[:max_chars].rstrip()


def normalise_title(title: str) -> str:
    """Lower case, punctuation and spacing folded to single spaces (for matching titles)."""
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def item_cap(n_candidates: int) -> int:
    """Items read per answer list for a prompt with `n_candidates` candidates."""
    return min(MAX_ANSWER_ITEMS, 2 * max(n_candidates, 0) + 8)


def build_messages(target_title: str, candidate_titles: list[str]) -> list[dict[str, str]]:
    """The chat messages asking which candidates imply, or are implied by, the target. Every
    title goes through `prompt_title`: the user message is at most about
    (len(candidates) + 1) × (MAX_TITLE_CHARS + 8) characters plus the fixed instructions."""
    lines = [f"TARGET: {prompt_title(target_title)}", "CANDIDATES:"]
    lines += [f"{i}. {prompt_title(t)}" for i, t in enumerate(candidate_titles, 1)]
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
    raw = orjson.dumps([model, PROMPT_VERSION, prompt_title(target_title),
                        sorted(prompt_title(t) for t in candidate_titles)])
    return hashlib.sha1(raw).hexdigest()


class LLMError(Exception):
    """Base of every error of the LLM system (answers that cannot be read, failed requests)."""


class LLMAnswerError(LLMError, ValueError):
    """The model's answer is not the JSON we asked for."""


class LLMReplyTooLarge(LLMAnswerError):
    """The reply is over the byte cap: refused unread."""


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = re.sub(r"^```[a-zA-Z]*\s*", "", t)
        t = re.sub(r"\s*```$", "", t)
    return t


def _text(value: Any) -> str:
    """An explanation field: strings and scalars as text (cut), anything else empty."""
    if isinstance(value, str):
        return value[:MAX_TEXT_CHARS]
    if isinstance(value, (int, float, bool)):
        return str(value)[:MAX_TEXT_CHARS]
    return ""


def read_answer(text: str, *, max_bytes: int = MAX_REPLY_BYTES, max_items: int = MAX_ANSWER_ITEMS,
                rejected: Counter[str] | None = None) -> dict[str, list[dict[str, str]]]:
    """`{"implied_by": [...], "implies": [...]}` from the model's text (code fences allowed),
    every item `{"title"}` plus the text fields it has, as strings (cut). Oversized
    replies raise `LLMReplyTooLarge`; text that is not a JSON object raises `LLMAnswerError`;
    everything else is read as far as it is usable, the rest counted in `rejected`
    (`too_many_items`, `answer_item`, `answer_field`)."""
    counts: Counter[str] = rejected if rejected is not None else Counter()
    if not isinstance(text, str):
        raise LLMAnswerError(f"not text: {type(text).__name__}")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise LLMReplyTooLarge(f"reply over {max_bytes} bytes")
    try:
        data = orjson.loads(_strip_fences(text))
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise LLMAnswerError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise LLMAnswerError("not a JSON object")
    out: dict[str, list[dict[str, str]]] = {}
    for key in DIRECTIONS:
        items = data.get(key, [])
        if not isinstance(items, list):
            counts["answer_field"] += 1
            items = []
        if len(items) > max_items:
            counts["too_many_items"] += len(items) - max_items
            items = items[:max_items]
        kept: list[dict[str, str]] = []
        for item in items:
            if isinstance(item, str):
                kept.append({"title": item})
            elif isinstance(item, dict) and isinstance(item.get("title"), str):
                kept.append({"title": item["title"]} | {f: _text(item[f]) for f in _TEXT_FIELDS if f in item})
            else:
                counts["answer_item"] += 1
        out[key] = kept
    return out


def parse_answer(text: str, *, max_bytes: int = MAX_REPLY_BYTES,
                 max_items: int = MAX_ANSWER_ITEMS) -> dict[str, list[dict[str, str]]]:
    """`read_answer` without the rejection counts. Raises `LLMAnswerError`."""
    return read_answer(text, max_bytes=max_bytes, max_items=max_items)


class TitleIndex:
    """Candidate titles → values, with the look-ups of `match` computed once (per prompt)."""

    def __init__(self, by_title: dict[str, str]) -> None:
        self.exact = by_title
        self.lower: dict[str, str] = {}
        self.norm: dict[str, str] = {}
        for t, v in by_title.items():
            self.lower.setdefault(t.lower().strip(), v)
            self.norm.setdefault(normalise_title(t), v)
        self.norm_items = list(self.norm.items())
        self.max_len = max((len(t) for t in by_title), default=0)

    def lookup(self, title: str) -> tuple[str | None, str]:
        """(value, normalised title) by exact, case-insensitive or normalised title: O(len(title))."""
        if title in self.exact:
            return self.exact[title], ""
        if len(title) > 4 * max(self.max_len, MAX_TITLE_CHARS):
            return None, ""  # far longer than any candidate: cannot name one
        hit = self.lower.get(title.lower().strip())
        if hit is not None:
            return hit, ""
        norm = normalise_title(title)
        return self.norm.get(norm), norm

    def substring(self, norm: str) -> str | None:
        """The one candidate whose normalised title contains, or is contained in, `norm`
        (at least 8 characters). O(candidates × title length)."""
        if len(norm) < 8:
            return None
        hits = {v for t, v in self.norm_items if norm in t or t in norm}
        return hits.pop() if len(hits) == 1 else None

    def match(self, title: str) -> str | None:
        hit, norm = self.lookup(title)
        if hit is None and norm:
            hit = self.substring(norm)
        return hit


def match_title(title: str, by_title: dict[str, str]) -> str | None:
    """Event id of the candidate `title` names: exact, case-insensitive, normalised, substring.
    (One-off; for many items build a `TitleIndex` once.)"""
    return TitleIndex(by_title).match(title)


def match_answer(answer: Any, index: TitleIndex, *, max_items: int = MAX_ANSWER_ITEMS,
                 rejected: Counter[str] | None = None,
                 exclude: str | None = None) -> tuple[dict[str, list[dict[str, str]]], int]:
    """Only the matched items of `answer` (any value: a cached entry is read the same way), each
    `{"title": <the matched candidate's value in index>, "explanation", "counterexample_attempt"}`
    (the value is the candidate's exact title in the client, its event id in the step), and how
    many items could not be matched (`exclude`, e.g. the target, counts as unmatched). Linear in
    the items (at most `max_items` per list): dict look-ups only, plus at most
    `MAX_FUZZY_MATCHES` substring scans; a candidate named twice in a list is kept once."""
    counts: Counter[str] = rejected if rejected is not None else Counter()
    out: dict[str, list[dict[str, str]]] = {d: [] for d in DIRECTIONS}
    unmatched = 0
    if not isinstance(answer, dict):
        counts["answer_field"] += 1
        return out, 0
    fuzzy_left = MAX_FUZZY_MATCHES
    for direction in DIRECTIONS:
        items = answer.get(direction, [])
        if not isinstance(items, list):
            counts["answer_field"] += 1
            continue
        if len(items) > max_items:
            counts["too_many_items"] += len(items) - max_items
            items = items[:max_items]
        seen: set[str] = set()
        for item in items:
            if isinstance(item, str):
                item = {"title": item}
            if not isinstance(item, dict) or not isinstance(item.get("title"), str):
                counts["answer_item"] += 1
                continue
            hit, norm = index.lookup(item["title"])
            if hit is None and len(norm) >= 8:  # shorter: no substring match is tried
                if fuzzy_left > 0:
                    fuzzy_left -= 1
                    hit = index.substring(norm)
                else:
                    counts["match_budget"] += 1
            if hit is None or hit == exclude:
                unmatched += 1
                continue
            if hit in seen:
                counts["duplicate_item"] += 1
                continue
            seen.add(hit)
            out[direction].append({"title": hit, "explanation": _text(item.get("explanation")),
                                   "counterexample_attempt": _text(item.get("counterexample_attempt"))})
    return out, unmatched


def implications_from_answer(answer: Any, target: Group, candidates: dict[str, str], model: str,
                             *, index: TitleIndex | None = None,
                             rejected: Counter[str] | None = None) -> tuple[list[GroupImplication], int]:
    """Group implications in the answer and how many titles could not be matched (the target
    itself counts as unmatched). `candidates`: title → event id; pass `index` when it is built."""
    matched, unmatched = match_answer(answer, index or TitleIndex(candidates),
                                      max_items=item_cap(len(candidates)), rejected=rejected)
    out: list[GroupImplication] = []
    for direction in DIRECTIONS:
        for item in matched[direction]:
            other = item["title"]
            if other == target.event_id:
                unmatched += 1
                continue
            premise, conclusion = (other, target.event_id) if direction == "implied_by" else (target.event_id, other)
            out.append(GroupImplication(premise, conclusion, direction, target.event_id, item["explanation"],
                                        item["counterexample_attempt"], model, PROMPT_VERSION))
    return out, unmatched
