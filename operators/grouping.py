"""Grouping: an event becomes a `Group` (pure; no I/O).

Partition type from the bracket labels (`groupItemTitle`) of the event's open markets,
following the seed:
- TIMEFRAME: every label is a date ("March 31, 2026", "June 30", "Q2 2026", "2027");
- THRESHOLD: every label is a number ("$100k", "↑ 120k", "$1.60", ">2M"), and none is a
  range;
- SINGLE: one market;
- CANDIDATE: otherwise: entities, and range buckets ("<200", "200-219", "220+"): the
  buckets of one quantity are exclusive outcomes, never a ladder ("220-239" YES does not
  make "200-219" YES).
Placeholder outcomes ("Person A", "Candidate B") are dropped first and counted, because a
candidate event with a dropped placeholder is no longer exhaustive (no ALL_YES cover).

Resolution date per market, first found of: a full date in the label; "by/and <Month Day,
Year>" in the description; a month/day (or quarter/year) in the label with the year from
the event's end date; the market's `endDate`.

Mutually exclusive (the seed's test, made safe): a CANDIDATE group is exclusive when the
event is negRisk or two or more of its markets share a resolution date. A THRESHOLD ladder
also shares one date but is never exclusive (above $100k and above $120k can both be YES),
so it is classified before that rule applies.

Threshold direction, per market: an arrow or direction word in its own label ("↑ 120k",
"↓ 80k": "What price will BTC hit?" events mix both, and only same-direction bars form a
ladder), else the event's direction from the words in the labels, questions, then title —
"above", "over", "more than", "at least", "reach", "hit", "exceed" ⇒ above; "below",
"under", "less than", "dip to", "fall to", "drop to" ⇒ below.
"""

from __future__ import annotations

import re
from datetime import date

from polyalphascan.records import Event, Group, GroupMarket, Market, PartitionType

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")]
    )
    for m in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_FULL_DATE = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_MONTH_DAY = re.compile(rf"^\s*(?:by\s+)?({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\s*$", re.I)
_BY_DATE = re.compile(rf"\b(?:by|and)\s+({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_QUARTER = re.compile(r"^\s*Q([1-4])\s+(\d{4})\s*$", re.I)
_YEAR = re.compile(r"^\s*(?:by\s+|in\s+)?((?:19|20)\d{2})\s*$", re.I)
_MONTH_YEAR = re.compile(rf"^\s*({_MONTH_RE})\.?\s+(\d{{4}})\s*$", re.I)
_NUMBER = re.compile(
    r"^\s*(?:[↑↓<>≥≤~+]|over|under|above|below)?\s*\$?\s*(\d[\d,]*(?:\.\d+)?)\s*([kmb%])?"
    r"(?:\s*(?:-|–|to)\s*\$?\s*\d[\d,]*(?:\.\d+)?\s*[kmb%]?)?\s*(?:\+)?\s*$",
    re.I,
)
_RANGE = re.compile(r"\d[\d,]*(?:\.\d+)?\s*[kmb%]?\s*(?:-|–|to)\s*\$?\s*\d", re.I)
_PLACEHOLDER = re.compile(r"^\s*(person|candidate|player|team|option|company|individual|nominee)\s+[A-Z]{1,2}\s*$", re.I)
_ABOVE = re.compile(r"\b(above|over|more than|at least|reach(?:es)?|hit|exceed|greater than|higher than)\b|↑|≥|>", re.I)
_BELOW = re.compile(r"\b(below|under|less than|dip(?:s)? to|fall(?:s)? to|drop(?:s)? to|lower than)\b|↓|≤|<", re.I)
_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "%": 1.0}


def is_placeholder(label: str) -> bool:
    return bool(_PLACEHOLDER.match(label))


def _last_day(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date.fromordinal(date(year, month + 1, 1).toordinal() - 1)


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def label_is_date(label: str) -> bool:
    return bool(_FULL_DATE.search(label) or _MONTH_DAY.match(label) or _QUARTER.match(label)
                or _YEAR.match(label) or _MONTH_YEAR.match(label))


def parse_threshold(label: str) -> float | None:
    """The number of a threshold label ("$1.2M" → 1.2e6, "↑ 120k" → 120000), or None."""
    m = _NUMBER.match(label)
    if not m:
        return None
    value = float(m.group(1).replace(",", ""))
    return value * _SCALE.get((m.group(2) or "").lower(), 1.0)


def label_is_range(label: str) -> bool:
    """A bucket label ("200-219", "$1–2M", "10 to 20"), one of several exclusive outcomes."""
    return bool(_RANGE.search(label))


def _label_direction(text: str) -> str | None:
    """The direction a text states unambiguously ("↑ 120k", "below $80k"), if it does."""
    above, below = bool(_ABOVE.search(text)), bool(_BELOW.search(text))
    return ("above" if above else "below") if above != below else None


def _iso_day(value: str | None) -> date | None:
    if not value:
        return None
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})", value)
    return _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def resolution_date(market: Market, event_end: str | None) -> date | None:
    label = market.group_item_title or ""
    m = _FULL_DATE.search(label)
    if m:
        return _safe_date(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2)))
    m = _BY_DATE.search(market.description or "")
    if m:
        return _safe_date(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2)))
    end = _iso_day(event_end) or _iso_day(market.end_date)
    m = _MONTH_DAY.match(label)
    if m and end is not None:
        return _safe_date(end.year, _MONTHS[m.group(1).lower()], int(m.group(2)))
    m = _QUARTER.match(label)
    if m:
        return _last_day(int(m.group(2)), int(m.group(1)) * 3)
    m = _MONTH_YEAR.match(label)
    if m:
        return _last_day(int(m.group(2)), _MONTHS[m.group(1).lower()])
    m = _YEAR.match(label)
    if m:
        return date(int(m.group(1)), 12, 31)
    return _iso_day(market.end_date)


def threshold_direction(labels: list[str], questions: list[str], title: str) -> str:
    for source in (" ".join(labels), " ".join(questions), title):
        if (direction := _label_direction(source)) is not None:
            return direction
    return "above"


def normalise_label(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", label.lower()).strip()


def group_event(event: Event) -> Group | None:
    """The group of an event's open markets, or None when it has none."""
    open_markets = [m for m in event.markets if m.active and not m.closed]
    if not open_markets:
        return None
    named = [m for m in open_markets if not is_placeholder(m.group_item_title or "")]
    dropped = len(open_markets) - len(named)
    if not named:
        return None
    labels = [m.group_item_title or "" for m in named]
    dates = [resolution_date(m, event.end_date) for m in named]
    if len(named) == 1 and dropped == 0:
        ptype = PartitionType.SINGLE
    elif all(label and label_is_date(label) for label in labels):
        ptype = PartitionType.TIMEFRAME
    elif all(label and parse_threshold(label) is not None for label in labels) \
            and not any(label_is_range(label) for label in labels):
        ptype = PartitionType.THRESHOLD
    else:
        ptype = PartitionType.CANDIDATE
    event_direction = (
        threshold_direction(labels, [m.question for m in named], event.title)
        if ptype is PartitionType.THRESHOLD
        else None
    )
    markets = tuple(
        GroupMarket(
            market_id=m.id,
            question=m.question,
            label=m.group_item_title or "",
            yes_token=m.yes_token,
            no_token=m.no_token,
            resolution_date=d.isoformat() if d else None,
            threshold=parse_threshold(m.group_item_title or "") if ptype is PartitionType.THRESHOLD else None,
            direction=(_label_direction(m.group_item_title or "") or event_direction) if event_direction else None,
        )
        for m, d in zip(named, dates)
    )
    shared_date = len({d for d in dates if d is not None}) < len([d for d in dates if d is not None])
    exclusive = ptype is PartitionType.CANDIDATE and (event.neg_risk or shared_date)
    return Group(
        event_id=event.id,
        title=event.title,
        partition_type=ptype,
        markets=markets,
        mutually_exclusive=exclusive,
        end_date=event.end_date,
        neg_risk=event.neg_risk,
        placeholders_dropped=dropped,
    )


def event_group(event: Event) -> Group:
    """`group_event`, or for an event with no open (named) market left an empty group: the
    steps after it retract that event's covers and forget it."""
    return group_event(event) or Group(event_id=event.id, title=event.title, partition_type=PartitionType.SINGLE,
                                       markets=(), end_date=event.end_date, neg_risk=event.neg_risk)
