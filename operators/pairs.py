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

At most `MAX_PAIRS_PER_IMPLICATION` (100) covers per implication: a mixed implication over
two 60-outcome events would otherwise fan out 3,600 pairs. The first pairs in market order are
kept; the excess is counted `rejected_pairs_over_cap` in the metric group handed in (the
flow's "llm" group) and logged (rate-limited) with the implication's ids; `capped_pairs`
returns the count. Pairs are generated lazily, so the dropped ones are never built.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from operators.labels import normalise_label
from operators.rule_covers import leg
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import CoverKind, CoverSpec, Group, GroupImplication, GroupMarket, PartitionType, Side

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)

#: covers one group implication may yield
MAX_PAIRS_PER_IMPLICATION = 100


def _dates_ok(p: GroupMarket, c: GroupMarket) -> bool:
    return p.resolution_date is None or c.resolution_date is None or c.resolution_date >= p.resolution_date


def iter_market_pairs(premise: Group, conclusion: Group) -> Iterator[tuple[GroupMarket, GroupMarket]]:
    """The licensed (p, c) pairs, lazily, in market order."""
    pt, ct = premise.partition_type, conclusion.partition_type
    if pt is PartitionType.SINGLE and ct is PartitionType.SINGLE:
        if premise.markets and conclusion.markets:
            yield premise.markets[0], conclusion.markets[0]
        return
    if pt is PartitionType.CANDIDATE and ct is PartitionType.CANDIDATE:
        by_label = {normalise_label(c.label): c for c in conclusion.markets}
        yield from ((p, by_label[normalise_label(p.label)]) for p in premise.markets
                    if normalise_label(p.label) in by_label)
        return
    if pt is PartitionType.TIMEFRAME and ct is PartitionType.TIMEFRAME:
        yield from ((p, c) for p in premise.markets for c in conclusion.markets
                    if p.resolution_date and c.resolution_date and c.resolution_date >= p.resolution_date)
        return
    if premise.mutually_exclusive:
        return
    yield from ((p, c) for p in premise.markets for c in conclusion.markets if _dates_ok(p, c))


def market_pairs(premise: Group, conclusion: Group) -> list[tuple[GroupMarket, GroupMarket]]:
    return list(iter_market_pairs(premise, conclusion))


def capped_pairs(premise: Group, conclusion: Group,
                 max_pairs: int = MAX_PAIRS_PER_IMPLICATION) -> tuple[list[tuple[GroupMarket, GroupMarket]], int]:
    """The first `max_pairs` distinct-market pairs, and how many more there were (counted,
    never built into covers)."""
    pairs = (pc for pc in iter_market_pairs(premise, conclusion) if pc[0].market_id != pc[1].market_id)
    kept = list(islice(pairs, max_pairs))
    return kept, sum(1 for _ in pairs)


def expand_implication(imp: GroupImplication, premise: Group, conclusion: Group, cover_probability: float, *,
                       max_pairs: int = MAX_PAIRS_PER_IMPLICATION, metrics: MetricGroup | None = None) -> list[CoverSpec]:
    """At most `max_pairs` LLM covers; the excess is counted `rejected_pairs_over_cap` in `metrics`."""
    why = imp.explanation or f"{premise.title} implies {conclusion.title}"
    pairs, excess = capped_pairs(premise, conclusion, max_pairs)
    if excess:
        if metrics is not None:
            metrics.inc("rejected_pairs_over_cap", excess)
        _limited.warning("pairs_over_cap", "llm_pairs_over_cap", premise=imp.premise_event_id,
                         conclusion=imp.conclusion_event_id, kept=len(pairs), dropped=excess)
    return [
        CoverSpec(CoverKind.LLM, (leg(conclusion, c, Side.YES), leg(premise, p, Side.NO)), guaranteed=False,
                  cover_probability=cover_probability, payout=1.0, explanation=why)
        for p, c in pairs
    ]
