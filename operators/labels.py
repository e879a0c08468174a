"""What a market's bracket label and question say (pure text parsing; no I/O).

Everything here reads text written by whoever created the market, so every function
returns None (or False) for what it cannot read, and never raises.

- dates: "March 31, 2026", "June 30" (year from elsewhere), "Q2 2026", "2027",
  "March 2026", "end of 2025", "by end of 2025", "Before 2027", "before March 2026";
- numbers: "$1.2M", "↑ 120,000", "110M+", "<60M", "10 or more", "at least 5";
- ranges: "200-219", "$1–2M", "10 to 20" are no single number (a bucket, never a bar);
- direction of a bar: above ("↑", ">", "N+", "or more", "at least", "reach", …) or
  below ("↓", "<", "or fewer", "or less", "dip to", "under", …); "hit" states none (a price
  hits a bar from either side);
- cumulative wording of a deadline ("by", "before", "end of"), and the wording of a bucket
  that is not cumulative ("week of", "exactly", "between", "in <Month>");
- placeholder outcomes ("Person K", "Party A", "Candidate 3"): slots of an event that are not
  yet a named outcome.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta

MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")]
    )
    for name in names
}
_M = "|".join(sorted(MONTHS, key=len, reverse=True))
MIN_YEAR, MAX_YEAR = 2000, 2100  # outside this a "year" is not read as one

_FULL_DATE = re.compile(rf"\b({_M})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_MONTH_DAY = re.compile(rf"^\s*(?:by\s+|before\s+)?({_M})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\s*\??\s*$", re.I)
_QUARTER = re.compile(r"^\s*(?:by\s+(?:the\s+)?end\s+of\s+|by\s+)?Q([1-4])\s+(\d{4})\s*\??\s*$", re.I)
_YEAR = re.compile(r"^\s*(?:by\s+|in\s+)?((?:19|20)\d{2})\s*\??\s*$", re.I)
_END_OF_YEAR = re.compile(r"^\s*(?:by\s+)?(?:the\s+)?end\s+of\s+(?:year\s+)?(\d{4})\s*\??\s*$", re.I)
_BEFORE_YEAR = re.compile(r"^\s*before\s+(\d{4})\s*\??\s*$", re.I)
_MONTH_YEAR = re.compile(rf"^\s*(by\s+(?:the\s+)?end\s+of\s+|by\s+|before\s+|end\s+of\s+)?({_M})\.?,?\s+(\d{{4}})\s*\??\s*$",
                         re.I)
_BEFORE_FULL = re.compile(rf"^\s*before\s+({_M})\.?\s+(\d{{1,2}})", re.I)
_YEAR_ANYWHERE = re.compile(r"\b(20\d{2})\b")

_NUM = r"(\d[\d,]*(?:\.\d+)?)\s*([kmb%]|bn)?"
_NUMBER = re.compile(
    rf"^\s*(?:at\s+least|at\s+most|more\s+than|less\s+than|fewer\s+than|over|under|above|below|[↑↓<>≥≤~])?\s*"
    rf"\$?\s*{_NUM}\s*(?:\+|or\s+(?:more|higher|above|fewer|less|lower|below))?\s*$",
    re.I,
)
_SCALE = {"k": 1e3, "m": 1e6, "b": 1e9, "bn": 1e9, "%": 1.0}

_PLACEHOLDER = re.compile(
    r"^\s*(?:person|party|candidate|player|team|option|company|individual|nominee|country|club|driver|"
    r"horse|movie|film|song|artist|album|show|entity|outcome|choice|name)\s+(?:[A-Z]{1,2}|\d{1,2})\s*$",
    re.I,
)

_ABOVE = re.compile(
    r"\b(?:above|over|more\s+than|at\s+least|or\s+more|or\s+higher|or\s+above|reach(?:es)?|exceeds?|"
    r"greater\s+than|higher\s+than|surpass(?:es)?)\b|↑|≥|>|\d\s*(?:[kmb%]|bn)?\s*\+",
    re.I,
)
_BELOW = re.compile(
    r"\b(?:below|under|less\s+than|fewer\s+than|at\s+most|or\s+fewer|or\s+less|or\s+lower|or\s+below|"
    r"dips?\s+to|falls?\s+to|drops?\s+to|lower\s+than)\b|↓|≤|<",
    re.I,
)
_NOT_A_BAR = re.compile(r"\b(?:exactly|between)\b", re.I)
_DEADLINE = re.compile(r"\b(?:by|before|no\s+later\s+than|prior\s+to|end\s+of)\b", re.I)
_NOT_CUMULATIVE = re.compile(
    rf"\b(?:week\s+of|during|exactly|between|in\s+(?:the\s+)?(?:week|month)\b|in\s+(?:{_M})\b|on\s+(?:{_M})\b)",
    re.I,
)


def _date(year: int, month: int, day: int) -> date | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _last_day(year: int, month: int) -> date | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    first_next = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first_next - timedelta(days=1)


def _minus_day(d: date | None) -> date | None:
    return d - timedelta(days=1) if d is not None else None


@dataclass(frozen=True, slots=True)
class LabelDate:
    """A deadline read from a label. `needs_year`: the label gave month and day only."""

    value: date | None
    needs_year: bool = False
    month: int = 0
    day: int = 0
    before: bool = False  # "before <Month Day>": the deadline is the day before


def label_date(label: str) -> LabelDate | None:
    """The deadline a label states ("June 30, 2026", "Q2 2026", "end of 2025", "Before 2027",
    "June 30"), or None when the label is no date."""
    text = label.strip()
    if not text:
        return None
    m = _FULL_DATE.search(text)
    if m:
        d = _date(int(m.group(3)), MONTHS[m.group(1).lower()], int(m.group(2)))
        return LabelDate(_minus_day(d) if _BEFORE_FULL.match(text) else d)
    m = _QUARTER.match(text)
    if m:
        return LabelDate(_last_day(int(m.group(2)), int(m.group(1)) * 3))
    m = _END_OF_YEAR.match(text)
    if m:
        return LabelDate(_last_day(int(m.group(1)), 12))
    m = _BEFORE_YEAR.match(text)
    if m:
        return LabelDate(_last_day(int(m.group(1)) - 1, 12))
    m = _MONTH_YEAR.match(text)
    if m:
        year, month = int(m.group(3)), MONTHS[m.group(2).lower()]
        if (m.group(1) or "").strip().lower().startswith("before"):
            return LabelDate(_minus_day(_date(year, month, 1)))
        return LabelDate(_last_day(year, month))
    m = _YEAR.match(text)
    if m:
        return LabelDate(_last_day(int(m.group(1)), 12))
    m = _MONTH_DAY.match(text)
    if m:
        month, day = MONTHS[m.group(1).lower()], int(m.group(2))
        if not 1 <= day <= 31:
            return None
        return LabelDate(None, needs_year=True, month=month, day=day, before=text.lower().startswith("before"))
    return None


def date_with_year(ld: LabelDate, year: int) -> date | None:
    d = _date(year, ld.month, ld.day)
    return _minus_day(d) if ld.before else d


def full_date_in(text: str) -> date | None:
    """The first "Month Day, Year" in a text."""
    m = _FULL_DATE.search(text)
    return _date(int(m.group(3)), MONTHS[m.group(1).lower()], int(m.group(2))) if m else None


def years_in(text: str) -> set[int]:
    return {int(y) for y in _YEAR_ANYWHERE.findall(text)}


def iso_day(value: object) -> date | None:
    """The date of an ISO-8601 text ("2026-12-31T12:00:00Z"), or None."""
    if not isinstance(value, str):
        return None
    m = re.match(r"\s*(\d{4})-(\d{2})-(\d{2})", value)
    return _date(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def parse_threshold(label: str) -> float | None:
    """The number of a single-number label ("$1.2M" → 1.2e6, "↑ 120k" → 120000, "110M+"),
    or None (no number, a range, a date, a number too large to be finite)."""
    m = _NUMBER.match(label)
    if not m:
        return None
    try:
        value = float(m.group(1).replace(",", ""))
    except ValueError:
        return None
    value *= _SCALE.get((m.group(2) or "").lower(), 1.0)
    return value if math.isfinite(value) else None


def direction_of(text: str) -> str | None:
    """"above" or "below" when a text states one direction and only one ("↑ 120k", "110M+",
    "dip to $80k"); None when it states none, both, or a bucket ("exactly", "between")."""
    if _NOT_A_BAR.search(text):
        return None
    above, below = bool(_ABOVE.search(text)), bool(_BELOW.search(text))
    return ("above" if above else "below") if above != below else None


def states_deadline(text: str) -> bool:
    """Cumulative deadline wording ("by June 30", "before 2027", "end of 2025")."""
    return bool(_DEADLINE.search(text)) and not _NOT_CUMULATIVE.search(text)


def states_bucket(text: str) -> bool:
    """Wording of a window that is not cumulative ("week of March 9", "in March", "exactly")."""
    return bool(_NOT_CUMULATIVE.search(text))


def is_placeholder(label: str) -> bool:
    """A slot not yet assigned to a named outcome ("Person K", "Party A", "Candidate 3")."""
    return bool(_PLACEHOLDER.match(label))


def normalise_label(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", label.lower()).strip()
