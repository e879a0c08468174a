"""Event source: incremental polling of Gamma as a Bytewax input.

`GammaPoller` is the core (no Bytewax): one `poll()` returns the deltas since the last poll
and the new state. Incremental polls page `/events/keyset` newest-first (`order=id,
ascending=false`) and stop at the watermark (the highest event id already seen), so 10 new
events among 5,000 cost one page. Every `full_reconcile_every` polls — and every poll when
incremental mode is off — a full pass over the open events finds what incremental paging
cannot: new markets in existing events, closed markets, edited titles, and events that
left the open listing. An event missing from the listing is looked up (`/events/{id}`)
before anything is closed: a record that was merely unreadable in the listing (schema
drift, a mangled id) stays open; a closed or deleted event has all its markets reported
closed; a lookup that fails decides nothing until the next full pass. When the listing was
cut short (the legacy endpoint's offset cap) no closure is inferred at all. Either way only
deltas are emitted (new / changed / market closed), each once, because the state holds a
fingerprint per event and the open/closed status of every market.

`EventSource` runs the poller in a background thread (HTTP never blocks the worker) and
hands each finished poll to its single partition, which emits the deltas and commits the
poll's state in the same `next_batch`; the committed state is the snapshot, so a resumed
flow neither re-emits nor misses anything. `next_awake` is at most 200 ms away
(research/bytewax.md §2.5, the epoch stall).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.gamma_parse import GammaParseError, parse_event
from polyalphascan.lifecycle import STOP
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import metrics
from polyalphascan.records import DeltaKind, Event, EventDelta, Market
from polyalphascan.settings import Settings

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)
_m = metrics("poller")

PAGE_LIMIT = 100
MAX_PAGES = 10_000  # guard against a cursor that never advances


class PollError(RuntimeError):
    """A poll could not complete (after retries); nothing from it is emitted."""


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
class PollResult:
    deltas: list[EventDelta]
    state: PollerState
    full: bool
    pages: int
    fetched: int
    processed: int
    duration_s: float


def fingerprint(event: Event) -> str:
    """What, when it changes, may change the event's covers: texts, flags (neg-risk,
    augmentation), each market's state and resolution."""
    parts = [event.title, event.description[:200], f"{event.neg_risk}|{event.neg_risk_augmented}|{event.end_date}"]
    for m in sorted(event.markets, key=lambda m: m.id):
        parts.append(f"{m.id}|{m.question}|{m.group_item_title}|{m.closed}|{m.active}|{m.end_date}|{m.neg_risk}|"
                     f"{m.neg_risk_other}|{m.neg_risk_market_id}|{m.yes_price if m.closed else ''}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


class GammaClient:
    """httpx client with retries that honour Retry-After, and a client-side pace."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, max_attempts: int = 5,
                 min_interval: float = 0.025, backoff_base: float = 0.5, backoff_max: float = 8.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                 headers={"User-Agent": "polyalphascan/0.1"})
        self.max_attempts = max_attempts
        self.min_interval = min_interval  # 500 req / 10 s on /events => 20 ms; keep under it
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._last = 0.0
        self.keyset_available = True

    def _pace(self) -> None:
        wait = self._last + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()

    def get_json(self, path: str, params: list[tuple[str, Any]]) -> Any:
        """GET with retries on 429/5xx/transport errors/unparseable bodies; raise PollError."""
        delay = self.backoff_base
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            if STOP.is_set():
                raise PollError("stopping")
            self._pace()
            wait = delay
            try:
                resp = self.http.get(path, params=params)
                if resp.status_code == 200:
                    return orjson.loads(resp.content)
                if resp.status_code in (404, 422) or (resp.status_code == 503 and b"keyset" in resp.content):
                    raise PollError(f"{path}: HTTP {resp.status_code} {resp.text[:120]}")
                last_error = f"HTTP {resp.status_code}"
                _m.inc(f"errors_http_{resp.status_code}")
                retry_after = resp.headers.get("Retry-After")
                if retry_after is not None:
                    try:
                        wait = max(0.0, float(retry_after))
                    except ValueError:
                        wait = delay
            except orjson.JSONDecodeError:
                last_error = "unparseable body"
                _m.inc("errors_bad_body")
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                _m.inc("errors_transport")
            if attempt < self.max_attempts:
                _m.inc("retries")
                time.sleep(min(wait, self.backoff_max * 4))
                delay = min(delay * 2, self.backoff_max)
        raise PollError(f"{path}: gave up after {self.max_attempts} attempts ({last_error})")

    def close(self) -> None:
        self.http.close()


class GammaPoller:
    def __init__(self, client: GammaClient, *, incremental: bool = True, full_every: int = 10,
                 tags: list[str] | None = None) -> None:
        self.client = client
        self.incremental = incremental
        self.full_every = max(1, full_every)
        self.tags = list(tags or [])

    # ---------------------------------------------------------------- fetching
    def _pages(self, *, newest_first: bool, stop_at: int | None,
               tag: str | None) -> tuple[list[dict[str, Any]], int, bool]:
        """Raw events, newest first when asked, stopping once ids reach `stop_at`; and whether
        the listing was complete (the legacy endpoint stops at its offset cap)."""
        base: list[tuple[str, Any]] = [("limit", PAGE_LIMIT), ("closed", "false"), ("order", "id"),
                                       ("ascending", "false" if newest_first else "true")]
        if tag:
            base.append(("tag_slug", tag))
        out: list[dict[str, Any]] = []
        pages = 0
        if self.client.keyset_available:
            try:
                cursor: str | None = None
                seen: set[str] = set()
                while pages < MAX_PAGES:
                    params = base + ([("after_cursor", cursor)] if cursor else [])
                    body = self.client.get_json("/events/keyset", params)
                    pages += 1
                    events = body.get("events") if isinstance(body, dict) else None
                    if not isinstance(events, list):
                        raise PollError("keyset page without an events list")
                    out.extend(events)
                    if stop_at is not None and any(self._int_id(e) <= stop_at for e in events):
                        break
                    cursor = body.get("next_cursor")
                    if not cursor or cursor in seen:
                        break
                    seen.add(cursor)
                return out, pages, True
            except PollError as exc:
                if "HTTP 404" not in str(exc) and "HTTP 503" not in str(exc):
                    raise
                log.warning("keyset_unavailable_falling_back_to_legacy", error=str(exc))
                self.client.keyset_available = False
                out, pages = [], 0
        offset = 0
        while pages < MAX_PAGES:
            try:
                body = self.client.get_json("/events", base + [("offset", offset)])
            except PollError as exc:
                if "HTTP 422" in str(exc):
                    log.warning("legacy_offset_cap_reached", offset=offset, fetched=len(out))
                    return out, pages, False
                raise
            pages += 1
            if not isinstance(body, list) or not body:
                break
            out.extend(body)
            if stop_at is not None and any(self._int_id(e) <= stop_at for e in body):
                break
            offset += len(body)
        return out, pages, pages < MAX_PAGES

    @staticmethod
    def _int_id(raw: Any) -> int:
        try:
            return int(raw.get("id"))
        except (AttributeError, TypeError, ValueError):
            return -1

    # ---------------------------------------------------------------- diffing
    def poll(self, state: PollerState) -> PollResult:
        t0 = time.monotonic()
        new = state.copy()
        full = (not self.incremental) or state.polls % self.full_every == 0
        raw_events: list[dict[str, Any]] = []
        pages = 0
        complete = True
        for tag in self.tags or [None]:
            got, n, whole = self._pages(newest_first=True, stop_at=None if full else state.watermark, tag=tag)
            raw_events.extend(got)
            pages += n
            complete = complete and whole
        deltas: list[EventDelta] = []
        processed = 0
        listed: set[str] = set()
        for raw in raw_events:
            ident = self._int_id(raw)
            if not full and ident <= state.watermark:
                continue  # already known: the incremental pass stops here
            if str(raw.get("id")) in listed:
                continue  # same event under two tags
            processed += 1
            try:
                event = parse_event(raw)
            except GammaParseError as exc:
                _m.inc("errors_parse")
                _limited.warning("parse", "gamma_record_skipped", id=exc.record_id, reason=exc.reason)
                if exc.record_id:
                    listed.add(exc.record_id)  # present (just unreadable now): not closed
                continue
            listed.add(event.id)
            deltas.extend(self._diff(new, event))
        if full:
            for eid in self._left_listing(new, listed, complete):
                try:
                    event = self._look_up(eid)
                except PollError as exc:  # cannot tell now: keep it open, ask again next full pass
                    _m.inc("closure_lookups_failed")
                    _limited.warning("lookup", "closure_lookup_failed", id=eid, error=str(exc)[:200])
                    continue
                if event is not None and not event.closed:  # still open: its listed record was unreadable
                    deltas.extend(self._diff(new, event))
                else:
                    deltas.extend(self._close_event(new, eid))
        new.polls += 1
        return PollResult(deltas, new, full, pages, len(raw_events), processed, time.monotonic() - t0)

    @staticmethod
    def _close_event(state: PollerState, eid: str) -> list[EventDelta]:
        """The event closed or is gone: every market of it still open closes; it is forgotten."""
        out: list[EventDelta] = []
        closing = [mid for mid, closed in state.market_closed.get(eid, {}).items() if not closed]
        if closing:
            stubs = tuple(Market(id=mid, event_id=eid, question="", slug="", condition_id="",
                                 yes_token=state.market_tokens.get(mid, ("", ""))[0],
                                 no_token=state.market_tokens.get(mid, ("", ""))[1], closed=True)
                          for mid in closing)
            ev = Event(id=eid, slug="", title="", closed=True, markets=stubs)
            out.append(EventDelta(DeltaKind.MARKET_CLOSED, ev, ("closed",), (), tuple(closing)))
        for mid in state.market_closed.pop(eid, {}):
            state.market_tokens.pop(mid, None)
        state.fingerprints.pop(eid, None)
        return out

    def _left_listing(self, state: PollerState, listed: set[str], complete: bool) -> list[str]:
        """Known events the full listing did not show; none when the listing was cut short."""
        absent = [eid for eid in state.fingerprints if eid not in listed]
        if absent and not complete:
            _m.inc("closure_checks_skipped")
            _limited.warning("listing", "closure_check_skipped", reason="listing incomplete", absent=len(absent))
            return []
        return absent

    def _look_up(self, event_id: str) -> Event | None:
        """The event as `/events/{id}` has it, or None when Gamma no longer has it (404).
        Raises PollError when it cannot tell."""
        try:
            raw = self.client.get_json(f"/events/{event_id}", [])
        except PollError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        _m.inc("closure_lookups")
        try:
            return parse_event(raw)
        except GammaParseError as exc:
            raise PollError(f"/events/{event_id}: {exc}") from None

    @staticmethod
    def _diff(state: PollerState, event: Event) -> list[EventDelta]:
        fp = fingerprint(event)
        ident = int(event.id)
        state.watermark = max(state.watermark, ident)
        old_fp = state.fingerprints.get(event.id)
        closed_now = {m.id: (m.closed or not m.active) for m in event.markets}
        for m in event.markets:
            state.market_tokens[m.id] = (m.yes_token, m.no_token)
        if old_fp is None:
            state.fingerprints[event.id] = fp
            state.market_closed[event.id] = closed_now
            return [EventDelta(DeltaKind.NEW, event, (), tuple(m.id for m in event.markets), ())]
        if old_fp == fp:
            return []
        before = state.market_closed.get(event.id, {})
        state.fingerprints[event.id] = fp
        state.market_closed[event.id] = closed_now
        out: list[EventDelta] = []
        newly_closed = tuple(mid for mid, c in closed_now.items() if c and not before.get(mid, False))
        new_markets = tuple(mid for mid in closed_now if mid not in before)
        changed = []
        if new_markets:
            changed.append("markets")
        if newly_closed:
            out.append(EventDelta(DeltaKind.MARKET_CLOSED, event, ("closed",), (), newly_closed))
        if new_markets or not newly_closed:
            if not new_markets:
                changed.append("content")
            out.append(EventDelta(DeltaKind.CHANGED, event, tuple(changed), new_markets, ()))
        return out


# ---------------------------------------------------------------------------- Bytewax
class _PollThread:
    """Runs polls in the background; results wait in a queue for the partition."""

    def __init__(self, poller: GammaPoller, state: PollerState, interval: float, max_interval: float) -> None:
        self.poller = poller
        self.state = state
        self.interval = interval
        self.max_interval = max_interval
        self.results: queue.Queue[PollResult] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gamma-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set() and not STOP.is_set():
            try:
                result = self.poller.poll(self.state)
            except PollError as exc:
                failures += 1
                _m.inc("polls_failed")
                delay = min(self.interval * (2 ** min(failures, 6)), self.max_interval)
                _m.set("interval_s", delay)
                log.warning("gamma_poll_failed", error=str(exc), failures=failures, next_poll_in_s=round(delay, 2))
            except Exception as exc:  # never kill the flow: log with the traceback and go on
                failures += 1
                delay = min(self.interval * (2 ** min(failures, 6)), self.max_interval)
                log.exception("gamma_poll_crashed", error=repr(exc))
            else:
                if failures:
                    log.info("gamma_poll_recovered", after_failures=failures)
                failures = 0
                delay = self.interval
                _m.set("interval_s", delay)
                self.state = result.state
                while not self._stop.is_set():
                    try:
                        self.results.put(result, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class EventPartition(StatefulSourcePartition[EventDelta, PollerState]):
    def __init__(self, poller: GammaPoller, state: PollerState, *, interval: float, max_interval: float,
                 max_polls: int | None) -> None:
        self.committed = state
        self.max_polls = max_polls
        self.emitted_polls = 0
        self._thread = _PollThread(poller, state.copy(), interval, max_interval)

    def next_batch(self) -> list[EventDelta]:
        if STOP.is_set() or (self.max_polls is not None and self.emitted_polls >= self.max_polls):
            self._thread.stop()
            raise StopIteration
        try:
            result = self._thread.results.get_nowait()
        except queue.Empty:
            return []
        self.committed = result.state
        self.emitted_polls += 1
        self._record(result)
        return result.deltas

    @staticmethod
    def _record(r: PollResult) -> None:
        _m.inc("polls")
        _m.inc("full_polls" if r.full else "incremental_polls")
        _m.inc("pages", r.pages)
        _m.inc("events_fetched", r.fetched)
        _m.inc("events_processed", r.processed)
        for d in r.deltas:
            _m.inc(d.kind.value)
        _m.set("last_poll_ts", time.time())
        _m.set("last_poll_duration_s", r.duration_s)
        _m.set("last_poll_fetched", r.fetched)
        _m.set("last_poll_processed", r.processed)
        _m.set("processed_fraction", (r.processed / r.fetched) if r.fetched else 0.0)
        _m.set("known_events", len(r.state.fingerprints))
        log.info("gamma_poll", full=r.full, pages=r.pages, fetched=r.fetched, processed=r.processed,
                 deltas=len(r.deltas), duration_s=round(r.duration_s, 3))

    def next_awake(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(milliseconds=100)

    def snapshot(self) -> PollerState:
        return self.committed.copy()

    def close(self) -> None:
        self._thread.stop()


class EventSource(FixedPartitionedSource[EventDelta, PollerState]):
    """One partition ("gamma") polling `settings.gamma_api_url`."""

    def __init__(self, settings: Settings, *, max_polls: int | None = None, max_attempts: int = 5,
                 backoff_base: float = 0.5) -> None:
        self.settings = settings
        self.max_polls = max_polls
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base

    def list_parts(self) -> list[str]:
        return ["gamma"]

    def build_part(self, step_id: str, for_part: str, resume_state: PollerState | None) -> EventPartition:
        s = self.settings
        client = GammaClient(s.gamma_api_url, max_attempts=self.max_attempts, backoff_base=self.backoff_base)
        poller = GammaPoller(client, incremental=s.enable_incremental_update, full_every=s.full_reconcile_every,
                             tags=s.polymarket_tag)
        if resume_state is not None:
            log.info("gamma_poller_resumed", watermark=resume_state.watermark, known=len(resume_state.fingerprints))
        return EventPartition(poller, resume_state or PollerState(), interval=s.poll_interval_seconds,
                              max_interval=max(s.poll_interval_seconds * 10, 60.0), max_polls=self.max_polls)
