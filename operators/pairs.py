"""Pair expansion: a group implication (premise event ⇒ conclusion event) into market-level
LLM covers (pure).

For premise P ⇒ conclusion C the cover is YES(c) + NO(p): if c resolves NO, p must too
(contrapositive), so one leg pays with the LLM's probability. Which (p, c) market pairs the
group-level statement licenses:
- single ↔ single: the one pair;
- candidate ↔ candidate: markets with the same normalised label ("X wins the presidency" ⇒
  "X wins the nomination", never across different people);
- timeframe ↔ timeframe: only when date(c) ≥ date(p) ("captured by June" ⇒ "captured by
  December", not the other way round);
- any other mix: pairs whose dates are compatible (unknown date = compatible), skipping
  NO legs on a mutually exclusive premise whose labels cannot be matched (the seed's rule:
  NO on one candidate is not NO on the group).
legs[0] = the target position YES(c), legs[1] = the cover position NO(p).
"""

from __future__ import annotations

from operators.labels import normalise_label
from operators.rule_covers import leg
from polyalphascan.records import CoverKind, CoverSpec, Group, GroupImplication, GroupMarket, PartitionType, Side


def _dates_ok(p: GroupMarket, c: GroupMarket) -> bool:
    return p.resolution_date is None or c.resolution_date is None or c.resolution_date >= p.resolution_date


def market_pairs(premise: Group, conclusion: Group) -> list[tuple[GroupMarket, GroupMarket]]:
    pt, ct = premise.partition_type, conclusion.partition_type
    if pt is PartitionType.SINGLE and ct is PartitionType.SINGLE:
        return [(premise.markets[0], conclusion.markets[0])]
    if pt is PartitionType.CANDIDATE and ct is PartitionType.CANDIDATE:
        by_label = {normalise_label(c.label): c for c in conclusion.markets}
        return [(p, by_label[normalise_label(p.label)]) for p in premise.markets if normalise_label(p.label) in by_label]
    if pt is PartitionType.TIMEFRAME and ct is PartitionType.TIMEFRAME:
        return [(p, c) for p in premise.markets for c in conclusion.markets
                if p.resolution_date and c.resolution_date and c.resolution_date >= p.resolution_date]
    if premise.mutually_exclusive:
        return []
    return [(p, c) for p in premise.markets for c in conclusion.markets if _dates_ok(p, c)]


def expand_implication(imp: GroupImplication, premise: Group, conclusion: Group, cover_probability: float) -> list[CoverSpec]:
    why = imp.explanation or f"{premise.title} implies {conclusion.title}"
    return [
        CoverSpec(CoverKind.LLM, (leg(conclusion, c, Side.YES), leg(premise, p, Side.NO)), guaranteed=False,
                  cover_probability=cover_probability, payout=1.0, explanation=why)
        for p, c in market_pairs(premise, conclusion)
        if p.market_id != c.market_id
    ]
