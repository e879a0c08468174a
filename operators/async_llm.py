"""The LLM implication step: a bounded-parallel async Bytewax operator that never blocks.

Design (validated in research/bytewax.md §4): one asyncio loop per process in a daemon
thread (`AsyncRunner`) with a semaphore of `LLM_MAX_CONCURRENT`; the stateful logic submits
coroutines with `run_coroutine_threadsafe` and picks finished futures up in `on_notify`,
which `notify_at` schedules every 20 ms while work is in flight. The worker thread only
ever does dictionary work.

Every group reaches one key ("catalog"), because finding cross-event implications needs
every group: the logic keeps the catalogue and a retrieval index, and each new group (or a
group whose title or markets changed) becomes a target: a request with the target's title
and its retrieved candidates. `LLM_BATCH_SIZE` targets are dispatched per round (the
seed's batching); the semaphore keeps at most `LLM_MAX_CONCURRENT` requests in flight.
Implications are emitted as `ImplicationFound` with both current groups, and re-emitted
with fresh groups when either group changes, so pair expansion covers new markets.

Failures never cache "no implications": a failed target is retried later (backoff from 30 s,
at most `MAX_GROUP_RETRIES` times) and reported. Targets are dispatched once no new group has arrived for `SETTLE_S`, so the first poll's
burst is asked against the whole catalogue and candidate sets (cache keys) are the same on
every run. The snapshot holds the catalogue, the
implications found, and the targets not yet answered (pending or in flight) — inputs, not
futures — so a resumed flow re-sends exactly what had not finished. A closed event (an
empty group) leaves the catalogue; its implications go out once more with the empty group,
which retracts their pairs. `on_eof` waits for the
in-flight requests and emits their results. Without an API key the step emits nothing and
says so once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from connectors.llm_client import ImplicationClient, LLMCache, LLMFailure
from operators.llm_prompt import RetrievalIndex, implications_from_answer
from polyalphascan.logs import get_logger
from polyalphascan.metrics import metrics
from polyalphascan.records import Group, GroupImplication, ImplicationFound
from polyalphascan.settings import Settings

log = get_logger(__name__)
_m = metrics("llm")

POLL = timedelta(milliseconds=20)
#: targets wait until no group arrived for this long, so a burst (the first poll) is asked
#: against the whole catalogue: candidate sets, and so cache keys, do not depend on timing
SETTLE_S = 0.3
MAX_GROUP_RETRIES = 3
RETRY_BASE_S = 30.0


class AsyncRunner:
    """One event loop per process in a daemon thread, bounded by a semaphore."""

    _instances: dict[str, "AsyncRunner"] = {}
    _lock = threading.Lock()

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-runner", daemon=True)
        self.thread.start()

        async def make() -> asyncio.Semaphore:
            return asyncio.Semaphore(limit)

        self.sem = asyncio.run_coroutine_threadsafe(make(), self.loop).result()
        self.in_flight = 0

    @classmethod
    def get(cls, name: str, limit: int) -> "AsyncRunner":
        with cls._lock:
            runner = cls._instances.get(name)
            if runner is None:
                runner = cls._instances[name] = cls(limit)
            return runner

    @classmethod
    def reset(cls) -> None:
        """Cancel everything and drop the runners (tests running several flows in one process)."""
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with cls._lock:
            for runner in cls._instances.values():
                try:
                    asyncio.run_coroutine_threadsafe(shutdown(), runner.loop).result(5)
                except Exception:
                    pass
                runner.loop.call_soon_threadsafe(runner.loop.stop)
                runner.thread.join(timeout=5)
            cls._instances.clear()

    def submit(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Future[Any]:
        async def guarded() -> Any:
            async with self.sem:
                self.in_flight += 1
                _m.set("in_flight", self.in_flight)
                try:
                    return await make()
                finally:
                    self.in_flight -= 1
                    _m.set("in_flight", self.in_flight)

        return asyncio.run_coroutine_threadsafe(guarded(), self.loop)


@dataclass
class CatalogState:
    groups: dict[str, Group] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # targets to ask (incl. in flight at snapshot)
    retry_at: dict[str, tuple[float, int]] = field(default_factory=dict)  # target -> (wall time, attempts)
    found: dict[tuple[str, str], GroupImplication] = field(default_factory=dict)
    done: int = 0


def _signature(g: Group) -> tuple[str, tuple[str, ...]]:
    return g.title, tuple(sorted(m.market_id for m in g.markets))


class CatalogLogic(StatefulLogic):
    _disabled_logged = False

    def __init__(self, settings: Settings, client_factory: Callable[[], ImplicationClient],
                 resume: CatalogState | None, runner_name: str = "llm", eof_timeout: float = 120.0) -> None:
        self.settings = settings
        self.enabled = settings.llm_enabled
        self.client_factory = client_factory
        self.runner_name = runner_name
        self.eof_timeout = eof_timeout
        self.state = resume or CatalogState()
        self.index = RetrievalIndex()
        for g in self.state.groups.values():
            self.index.upsert(g.event_id, g.title)
        self.inflight: dict[str, tuple[Future[Any], dict[str, str]]] = {}
        self._client: ImplicationClient | None = None
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._done_at_start = self.state.done
        self._last_group_at = 0.0
        if self.enabled and self.state.pending:
            log.info("llm_resumed", unfinished_targets=len(self.state.pending))
            self._dispatch(force=True)  # re-send exactly what had not finished

    # --------------------------------------------------------------------- helpers
    def _runner(self) -> AsyncRunner:
        return AsyncRunner.get(self.runner_name, self.settings.llm_max_concurrent)

    def _get_client(self) -> ImplicationClient:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def _emit_for(self, imp: GroupImplication) -> ImplicationFound | None:
        p = self.state.groups.get(imp.premise_event_id)
        c = self.state.groups.get(imp.conclusion_event_id)
        return ImplicationFound(imp, p, c) if p is not None and c is not None else None

    def _dispatch(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_group_at < SETTLE_S:
            return
        batch = max(self.settings.llm_batch_size, self.settings.llm_max_concurrent)
        now = time.time()
        for eid, (at, _n) in list(self.state.retry_at.items()):
            if at <= now and eid not in self.inflight and eid not in self.state.pending:
                self.state.pending.append(eid)
        while self.state.pending and len(self.inflight) < batch:
            eid = self.state.pending.pop(0)
            target = self.state.groups.get(eid)
            if target is None or eid in self.inflight:
                continue
            cands = self.index.candidates(eid, self.settings.llm_candidates_per_target)
            by_title = {self.state.groups[c].title: c for c in cands if c in self.state.groups}
            titles = list(by_title)
            if not titles:
                self.state.done += 1
                continue  # nothing to compare with yet; a later group will ask with this one as candidate
            client = self._get_client()
            fut = self._runner().submit(lambda t=target.title, c=titles: client.ask(t, c))
            self.inflight[eid] = (fut, by_title)
            _m.inc("targets_submitted")

    def _harvest(self, block: float | None = None) -> list[ImplicationFound]:
        out: list[ImplicationFound] = []
        for eid, (fut, by_title) in list(self.inflight.items()):
            if block is not None:
                try:
                    fut.result(timeout=block)
                except Exception:
                    pass
            if not fut.done():
                continue
            del self.inflight[eid]
            target = self.state.groups.get(eid)
            try:
                answer = fut.result()
            except (LLMFailure, Exception) as exc:
                kind = getattr(exc, "kind", type(exc).__name__)
                _, attempts = self.state.retry_at.get(eid, (0.0, 0))
                if attempts + 1 > MAX_GROUP_RETRIES:
                    self.state.retry_at.pop(eid, None)
                    _m.inc("groups_failed")
                    log.error("llm_group_failed", event_id=eid, kind=kind, attempts=attempts + 1)
                    self.state.done += 1
                else:
                    delay = RETRY_BASE_S * (2 ** attempts)
                    self.state.retry_at[eid] = (time.time() + delay, attempts + 1)
                    _m.inc("groups_retry_scheduled")
                    log.warning("llm_group_retry_later", event_id=eid, kind=kind, retry_in_s=delay)
                continue
            self.state.retry_at.pop(eid, None)
            self.state.done += 1
            if target is None:
                continue
            imps, unmatched = implications_from_answer(answer, target, by_title, self.settings.llm_model)
            if unmatched:
                _m.inc("unmatched_titles", unmatched)
            for imp in imps:
                key = (imp.premise_event_id, imp.conclusion_event_id)
                if key[0] not in self.state.groups or key[1] not in self.state.groups:
                    continue  # a candidate closed while the request was in flight
                if key not in self.state.found:
                    self.state.found[key] = imp
                    _m.inc("implications")
                found = self._emit_for(imp)
                if found is not None:
                    out.append(found)
        self._progress()
        return out

    def _progress(self) -> None:
        backlog = len(self.state.pending) + len(self.inflight)
        _m.set("backlog", backlog)
        _m.set("done", self.state.done)
        now = time.monotonic()
        if backlog and now - self._last_progress > 5.0:
            self._last_progress = now
            done = self.state.done - self._done_at_start
            rate = done / max(now - self._started, 1e-6)
            eta = backlog / rate if rate > 0 else float("inf")
            log.info("llm_progress", done=self.state.done, total=self.state.done + backlog,
                     rate_per_s=round(rate, 2), eta_s=round(eta, 1) if eta != float("inf") else None)

    # --------------------------------------------------------------------- StatefulLogic
    def on_item(self, group: Group) -> tuple[list[ImplicationFound], bool]:
        if not self.enabled:
            if not CatalogLogic._disabled_logged:
                CatalogLogic._disabled_logged = True
                log.warning("llm_disabled", detail="no OPENROUTER_API_KEY: only rule implications are produced")
            return [], StatefulLogic.RETAIN
        if not group.markets:  # the event closed: retract its pairs, forget it
            return self._forget(group), StatefulLogic.RETAIN
        old = self.state.groups.get(group.event_id)
        self.state.groups[group.event_id] = group
        self._last_group_at = time.monotonic()
        out: list[ImplicationFound] = []
        if old is None or _signature(old) != _signature(group):
            if old is None or old.title != group.title:
                self.index.upsert(group.event_id, group.title)
                if group.event_id not in self.state.pending:
                    self.state.pending.append(group.event_id)
            # known implications touching this group: re-emit with the fresh group
            for (p, c), imp in self.state.found.items():
                if group.event_id in (p, c) and (found := self._emit_for(imp)) is not None:
                    out.append(found)
        self._dispatch()
        return out + self._harvest(), StatefulLogic.RETAIN

    def _forget(self, gone: Group) -> list[ImplicationFound]:
        """A closed event leaves the catalogue, the retrieval index and the queue; each of
        its implications is emitted once more with the empty group, so its pairs are retracted."""
        eid = gone.event_id
        if self.state.groups.pop(eid, None) is None:
            return []
        self.index.remove(eid)
        self.state.pending = [e for e in self.state.pending if e != eid]
        self.state.retry_at.pop(eid, None)
        out: list[ImplicationFound] = []
        for key, imp in list(self.state.found.items()):
            if eid not in key:
                continue
            del self.state.found[key]
            other = self.state.groups.get(key[1] if key[0] == eid else key[0])
            if other is not None:
                premise, conclusion = (gone, other) if key[0] == eid else (other, gone)
                out.append(ImplicationFound(imp, premise, conclusion))
        _m.inc("groups_closed")
        return out

    def on_notify(self) -> tuple[list[ImplicationFound], bool]:
        out = self._harvest()
        self._dispatch()
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[ImplicationFound], bool]:
        out: list[ImplicationFound] = []
        deadline = time.monotonic() + self.eof_timeout
        while (self.inflight or self.state.pending) and time.monotonic() < deadline:
            self._dispatch(force=True)
            out += self._harvest(block=max(0.0, deadline - time.monotonic()))
        if self.inflight or self.state.pending:
            log.error("llm_unfinished_at_eof", targets=len(self.inflight) + len(self.state.pending))
        return out, StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        now = datetime.now(timezone.utc)
        if self.inflight or self.state.pending:
            return now + POLL
        if self.state.retry_at:
            first = min(at for at, _ in self.state.retry_at.values())
            return datetime.fromtimestamp(first, timezone.utc)
        return None

    def snapshot(self) -> CatalogState:
        s = self.state
        unfinished = list(self.inflight) + [e for e in s.pending if e not in self.inflight]
        return CatalogState(dict(s.groups), unfinished, dict(s.retry_at), dict(s.found), s.done)


def llm_implications(step_id: str, up: Stream[tuple[str, Group]], settings: Settings, *,
                     redis_url: str | None = None,
                     client_factory: Callable[[], ImplicationClient] | None = None) -> Stream[ImplicationFound]:
    """Groups (all keyed "catalog") in, implications with both groups out."""
    if client_factory is None:
        def client_factory() -> ImplicationClient:
            return ImplicationClient(settings, LLMCache(settings, redis_url))

    found = op.stateful(step_id, up, lambda resume: CatalogLogic(settings, client_factory, resume))
    return op.map(f"{step_id}_unkey", found, lambda kv: kv[1])
