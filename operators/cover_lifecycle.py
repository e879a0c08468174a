"""Covers over time: per key, emit the covers it yields whenever its input changes, and
retract the ones that no longer hold, so no portfolio outlives its reason and no token keeps
listing a dead cover.

- Rule covers, keyed by event id (`RuleCoverDiff`): a new outcome in a candidate event
  replaces its baskets (the old all-YES basket is no longer exhaustive); a closed market's
  ladder pairs go; a closed event (an empty group) takes all of its covers with it.
- LLM covers, keyed by implication (`LlmCoverDiff`, premise ⇒ conclusion): the implication is
  re-emitted with fresh groups when either event changes; pairs whose market closed or left
  the group are retracted on every leg's token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bytewax.operators import StatefulLogic

from operators.pairs import expand_implication
from operators.rule_covers import rule_covers
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import CoverRetracted, CoverSpec, Group, ImplicationFound

In = TypeVar("In")


class CoverDiff(StatefulLogic, Generic[In]):
    """The covers `covers_of(item)` yields now, after retractions of those it yielded before
    and no longer does. State: cover id → its YES tokens."""

    def __init__(self, resume: dict[str, tuple[str, ...]] | None, covers_of: Callable[[In], list[CoverSpec]]) -> None:
        self.live: dict[str, tuple[str, ...]] = dict(resume or {})
        self.covers_of = covers_of

    def on_item(self, item: In) -> tuple[list[CoverSpec | CoverRetracted], bool]:
        covers = self.covers_of(item)
        now = {c.id: tuple(dict.fromkeys(leg.yes_token for leg in c.legs)) for c in covers}
        gone = [CoverRetracted(cid, toks) for cid, toks in self.live.items() if cid not in now]
        self.live = now
        # nothing live (the event closed, the pairs lapsed): the key holds no state worth keeping
        return [*gone, *covers], StatefulLogic.RETAIN if now else StatefulLogic.DISCARD

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        return dict(self.live)


class RuleCoverDiff(CoverDiff[Group]):
    def __init__(self, resume: dict[str, tuple[str, ...]] | None,
                 covers_of: Callable[[Group], list[CoverSpec]] = rule_covers) -> None:
        super().__init__(resume, covers_of)


def implication_key(found: ImplicationFound) -> str:
    return f"{found.implication.premise_event_id}>{found.implication.conclusion_event_id}"


def pair_covers(cover_probability: float,
                metrics: MetricGroup | None = None) -> Callable[[ImplicationFound], list[CoverSpec]]:
    """The LLM covers an implication yields (pair expansion with the groups as they are now),
    each with the probability `cover_probability` (the ceiling) × the implication's
    confidence; pairs over the cap are counted in `metrics`."""
    return lambda f: expand_implication(f.implication, f.premise, f.conclusion,
                                        cover_probability * f.implication.confidence, metrics=metrics)


class LlmCoverDiff(CoverDiff[ImplicationFound]):
    def __init__(self, resume: dict[str, tuple[str, ...]] | None,
                 covers_of: Callable[[ImplicationFound], list[CoverSpec]]) -> None:
        super().__init__(resume, covers_of)
