"""Grouping: an event becomes a `Group` whose facts say which covers are proven (pure; no I/O).

A guaranteed cover must hold in every outcome, so a group claims only what the venue's
flags or the markets' own wording prove; anything merely likely (shared dates, similar
wording) is left to the LLM step, never to a guaranteed cover.

Exclusive (at most one market resolves YES) only when the venue says so: the event is
neg-risk (`negRisk`, or every market `negRisk` within one `negRiskMarketID`). Its open,
named markets are exclusive outcomes whatever their labels say: names, numbers ("2", "3"),
buckets ("<60M", "60-80M", "110M+") and dates ("March", "Week of March 9") alike; a neg-risk
event is never a ladder. A multi-market event that is not neg-risk is never exclusive
(top-4 finishers, relegated teams, "which countries will…": any subset can be YES).

Exhaustive (exactly one of the group's markets resolves YES) only when exclusive and:
`negRiskAugmented` is false (an augmented event can still mint outcomes), no placeholder
slot is listed ("Person K", "Party A"; active, inactive or closed), no market is inactive
while unresolved,
and every closed market resolved NO. An explicit, tradeable "Other" of a non-augmented
event is a real outcome and keeps it exhaustive.

Ladders only in events that are not neg-risk:
- TIMEFRAME: every label is a deadline; a rung is a market whose label or question says
  "by"/"before"/"end of" (or the title does, and neither the label nor the question states
  a window such as "week of", "in March", "on March 9"), with its date read from its own
  label, the year (when the label has none) from its own question, else from the event's
  end date when that does not put the deadline after the event's end. Never from the
  description nor the market's `endDate`.
- THRESHOLD: every label is one number (no range); a rung's direction comes from its own
  label ("↑", "110M+", "<60M", "or more"), else its question, else the title ("above",
  "reach", "dip to", "less than"…); with none, or both, it is no rung. Rungs pair only
  within one direction and one end date.
Anything else is CANDIDATE (exclusive or not) or SINGLE.
"""

from __future__ import annotations

from datetime import date

from operators.labels import (
    date_with_year,
    direction_of,
    full_date_in,
    iso_day,
    is_placeholder,
    label_date,
    parse_threshold,
    states_bucket,
    states_deadline,
    years_in,
)
from polyalphascan.records import Event, Group, GroupMarket, Market, PartitionType


def venue_exclusive(event: Event, markets: list[Market]) -> bool:
    """The venue's own statement that at most one of `markets` resolves YES."""
    if not (event.neg_risk or (markets and all(m.neg_risk for m in markets))):
        return False
    return len({m.neg_risk_market_id for m in markets if m.neg_risk_market_id}) <= 1


def exhaustive_reason(event: Event) -> str | None:
    """Why the outcomes of a neg-risk event may not be exhaustive, or None when they are."""
    if event.neg_risk_augmented:
        return "negRiskAugmented=true: outcomes can still be added"
    for m in event.markets:
        if is_placeholder(m.group_item_title):  # even resolved: the slot says outcomes were open-ended
            return f"placeholder outcome {m.group_item_title!r}"
        if m.closed:
            if m.yes_price is None or m.yes_price > 0.0:
                return f"market {m.id} closed without resolving NO"
        elif not m.active:
            return f"outcome {m.group_item_title or m.id!r} is listed inactive"
    return None


def _loose_date(m: Market, event_end: date | None) -> date | None:
    """A best-effort date for matching dates across events (never a rung's proof)."""
    ld = label_date(m.group_item_title)
    if ld is not None and ld.value is not None:
        return ld.value
    if ld is not None and ld.needs_year and event_end is not None:
        return date_with_year(ld, event_end.year)
    return full_date_in(m.question) or full_date_in(m.description) or iso_day(m.end_date)


def _deadline_rung(m: Market, title: str, event_end: date | None) -> tuple[date | None, str]:
    """The deadline of a cumulative "by <date>" market and where it was read, or (None, "")."""
    label, question = m.group_item_title, m.question
    if not (states_deadline(label) or states_deadline(question)
            or (states_deadline(title) and not states_bucket(label) and not states_bucket(question))):
        return None, ""
    ld = label_date(label)
    if ld is None or (not ld.needs_year and ld.value is None):
        return None, ""
    if not ld.needs_year:
        return ld.value, f"label {label!r}"
    q_date = full_date_in(question)
    if q_date is not None and (q_date.month, q_date.day) == (ld.month, ld.day):
        return date_with_year(ld, q_date.year), f"label {label!r}, year from the question"
    years = years_in(question)
    if len(years) == 1:
        return date_with_year(ld, years.pop()), f"label {label!r}, year from the question"
    d = date_with_year(ld, event_end.year) if event_end is not None else None
    if d is not None and event_end is not None and d <= event_end:
        return d, f"label {label!r}, year of the event's end date"
    return None, ""


def _bar_rung(m: Market, title: str) -> tuple[str | None, str]:
    """The direction of a threshold market and where it was read, or (None, "")."""
    for where, text in (("label", m.group_item_title), ("question", m.question), ("title", title)):
        direction = direction_of(text)
        if direction is not None:
            return direction, f"{direction} ({where})"
    return None, ""


def _partition(named: list[Market], exclusive: bool, placeholders: int) -> PartitionType:
    labels = [m.group_item_title for m in named]
    if len(named) == 1 and placeholders == 0:
        return PartitionType.SINGLE
    if exclusive:
        return PartitionType.CANDIDATE
    if all(label and label_date(label) is not None for label in labels):
        return PartitionType.TIMEFRAME
    if all(label and parse_threshold(label) is not None for label in labels):  # a range is no number
        return PartitionType.THRESHOLD
    return PartitionType.CANDIDATE


def _group_market(m: Market, ptype: PartitionType, title: str, event_end: date | None) -> GroupMarket:
    loose = _loose_date(m, event_end)
    rung_date: date | None = None
    threshold = direction = None
    cumulative, basis = False, ""
    if ptype is PartitionType.TIMEFRAME:
        rung_date, basis = _deadline_rung(m, title, event_end)
        cumulative = rung_date is not None
    elif ptype is PartitionType.THRESHOLD:
        threshold = parse_threshold(m.group_item_title)
        direction, basis = _bar_rung(m, title)
        loose = iso_day(m.end_date)  # the bars of one ladder are judged on one date
        cumulative = direction is not None and threshold is not None and loose is not None
    resolved = rung_date or loose
    return GroupMarket(
        market_id=m.id, question=m.question, label=m.group_item_title, yes_token=m.yes_token, no_token=m.no_token,
        resolution_date=resolved.isoformat() if resolved else None, threshold=threshold, direction=direction,
        cumulative=cumulative, basis=basis, terms=m.terms,
    )


def _facts(event: Event, exclusive: bool, reason: str | None) -> str:
    flags = f"negRisk={'true' if event.neg_risk else 'false'}, " \
            f"negRiskAugmented={'true' if event.neg_risk_augmented else 'false'}"
    if not exclusive:
        return flags
    return f"{flags}; " + (f"not exhaustive: {reason}" if reason else "exhaustive: every outcome listed and open")


def group_event(event: Event) -> Group | None:
    """The group of an event's open markets, or None when it has no open named market."""
    open_markets = [m for m in event.markets if m.active and not m.closed]
    named = [m for m in open_markets if not is_placeholder(m.group_item_title)]
    if not named:
        return None
    placeholders = sum(1 for m in event.markets if not m.closed and is_placeholder(m.group_item_title))
    exclusive = venue_exclusive(event, named)
    reason = exhaustive_reason(event) if exclusive else None
    ptype = _partition(named, exclusive, placeholders)
    event_end = iso_day(event.end_date)
    return Group(
        event_id=event.id,
        title=event.title,
        partition_type=ptype,
        markets=tuple(_group_market(m, ptype, event.title, event_end) for m in named),
        mutually_exclusive=exclusive,
        end_date=event.end_date,
        neg_risk=event.neg_risk,
        placeholders_dropped=placeholders,
        exhaustive=exclusive and reason is None,  # (a group that is not exclusive has no reason)
        facts=_facts(event, exclusive, reason),
    )


def empty_group(event: Event) -> Group:
    """The group of an event with nothing to cover: the steps after it retract that event's
    covers and forget it (a closed event, or one whose record could not be grouped)."""
    return Group(event_id=event.id, title=event.title, partition_type=PartitionType.SINGLE, markets=(),
                 end_date=event.end_date, neg_risk=event.neg_risk)


def event_group(event: Event) -> Group:
    """`group_event`, or for an event with no open (named) market left `empty_group`."""
    return group_event(event) or empty_group(event)
