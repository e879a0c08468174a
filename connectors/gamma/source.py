"""The Bytewax input of Gamma event deltas: one partition ("gamma") over a `PollThread`.

The partition emits each finished poll's deltas and commits that poll's state in the same
`next_batch`; the committed state is the snapshot, so a resumed flow neither re-emits nor
misses anything. `next_awake` is 100 ms away: an input that sleeps longer holds back the
epoch, and with it every snapshot and the close of the flow.
"""

from __future__ import annotations

import queue
import threading
import time
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.gamma.changes import PollerState
from connectors.gamma.client import GammaClient
from connectors.gamma.poller import GammaPoller, PollResult, PollThread
from polyalphascan.logs import get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import EventDelta

log = get_logger(__name__)


class EventPartition(StatefulSourcePartition[EventDelta, PollerState]):
    def __init__(self, poller: GammaPoller, state: PollerState, *, interval: float, max_interval: float,
                 max_polls: int | None, stop: threading.Event, metrics: MetricGroup) -> None:
        self.committed = state
        self.max_polls = max_polls
        self.emitted_polls = 0
        self.stop = stop
        self.metrics = metrics
        self._thread = PollThread(poller, state.copy(), interval=interval, max_interval=max_interval,
                                  stop=stop, metrics=metrics)

    def next_batch(self) -> list[EventDelta]:
        if self.stop.is_set() or (self.max_polls is not None and self.emitted_polls >= self.max_polls):
            self._thread.close()
            raise StopIteration
        try:
            result = self._thread.results.get_nowait()
        except queue.Empty:
            return []
        self.committed = result.state
        self.emitted_polls += 1
        self._record(result)
        return result.deltas

    def _record(self, r: PollResult) -> None:
        m = self.metrics
        m.inc("polls")
        m.inc("full_polls" if r.full else "incremental_polls")
        m.inc("pages", r.pages)
        m.inc("events_fetched", r.fetched)
        m.inc("events_processed", r.processed)
        for d in r.deltas:
            m.inc(d.kind.value)
        m.set("last_poll_ts", time.time())
        m.set("last_poll_duration_s", r.duration_s)
        m.set("last_poll_fetched", r.fetched)
        m.set("last_poll_processed", r.processed)
        m.set("processed_fraction", (r.processed / r.fetched) if r.fetched else 0.0)
        m.set("known_events", len(r.state.fingerprints))
        log.info("gamma_poll", full=r.full, pages=r.pages, fetched=r.fetched, processed=r.processed,
                 deltas=len(r.deltas), duration_s=round(r.duration_s, 3))

    def next_awake(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(milliseconds=100)

    def snapshot(self) -> PollerState:
        return self.committed.copy()

    def close(self) -> None:
        self._thread.close()


class EventSource(FixedPartitionedSource[EventDelta, PollerState]):
    """Gamma's open events at `base_url` (only `tags`' when given), polled every
    `poll_interval_s` seconds (a failing poll backs off up to 10x that, at least 60 s);
    incremental with a full pass every `full_every` polls, or always full. Ends on `stop`, or
    after `max_polls` emitted polls. Counts in `metrics` (the "poller" group)."""

    def __init__(self, *, base_url: str, tags: list[str], poll_interval_s: float, incremental: bool,
                 full_every: int, stop: threading.Event, metrics: MetricGroup, max_polls: int | None = None,
                 max_attempts: int = 5, backoff_base: float = 0.5) -> None:
        self.base_url = base_url
        self.tags = list(tags)
        self.poll_interval_s = poll_interval_s
        self.incremental = incremental
        self.full_every = full_every
        self.stop = stop
        self.metrics = metrics
        self.max_polls = max_polls
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base

    def list_parts(self) -> list[str]:
        return ["gamma"]

    def build_part(self, step_id: str, for_part: str, resume_state: PollerState | None) -> EventPartition:
        client = GammaClient(self.base_url, stop=self.stop, metrics=self.metrics, max_attempts=self.max_attempts,
                             backoff_base=self.backoff_base)
        poller = GammaPoller(client, metrics=self.metrics, incremental=self.incremental, full_every=self.full_every,
                             tags=self.tags)
        if resume_state is not None:
            log.info("gamma_poller_resumed", watermark=resume_state.watermark, known=len(resume_state.fingerprints))
        return EventPartition(poller, resume_state or PollerState(), interval=self.poll_interval_s,
                              max_interval=max(self.poll_interval_s * 10, 60.0), max_polls=self.max_polls,
                              stop=self.stop, metrics=self.metrics)
