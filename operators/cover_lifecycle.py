"""Rule covers per event over time: emit the event's covers whenever its group changes, and
retract the ones that no longer hold (a new outcome in a candidate event replaces its
baskets; the old all-YES basket is no longer exhaustive). Keyed by event id."""

from __future__ import annotations

from bytewax.operators import StatefulLogic

from operators.rule_covers import rule_covers
from polyalphascan.records import CoverRetracted, CoverSpec, Group


class RuleCoverDiff(StatefulLogic):
    def __init__(self, resume: dict[str, tuple[str, ...]] | None) -> None:
        self.live: dict[str, tuple[str, ...]] = dict(resume or {})  # cover id -> its YES tokens

    def on_item(self, group: Group) -> tuple[list[CoverSpec | CoverRetracted], bool]:
        covers = rule_covers(group)
        now = {c.id: tuple(dict.fromkeys(leg.yes_token for leg in c.legs)) for c in covers}
        gone = [CoverRetracted(cid, toks) for cid, toks in self.live.items() if cid not in now]
        self.live = now
        return [*gone, *covers], StatefulLogic.RETAIN

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        return dict(self.live)
