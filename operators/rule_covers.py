"""Rule implications: the covers that the venue's flags and the markets' wording prove (pure;
guaranteed, probability 1). Each carries its proof in `explanation`: the rule, and the facts
it used.

- TIMEFRAME ladder (not neg-risk; cumulative "by <date>" rungs): "by an earlier date" ⇒ "by
  a later date", so for d1 < d2: YES(d2) + NO(d1) pays at least $1. Equal dates give nothing.
- THRESHOLD ladder (not neg-risk; rungs with a stated direction and one end date): above a
  higher bar ⇒ above a lower one: YES(lower) + NO(higher); "below" mirrors it: YES(higher) +
  NO(lower). Equal bars, bars of opposite directions ("↑ 120k" and "↓ 80k") and bars on
  different dates give nothing.
- Exclusive event (neg-risk) with N ≥ 2 named open outcomes: all N NOs pay at least N−1
  (ALL_NO); when it is also exhaustive all N YESes pay exactly 1 (ALL_YES).

Every structural cover is produced whether or not it is profitable now: the scanner keeps
each one priced live, and the pricing step decides what is an opportunity.
"""

from __future__ import annotations

from polyalphascan.records import CoverKind, CoverSpec, Group, GroupMarket, Leg, PartitionType, Side


def leg(group: Group, market: GroupMarket, side: Side) -> Leg:
    return Leg(market.market_id, side, market.yes_token, market.no_token, market.question, group.event_id,
               market.terms)


def _pair(kind: CoverKind, group: Group, yes: GroupMarket, no: GroupMarket, why: str) -> CoverSpec:
    return CoverSpec(kind, (leg(group, yes, Side.YES), leg(group, no, Side.NO)), guaranteed=True,
                     cover_probability=1.0, explanation=why)


def _timeframe(group: Group) -> list[CoverSpec]:
    out: list[CoverSpec] = []
    rungs = sorted(((m.resolution_date, m) for m in group.markets if m.cumulative and m.resolution_date),
                   key=lambda dm: dm[0])
    for i, (early_date, early) in enumerate(rungs):
        for late_date, late in rungs[i + 1:]:
            if late_date > early_date:
                out.append(_pair(CoverKind.TIMEFRAME, group, late, early,
                                 f"rule timeframe ({group.facts}): by {early_date} [{early.basis}] implies "
                                 f"by {late_date} [{late.basis}]"))
    return out


def _threshold(group: Group) -> list[CoverSpec]:
    out: list[CoverSpec] = []
    rungs = sorted(((m.threshold, m) for m in group.markets if m.cumulative and m.threshold is not None),
                   key=lambda tm: tm[0])
    for i, (low_bar, low) in enumerate(rungs):
        for high_bar, high in rungs[i + 1:]:
            if high_bar <= low_bar or low.direction != high.direction or low.resolution_date != high.resolution_date:
                continue  # equal bars, a "reach" bar against a "dip to" bar, or two dates: no implication
            on = f"on {low.resolution_date}"
            if low.direction == "above":
                out.append(_pair(CoverKind.THRESHOLD, group, low, high,
                                 f"rule threshold ({group.facts}): above {high.label} [{high.basis}] implies "
                                 f"above {low.label} [{low.basis}] {on}"))
            elif low.direction == "below":
                out.append(_pair(CoverKind.THRESHOLD, group, high, low,
                                 f"rule threshold ({group.facts}): below {low.label} [{low.basis}] implies "
                                 f"below {high.label} [{high.basis}] {on}"))
    return out


def _exclusive(group: Group) -> list[CoverSpec]:
    ms = group.markets
    n = len(ms)
    names = ", ".join(repr(m.label or m.question) for m in ms)
    out = [CoverSpec(CoverKind.ALL_NO, tuple(leg(group, m, Side.NO) for m in ms), guaranteed=True,
                     cover_probability=1.0, payout=float(n - 1),
                     explanation=f"rule all_no ({group.facts}): at most one of the {n} outcomes [{names}] "
                                 f"resolves YES, so their NOs pay at least {n - 1}")]
    if group.exhaustive:
        out.append(CoverSpec(CoverKind.ALL_YES, tuple(leg(group, m, Side.YES) for m in ms), guaranteed=True,
                             cover_probability=1.0,
                             explanation=f"rule all_yes ({group.facts}): exactly one of the {n} outcomes "
                                         f"[{names}] resolves YES"))
    return out


def rule_covers(group: Group) -> list[CoverSpec]:
    """Ladders exist only in groups that are not exclusive: grouping makes every exclusive
    (neg-risk) group a CANDIDATE."""
    if group.partition_type is PartitionType.TIMEFRAME:
        return _timeframe(group)
    if group.partition_type is PartitionType.THRESHOLD:
        return _threshold(group)
    if group.mutually_exclusive and len(group.markets) >= 2:
        return _exclusive(group)
    return []
