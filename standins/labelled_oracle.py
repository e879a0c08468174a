"""An implication oracle from a labelled set of title pairs (the LLM evaluation set), and the
catalogue of groups those titles make.

The evaluation set lists pairs of real market titles, each labelled: does the premise
resolving YES make the conclusion resolving YES certain? The oracle answers the stand-in
LLM's questions from the true labels; the false labels are the *tempting* pairs, which the
stand-in's wrong answers prefer (`tempting`), as a real model's mistakes are the plausible
ones. Pairs the set does not label are not implications.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from connectors.llm.protocol import prompt_title as _t
from polyalphascan.records import Group, GroupMarket, PartitionType


@dataclass(frozen=True, slots=True)
class LabelledPair:
    id: str
    premise: str
    conclusion: str
    implies: bool
    category: str = ""
    premise_end: str | None = None
    conclusion_end: str | None = None


def load_pairs(path: Path) -> list[LabelledPair]:
    """The labelled pairs of an evaluation file (a JSON list of objects; see its README)."""
    rows = orjson.loads(path.read_bytes())
    return [LabelledPair(str(r["id"]), r["premise"], r["conclusion"], bool(r["implies"]), str(r.get("category", "")),
                         r.get("premise_end"), r.get("conclusion_end")) for r in rows]


class LabelledOracle:
    """`ImplicationOracle` over labelled pairs. Titles are compared as prompts show them
    (`prompt_title`: spacing folded, ends trimmed), so a recorded title with a trailing space
    is the title the model saw."""

    def __init__(self, pairs: list[LabelledPair]) -> None:
        self.true: set[tuple[str, str]] = {(_t(p.premise), _t(p.conclusion)) for p in pairs if p.implies}
        self.false: set[tuple[str, str]] = {(_t(p.premise), _t(p.conclusion)) for p in pairs if not p.implies}
        self.true -= self.false  # a pair labelled both ways is no implication
        self._tempting: dict[str, set[str]] = {}
        for a, b in self.false:
            self._tempting.setdefault(a, set()).add(b)
            self._tempting.setdefault(b, set()).add(a)

    def implies(self, premise_title: str, conclusion_title: str) -> bool:
        return (_t(premise_title), _t(conclusion_title)) in self.true

    def answer_implications(self, target_title: str, candidate_titles: list[str]) -> dict[str, Any]:
        item = {"explanation": "labelled implication", "counterexample_attempt": "none exists"}
        target = _t(target_title)
        return {"implied_by": [{"title": t} | item for t in candidate_titles if (_t(t), target) in self.true],
                "implies": [{"title": t} | item for t in candidate_titles if (target, _t(t)) in self.true]}

    def tempting(self, target_title: str, candidate_titles: list[str]) -> list[str]:
        near = self._tempting.get(_t(target_title), set())
        return [t for t in candidate_titles if _t(t) in near]


def catalogue(pairs: list[LabelledPair]) -> list[Group]:
    """One single-market group per distinct title of `pairs` (event ids "e1", "e2", …, in
    order of first appearance), its resolution date from the pair's end date when given."""
    ends: dict[str, str | None] = {}
    for p in pairs:
        for title, end in ((p.premise, p.premise_end), (p.conclusion, p.conclusion_end)):
            if title not in ends or (ends[title] is None and end):
                ends[title] = end
    out: list[Group] = []
    for n, (title, end) in enumerate(ends.items(), 1):
        market = GroupMarket(f"m{n}", title, "", f"y{n}", f"n{n}", resolution_date=end)
        out.append(Group(f"e{n}", title, PartitionType.SINGLE, (market,), end_date=end))
    return out
