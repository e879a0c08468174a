"""Rule implications: the covers that logic alone settles (pure; guaranteed, probability 1).

- TIMEFRAME ladder: "by an earlier date" ⇒ "by a later date", so for every d1 < d2:
  YES(d2) + NO(d1) pays at least $1. Equal dates give nothing.
- THRESHOLD ladder, "above": above a higher bar ⇒ above a lower one: YES(lower) + NO(higher);
  "below" mirrors it: YES(higher) + NO(lower). Equal bars, and bars of opposite
  directions in one event ("↑ 120k" and "↓ 80k"), give nothing.
- Mutually exclusive event with N ≥ 2 named outcomes: all N NOs pay at least N−1 (ALL_NO);
  when it is also exhaustive (negRisk, no placeholder dropped) all N YESes pay exactly 1
  (ALL_YES).

Every structural cover is produced whether or not it is profitable now: the scanner keeps
each one priced live, and the pricing step decides what is an opportunity.
"""

from __future__ import annotations

from polyalphascan.records import CoverKind, CoverSpec, Group, GroupMarket, Leg, PartitionType, Side


def leg(group: Group, market: GroupMarket, side: Side) -> Leg:
    return Leg(market.market_id, side, market.yes_token, market.no_token, market.question, group.event_id)


def _pair(kind: CoverKind, group: Group, yes: GroupMarket, no: GroupMarket, why: str) -> CoverSpec:
    return CoverSpec(kind, (leg(group, yes, Side.YES), leg(group, no, Side.NO)), guaranteed=True,
                     cover_probability=1.0, payout=1.0, explanation=why)


def rule_covers(group: Group) -> list[CoverSpec]:
    out: list[CoverSpec] = []
    ms = group.markets
    if group.partition_type is PartitionType.TIMEFRAME:
        dated = sorted((m for m in ms if m.resolution_date), key=lambda m: m.resolution_date or "")
        for i, early in enumerate(dated):
            for late in dated[i + 1:]:
                if (late.resolution_date or "") > (early.resolution_date or ""):
                    out.append(_pair(CoverKind.TIMEFRAME, group, late, early,
                                     f"by {early.resolution_date} implies by {late.resolution_date}"))
    elif group.partition_type is PartitionType.THRESHOLD:
        bars = sorted((m for m in ms if m.threshold is not None), key=lambda m: m.threshold or 0.0)
        for i, low in enumerate(bars):
            for high in bars[i + 1:]:
                if (high.threshold or 0.0) <= (low.threshold or 0.0) or low.direction != high.direction:
                    continue  # equal bars, or a "reach" bar against a "dip to" bar: no implication
                if (low.direction or "above") == "above":
                    out.append(_pair(CoverKind.THRESHOLD, group, low, high,
                                     f"above {high.label} implies above {low.label}"))
                else:
                    out.append(_pair(CoverKind.THRESHOLD, group, high, low,
                                     f"below {low.label} implies below {high.label}"))
    elif group.partition_type is PartitionType.CANDIDATE and group.mutually_exclusive and len(ms) >= 2:
        n = len(ms)
        out.append(CoverSpec(CoverKind.ALL_NO, tuple(leg(group, m, Side.NO) for m in ms), guaranteed=True,
                             cover_probability=1.0, payout=float(n - 1),
                             explanation=f"at most one of {n} exclusive outcomes wins: the NOs pay at least {n - 1}"))
        if group.neg_risk and group.placeholders_dropped == 0:
            out.append(CoverSpec(CoverKind.ALL_YES, tuple(leg(group, m, Side.YES) for m in ms), guaranteed=True,
                                 cover_probability=1.0, payout=1.0,
                                 explanation=f"exactly one of {n} exclusive, exhaustive outcomes wins"))
    return out
