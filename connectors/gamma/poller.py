"""Incremental polling of Gamma: paging, reconciliation and closure lookups. No Bytewax; all
I/O goes through a `GammaClient`, every decision about what changed through
`connectors.gamma.changes`.

One `GammaPoller.poll(state)` returns the deltas since `state` and the new state. Incremental
polls page `/events/keyset` newest-first (`order=id, ascending=false`) and stop at the
watermark (the highest event id already seen), so 10 new events among 5,000 cost one page.
Every `full_every` polls — and every poll when incremental mode is off — a full pass over the
open events finds what incremental paging cannot: new markets in existing events, closed
markets, edited titles, and events that left the open listing. An event missing from the
listing is looked up (`/events/{id}`) before anything is closed; a lookup that fails decides
nothing until the next full pass. When the keyset endpoint is missing (404, a 503 naming it,
or a 503 storm it never recovers from within the retries) the poller falls back, for good, to
the legacy offset-paged `/events`, whose offset cap (422) cuts the listing short.

`PollThread` runs the poller in a background thread (HTTP never blocks a Bytewax worker) and
queues each finished poll.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from connectors.gamma.changes import PollerState, diff_listing, settle_absent
from connectors.gamma.client import GammaClient, GammaGaveUp, GammaHTTPError, GammaUnavailable
from connectors.gamma.protocol import GammaError, parse_event, raw_event_id
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Event, EventDelta

log = get_logger(__name__)

PAGE_LIMIT = 100
MAX_PAGES = 10_000  # guard against a cursor that never advances


@dataclass
class PollResult:
    deltas: list[EventDelta]
    state: PollerState
    full: bool
    pages: int
    fetched: int
    processed: int
    duration_s: float


def _keyset_missing(exc: GammaError) -> bool:
    """Whether a keyset request failed because the endpoint is not there (fall back to legacy
    paging) rather than because of a passing error."""
    if isinstance(exc, GammaUnavailable):
        return True
    if isinstance(exc, GammaHTTPError):
        return exc.status == 404
    return isinstance(exc, GammaGaveUp) and exc.last_status == 503


def _reached(records: list[Any], stop_at: int) -> bool:
    """Whether a newest-first page reached the watermark: a readable id at or below it. An
    unreadable id (-1) proves nothing; taken as "reached" it would cut every incremental poll
    short at the page holding it."""
    return any(0 <= raw_event_id(r) <= stop_at for r in records)


class GammaPoller:
    """Polls Gamma's open events; counts in `metrics` (`errors_parse`, `closure_lookups`,
    `closure_lookups_failed`, `closure_checks_skipped`)."""

    def __init__(self, client: GammaClient, *, metrics: MetricGroup, incremental: bool = True,
                 full_every: int = 10, tags: list[str] | None = None) -> None:
        self.client = client
        self.metrics = metrics
        self.incremental = incremental
        self.full_every = max(1, full_every)
        self.tags = list(tags or [])
        self.keyset_available = True
        self._limited = RateLimitedLog(log, interval=10.0)

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
        if self.keyset_available:
            try:
                cursor: str | None = None
                seen: set[str] = set()
                while pages < MAX_PAGES:
                    params = base + ([("after_cursor", cursor)] if cursor else [])
                    body = self.client.get_json("/events/keyset", params)
                    pages += 1
                    events = body.get("events") if isinstance(body, dict) else None
                    if not isinstance(events, list):
                        raise GammaError("/events/keyset: page without an events list")
                    out.extend(events)
                    if stop_at is not None and _reached(events, stop_at):
                        break
                    cursor = body.get("next_cursor")
                    if not cursor or cursor in seen:
                        break
                    seen.add(cursor)
                return out, pages, True
            except (GammaHTTPError, GammaGaveUp) as exc:
                if not _keyset_missing(exc):
                    raise
                log.warning("keyset_unavailable_falling_back_to_legacy", error=str(exc))
                self.keyset_available = False
                out, pages = [], 0
        offset = 0
        while pages < MAX_PAGES:
            try:
                body = self.client.get_json("/events", base + [("offset", offset)])
            except GammaHTTPError as exc:
                if exc.status == 422:
                    log.warning("legacy_offset_cap_reached", offset=offset, fetched=len(out))
                    return out, pages, False
                raise
            pages += 1
            if not isinstance(body, list) or not body:
                break
            out.extend(body)
            if stop_at is not None and _reached(body, stop_at):
                break
            offset += len(body)
        return out, pages, pages < MAX_PAGES

    def _look_up(self, event_id: str) -> Event | None:
        """The event as `/events/{id}` has it, or None when Gamma no longer has it (404).
        Raises GammaError when it cannot tell (the lookup failed, or its record is unreadable)."""
        try:
            raw = self.client.get_json(f"/events/{event_id}", [])
        except GammaHTTPError as exc:
            if exc.status == 404:
                return None
            raise
        self.metrics.inc("closure_lookups")
        return parse_event(raw)

    # ---------------------------------------------------------------- polling
    def poll(self, state: PollerState) -> PollResult:
        """One poll against `state` (left untouched). Raises GammaError when the listing could
        not be fetched: nothing of that poll counts."""
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
        diff = diff_listing(new, raw_events, full=full, complete=complete)
        for exc in diff.skipped:
            self.metrics.inc("errors_parse")
            self._limited.warning("parse", "gamma_record_skipped", id=exc.record_id, reason=exc.reason)
        if diff.implausible:
            self.metrics.inc("rejected_id_jump", len(diff.implausible))
            self._limited.warning("id_jump", "gamma_id_ignored_for_watermark", ids=diff.implausible[:5],
                                  watermark=new.watermark)
        if diff.unchecked:
            self.metrics.inc("closure_checks_skipped")
            self._limited.warning("listing", "closure_check_skipped", reason="listing incomplete",
                                  absent=diff.unchecked)
        deltas = diff.deltas
        for eid in diff.absent:
            try:
                event = self._look_up(eid)
            except GammaError as exc:  # cannot tell now: keep it open, ask again next full pass
                self.metrics.inc("closure_lookups_failed")
                self._limited.warning("lookup", "closure_lookup_failed", id=eid, error=str(exc)[:200])
                continue
            deltas.extend(settle_absent(new, eid, event))
        new.polls += 1
        return PollResult(deltas, new, full, pages, len(raw_events), diff.processed, time.monotonic() - t0)


class PollThread:
    """Runs `poller` every `interval` seconds in a daemon thread, from `state` on; each finished
    poll waits in `results` (at most 4). A failed poll backs off (doubling, up to
    `max_interval`) and is counted (`polls_failed`; the current pause is `interval_s`). Ends on
    `stop` (the flow's) or `close()`."""

    def __init__(self, poller: GammaPoller, state: PollerState, *, interval: float, max_interval: float,
                 stop: threading.Event, metrics: MetricGroup) -> None:
        self.poller = poller
        self.state = state
        self.interval = interval
        self.max_interval = max_interval
        self.metrics = metrics
        self.results: queue.Queue[PollResult] = queue.Queue(maxsize=4)
        self._flow_stop = stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gamma-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set() and not self._flow_stop.is_set():
            try:
                result = self.poller.poll(self.state)
            except GammaError as exc:
                failures += 1
                self.metrics.inc("polls_failed")
                delay = min(self.interval * (2 ** min(failures, 6)), self.max_interval)
                self.metrics.set("interval_s", delay)
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
                self.metrics.set("interval_s", delay)
                self.state = result.state
                while not self._stop.is_set():
                    try:
                        self.results.put(result, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            self._stop.wait(delay)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
