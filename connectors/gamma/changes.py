"""Change detection for Gamma listings. Pure: no I/O, no clock, no threads.

The poller's memory is a `PollerState`: the watermark (highest event id seen), a content
fingerprint per known event, the open/closed status of every known market, and each market's
(yes, no) tokens. Given a listing (raw event records, newest first), `diff_listing` emits only
what changed since the state, each change once:

* an unknown event is NEW (with all its markets);
* a known event whose fingerprint changed is CHANGED (new markets, or "content": title,
  flags, a placeholder turning active...), and/or MARKET_CLOSED for the markets that closed;
* an unchanged event emits nothing.

An incremental listing (`full=False`) only holds events above the watermark: older records are
ignored. A full listing (`full=True`) also names the known events it did not show. Those are
not closed on sight — a record merely unreadable in the listing (schema drift, a mangled id)
is still open — but looked up one by one; `settle_absent` turns a lookup's answer into the
closure decision: closed or gone (404) closes every market still open and forgets the event,
still open re-diffs it. When the listing was cut short (the legacy endpoint's offset cap) no
event is looked up at all: absence proves nothing.

The functions update the state they are given (the poller passes a working copy, committed
only together with the deltas it produced).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.gamma.protocol import GammaParseError, parse_event, raw_event_id
from polyalphascan.records import DeltaKind, Event, EventDelta, Market


@dataclass
class PollerState:
    watermark: int = 0
    fingerprints: dict[str, str] = field(default_factory=dict)  # event id -> content fingerprint
    market_closed: dict[str, dict[str, bool]] = field(default_factory=dict)  # event id -> market id -> closed
    polls: int = 0
    market_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)  # market id -> (yes, no) tokens

    def copy(self) -> "PollerState":
        return PollerState(self.watermark, dict(self.fingerprints),
                           {k: dict(v) for k, v in self.market_closed.items()}, self.polls,
                           dict(self.market_tokens))


@dataclass
class ListingDiff:
    """What one listing changed."""

    deltas: list[EventDelta]
    #: Records looked at (above the watermark when incremental; each event once).
    processed: int
    #: Records that could not be parsed (skipped; an identifiable one still counts as listed).
    skipped: list[GammaParseError]
    #: Known events a complete full listing did not show: look each up, then `settle_absent`.
    absent: list[str]
    #: Known events a cut-short full listing did not show: not looked up, nothing closed.
    unchecked: int
    #: Ids too far above the rest to move the watermark (see `plausible_watermark`).
    implausible: list[int] = field(default_factory=list)


def fingerprint(event: Event) -> str:
    """What, when it changes, may change the event's covers or their prices: texts, flags (neg-risk,
    augmentation), each market's state and resolution, and its execution terms (tick, minimum
    order, taker fee)."""
    parts = [event.title, event.description[:200], f"{event.neg_risk}|{event.neg_risk_augmented}|{event.end_date}"]
    for m in sorted(event.markets, key=lambda m: m.id):
        parts.append(f"{m.id}|{m.question}|{m.group_item_title}|{m.closed}|{m.active}|{m.end_date}|{m.neg_risk}|"
                     f"{m.neg_risk_other}|{m.neg_risk_market_id}|{m.yes_price if m.closed else ''}|"
                     f"{m.terms.tick}|{m.terms.min_size}|{m.terms.fee_rate}|{m.terms.fee_exponent}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


#: Largest step between consecutive event ids that still moves the watermark. Gamma's ids are
#: dense (tens of thousands of new events a month) and even the sparse ids of old, still-open
#: events lie far closer together; an id millions above the rest is a bad record, and taking it
#: as the watermark would make every incremental poll skip the real new events.
MAX_ID_STEP = 5_000_000


def plausible_watermark(watermark: int, ids: Iterable[int]) -> tuple[int, list[int]]:
    """The new watermark: the highest of `ids` reached from `watermark` in steps of at most
    `MAX_ID_STEP` (from 0, the lowest id starts the run), and the ids left above that run."""
    implausible: list[int] = []
    for ident in sorted(ids):
        if ident <= watermark:
            continue
        if watermark == 0 or ident - watermark <= MAX_ID_STEP:
            watermark = ident
        else:
            implausible.append(ident)
    return watermark, implausible


def diff_listing(state: PollerState, raw_events: Iterable[Any], *, full: bool, complete: bool = True) -> ListingDiff:
    """Diff a listing (raw records, several tags' listings concatenated) against `state`,
    updating it. `complete` is False when the listing was cut short."""
    watermark = state.watermark  # the watermark before this listing: newer records raise it as they come
    deltas: list[EventDelta] = []
    skipped: list[GammaParseError] = []
    processed = 0
    listed: set[str] = set()
    ids: list[int] = []
    for raw in raw_events:
        if not full and raw_event_id(raw) <= watermark:
            continue  # already known: the incremental pass stops here
        if isinstance(raw, dict) and str(raw.get("id")) in listed:
            continue  # same event under two tags
        processed += 1
        try:
            event = parse_event(raw)
        except GammaParseError as exc:
            skipped.append(exc)
            if exc.record_id:
                listed.add(exc.record_id)  # present (just unreadable now): not closed
            continue
        listed.add(event.id)
        ids.append(int(event.id))
        deltas.extend(event_delta(state, event))
    state.watermark, implausible = plausible_watermark(state.watermark, ids)
    absent: list[str] = []
    unchecked = 0
    if full:
        absent = [eid for eid in state.fingerprints if eid not in listed]
        if not complete:
            absent, unchecked = [], len(absent)
    return ListingDiff(deltas, processed, skipped, absent, unchecked, implausible)


def settle_absent(state: PollerState, event_id: str, looked_up: Event | None) -> list[EventDelta]:
    """The closure decision for a known event the full listing did not show, given what its
    lookup returned: the event (`looked_up`) or None when Gamma no longer has it (404). Still
    open: its listed record was only unreadable, so it is diffed like a listed one. Closed or
    gone: every market of it still open closes. (A lookup that failed decides nothing: do not
    call this; the next full pass asks again.)"""
    if looked_up is not None and not looked_up.closed:
        return event_delta(state, looked_up)
    return close_event(state, event_id)


def close_event(state: PollerState, event_id: str) -> list[EventDelta]:
    """The event closed or is gone: every market of it still open closes (one MARKET_CLOSED
    delta carrying stub markets with their tokens); the event is forgotten."""
    out: list[EventDelta] = []
    closing = [mid for mid, closed in state.market_closed.get(event_id, {}).items() if not closed]
    if closing:
        stubs = tuple(_closed_stub(event_id, mid, state.market_tokens.get(mid, ("", ""))) for mid in closing)
        ev = Event(id=event_id, slug="", title="", closed=True, markets=stubs)
        out.append(EventDelta(DeltaKind.MARKET_CLOSED, ev, ("closed",), closed_market_ids=tuple(closing)))
    for mid in state.market_closed.pop(event_id, {}):
        state.market_tokens.pop(mid, None)
    state.fingerprints.pop(event_id, None)
    return out


def _closed_stub(event_id: str, market_id: str, tokens: tuple[str, str]) -> Market:
    """A closed market known only by its id and (yes, no) tokens."""
    yes_token, no_token = tokens
    return Market(id=market_id, event_id=event_id, question="", slug="", condition_id="",
                  yes_token=yes_token, no_token=no_token, closed=True)


def event_delta(state: PollerState, event: Event) -> list[EventDelta]:
    """The deltas one parsed event makes against the state (none when its fingerprint is
    unchanged); records it. A market counts as closed when closed or inactive."""
    fp = fingerprint(event)
    old_fp = state.fingerprints.get(event.id)
    closed_now = {m.id: (m.closed or not m.active) for m in event.markets}
    for m in event.markets:
        state.market_tokens[m.id] = (m.yes_token, m.no_token)
    if old_fp is None:
        state.fingerprints[event.id] = fp
        state.market_closed[event.id] = closed_now
        return [EventDelta(DeltaKind.NEW, event, new_market_ids=tuple(m.id for m in event.markets))]
    if old_fp == fp:
        return []
    before = state.market_closed.get(event.id, {})
    state.fingerprints[event.id] = fp
    state.market_closed[event.id] = closed_now
    out: list[EventDelta] = []
    newly_closed = tuple(mid for mid, c in closed_now.items() if c and not before.get(mid))
    new_markets = tuple(mid for mid in closed_now if mid not in before)
    changed = []
    if new_markets:
        changed.append("markets")
    if newly_closed:
        out.append(EventDelta(DeltaKind.MARKET_CLOSED, event, ("closed",), closed_market_ids=newly_closed))
    if new_markets or not newly_closed:
        if not new_markets:
            changed.append("content")
        out.append(EventDelta(DeltaKind.CHANGED, event, tuple(changed), new_markets))
    return out
