"""The LLM implication step: a bounded-parallel stateful Bytewax operator that never blocks.

Design: the step owns an `AsyncRunner` (connectors/llm/runner.py: an asyncio loop in a daemon
thread with a semaphore of `max_concurrent`), created when the first request goes out and
stopped in `on_eof` (or `close()`); the stateful logic submits coroutines to it and picks
finished futures up in `on_notify`, which `notify_at` schedules every 20 ms while work is in
flight. The worker thread only ever does dictionary work.

Every group reaches one key ("catalog"), because finding cross-event implications needs
every group: the logic keeps the catalogue and a retrieval index (operators/retrieval.py),
and each new group (or a group whose title or markets changed) becomes a target: a discovery
request with the target's title and its retrieved candidates.

**From a claim to an implication** (operators/verification.py): an LLM's answer is a claim,
never a cover. An event whose title reads like instructions to a model stays out of every
prompt (`rejected_suspect_title`); an answer claiming more than
`max_implications_per_target` implications is rejected whole (`rejected_over_target_cap`);
each claim passes the structural checks (`rejected_structural_<reason>`) and then
verification rounds — the joint-outcome question, asked on the same runner, in rounds of
alternating order and wording, until the agreeing rounds lead by 3 (accepted: `verified`,
`implications`) or the disagreeing ones by 3 or 15 rounds pass (`rejected_verification`).
The accepted implication carries its confidence (the share of agreeing rounds) and the
rounds in its explanation. Rejected claims are remembered and not asked again while the
titles stay the same. With `verify` off (measurement only) claims are taken as said.

`batch_size` requests (discovery and verification together; verification first) are in
flight per round; the semaphore keeps at most `max_concurrent` running. Implications are
emitted as `ImplicationFound` with both current groups, and re-emitted with fresh groups when
either group changes, so pair expansion covers new markets.

Failures never cache "no implications": a failed target is retried later (backoff from 30 s,
at most `MAX_GROUP_RETRIES` times) and reported; a failed verification round is asked again
up to as many times, then the claim is rejected (`rejected_verify_failed`). Targets are
dispatched once no new or changed group has arrived for `SETTLE_S` (at most `SETTLE_MAX_S`
after the first of a stream that never pauses), so the first poll's burst is asked
against the whole catalogue and candidate sets (cache keys) are the same on every run. The
snapshot holds the catalogue, the implications found, the claims being verified with their
rounds, the rejected claims, and the targets not yet answered (pending or in flight) —
inputs, not futures — so a resumed flow re-sends exactly what had not finished. A closed
event (an empty group) leaves the catalogue; its implications go out once more with the
empty group, which retracts their pairs. `on_eof` waits for the requests in flight and the
claims being verified, emits their results and stops the runner. Without an API key the step
emits nothing and says so once.

Bounds: each group's prompt title (`prompt_title`: control characters out, at most
`MAX_TITLE_CHARS`) is computed once when it enters the catalogue, and only that text goes to
retrieval, prompts and cache keys, so a 1 MB title costs one short line. Requests carry
`max_tokens`; the client caps the reply and its items and returns (and caches) only the items
naming a candidate id; rejections are counted `rejected_<kind>` in group "llm".

Everything the step needs is handed in: an `LLMStepConfig` of primitives (the flow maps its
settings to it) and the metric groups "llm" and "cache".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulLogic

from connectors.llm.client import ImplicationClient, LLMCache, LLMFailure
from connectors.llm.protocol import implications_from_answer, prompt_title
from connectors.llm.runner import AsyncRunner
from operators.guard import guarded_logic
from operators.retrieval import RetrievalIndex
from operators.verification import (
    ACCEPT,
    ASK,
    MAX_IMPLICATIONS_PER_TARGET,
    Tally,
    confidence,
    decide,
    over_target_cap,
    structural_reason,
    suspect_title,
)
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Group, GroupImplication, ImplicationFound

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)

POLL = timedelta(milliseconds=20)
#: targets wait until no group arrived for this long, so a burst (the first poll) is asked
#: against the whole catalogue: candidate sets, and so cache keys, do not depend on timing
SETTLE_S = 0.3
#: only a new or changed group restarts the wait (the same group again adds nothing to ask
#: against); new groups that keep coming less than `SETTLE_S` apart hold dispatch back at most
#: this long, so a due retry is never starved by an endless stream
SETTLE_MAX_S = 60.0
MAX_GROUP_RETRIES = 3
RETRY_BASE_S = 30.0


@dataclass(frozen=True)
class LLMStepConfig:
    """What the LLM step and its client need, as primitives (the flow maps its settings here;
    the defaults are the settings' documented defaults). No API key: the step is off."""

    base_url: str
    api_key: str | None = field(repr=False)
    model: str
    max_concurrent: int = 5
    batch_size: int = 10
    candidates_per_target: int = 40
    timeout_s: float = 60.0
    max_attempts: int = 6
    cache_max_entries: int = 100_000
    #: bound of the in-process cache in bytes (payload and keys), besides `cache_max_entries`
    cache_max_bytes: int = 64 << 20
    #: `max_tokens` of every request (the reply's length); None: the provider's default
    max_tokens: int | None = 2048
    #: answers are cached in this Redis (with `cache_ttl_s`) when set, else in-process
    redis_cache_url: str | None = None
    redis_key_prefix: str = "pas"
    cache_ttl_s: int = 3600
    #: how long `on_eof` waits for unfinished requests
    eof_timeout_s: float = 120.0
    #: verification rounds before a claim becomes an implication (operators/verification.py);
    #: off only to measure what it buys (bench/llm_precision.py): claims are then taken as said
    verify: bool = True
    #: keep events whose title reads like instructions to a model out of every prompt
    screen_titles: bool = True
    #: an answer claiming more implications for its target than this is rejected whole
    max_implications_per_target: int = MAX_IMPLICATIONS_PER_TARGET

    @property
    def enabled(self) -> bool:
        return self.api_key is not None


def make_client(config: LLMStepConfig, metrics: MetricGroup, cache_metrics: MetricGroup) -> ImplicationClient:
    """The step's client: `config`'s endpoint and model, its cache (Redis or in-process)."""
    cache = LLMCache(cache_metrics, max_entries=config.cache_max_entries, max_bytes=config.cache_max_bytes,
                     redis_url=config.redis_cache_url, redis_key_prefix=config.redis_key_prefix,
                     ttl_seconds=config.cache_ttl_s)
    return ImplicationClient(base_url=config.base_url, api_key=config.api_key, model=config.model, cache=cache,
                             metrics=metrics, timeout_s=config.timeout_s, max_attempts=config.max_attempts,
                             max_tokens=config.max_tokens)


@dataclass
class CatalogState:
    groups: dict[str, Group] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # targets to ask (incl. in flight at snapshot)
    retry_at: dict[str, tuple[float, int]] = field(default_factory=dict)  # target -> (wall time, attempts)
    found: dict[tuple[str, str], GroupImplication] = field(default_factory=dict)
    done: int = 0
    #: claims being verified: (premise, conclusion) -> (the claim, its rounds so far, failed requests)
    claims: dict[tuple[str, str], tuple[GroupImplication, Tally, int]] = field(default_factory=dict)
    #: claims turned down, and why; not asked again while the two titles stay the same
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)


def _signature(g: Group) -> tuple[str, tuple[str, ...]]:
    return g.title, tuple(sorted(m.market_id for m in g.markets))


class CatalogLogic(StatefulLogic):
    """The catalogue's logic. Owns its `AsyncRunner` (created with the first request, stopped
    by `on_eof` or `close()`) and its client (from `client_factory`, closed with the runner)."""

    def __init__(self, config: LLMStepConfig, client_factory: Callable[[], ImplicationClient],
                 resume: CatalogState | None, *, metrics: MetricGroup) -> None:
        self.config = config
        self.enabled = config.enabled
        self.client_factory = client_factory
        self.metrics = metrics
        self.eof_timeout = config.eof_timeout_s
        self._disabled_logged = False
        self._runner_: AsyncRunner | None = None
        self._closed = False
        self.state = resume or CatalogState()
        self.index = RetrievalIndex()
        self.shown: dict[str, str] = {}  # event id -> its prompt title, computed once per catalogue entry
        for g in self.state.groups.values():
            self._enter(g)
        self.inflight: dict[str, tuple[Future[Any], dict[str, str]]] = {}
        self.vinflight: dict[tuple[str, str], Future[Any]] = {}  # verification rounds in flight
        self._client: ImplicationClient | None = None
        self._last_progress = 0.0
        self._started = time.monotonic()
        self._done_at_start = self.state.done
        self._last_group_at = 0.0
        self._settling_since: float | None = None  # first group arrival not yet followed by a dispatch
        if self.enabled and (self.state.pending or self.state.claims):
            log.info("llm_resumed", unfinished_targets=len(self.state.pending), unverified_claims=len(self.state.claims))
            self._dispatch(force=True)  # re-send exactly what had not finished

    # --------------------------------------------------------------------- helpers
    def _enter(self, g: Group) -> None:
        shown = self.shown[g.event_id] = prompt_title(g.title)
        self.index.upsert(g.event_id, shown)

    def _runner(self) -> AsyncRunner:
        if self._runner_ is None:
            self._runner_ = AsyncRunner(self.config.max_concurrent, self.metrics)
        return self._runner_

    def close(self) -> None:
        """Stop the runner: requests still in flight are cancelled (they stay unfinished in
        the snapshot) and the client's connections closed. The logic dispatches no more."""
        self._closed = True
        runner, self._runner_ = self._runner_, None
        if runner is not None:
            client = self._client
            runner.stop(cleanup=client.aclose if client is not None else None)

    def _get_client(self) -> ImplicationClient:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def _emit_for(self, imp: GroupImplication) -> ImplicationFound | None:
        p = self.state.groups.get(imp.premise_event_id)
        c = self.state.groups.get(imp.conclusion_event_id)
        return ImplicationFound(imp, p, c) if p is not None and c is not None else None

    def _dispatch(self, *, force: bool = False) -> None:
        if self._closed:
            return
        if not force:
            now = time.monotonic()
            if now - self._last_group_at < SETTLE_S and (
                    self._settling_since is None or now - self._settling_since < SETTLE_MAX_S):
                return
        self._settling_since = None
        batch = max(self.config.batch_size, self.config.max_concurrent)
        now = time.time()
        for eid, (at, _n) in list(self.state.retry_at.items()):
            if at <= now and eid not in self.inflight and eid not in self.state.pending:
                self.state.pending.append(eid)
        for key, (_imp, tally, _fails) in self.state.claims.items():
            if len(self.inflight) + len(self.vinflight) >= batch:
                break
            premise, conclusion = self.shown.get(key[0]), self.shown.get(key[1])
            if key in self.vinflight or premise is None or conclusion is None:
                continue
            client = self._get_client()
            self.vinflight[key] = self._runner().submit(
                lambda p=premise, c=conclusion, r=tally.rounds: client.verify(p, c, r))
        while self.state.pending and len(self.inflight) + len(self.vinflight) < batch:
            eid = self.state.pending.pop(0)
            target = self.state.groups.get(eid)
            if target is None or eid in self.inflight:
                continue
            cands = self.index.candidates(eid, self.config.candidates_per_target)
            by_title = {self.shown[c]: c for c in cands if c in self.shown}
            titles = list(by_title)
            if not titles:
                self.state.done += 1
                continue  # nothing to compare with yet; a later group will ask with this one as candidate
            client = self._get_client()
            fut = self._runner().submit(lambda t=self.shown[eid], c=titles: client.ask(t, c))
            self.inflight[eid] = (fut, by_title)
            self.metrics.inc("targets_submitted")

    def _harvest(self, block: float | None = None) -> list[ImplicationFound]:
        if block is not None:
            for fut in [f for f, _ in self.inflight.values()] + list(self.vinflight.values()):
                try:
                    fut.result(timeout=block)
                except Exception:
                    pass
        out = self._harvest_targets()
        out += self._harvest_rounds()
        self._progress()
        return out

    def _harvest_targets(self) -> list[ImplicationFound]:
        out: list[ImplicationFound] = []
        for eid, (fut, by_title) in list(self.inflight.items()):
            if not fut.done() or fut.cancelled():
                continue  # cancelled: the runner was stopped; the target stays unfinished
            del self.inflight[eid]
            target = self.state.groups.get(eid)
            try:
                answer = fut.result()
            except Exception as exc:  # a failed request, or anything unexpected: retry the group later
                kind = exc.kind if isinstance(exc, LLMFailure) else type(exc).__name__
                _, attempts = self.state.retry_at.get(eid, (0.0, 0))
                if attempts + 1 > MAX_GROUP_RETRIES:
                    self.state.retry_at.pop(eid, None)
                    self.metrics.inc("groups_failed")
                    log.error("llm_group_failed", event_id=eid, kind=kind, attempts=attempts + 1)
                    self.state.done += 1
                else:
                    delay = RETRY_BASE_S * (2 ** attempts)
                    self.state.retry_at[eid] = (time.time() + delay, attempts + 1)
                    self.metrics.inc("groups_retry_scheduled")
                    log.warning("llm_group_retry_later", event_id=eid, kind=kind, retry_in_s=delay)
                continue
            self.state.retry_at.pop(eid, None)
            self.state.done += 1
            if target is None:
                continue
            rejected: Counter[str] = Counter()
            imps, unmatched = implications_from_answer(answer, target, by_title, self.config.model, rejected=rejected)
            if unmatched:
                self.metrics.inc("unmatched_titles", unmatched)
            for kind, n in rejected.items():
                self.metrics.inc(f"rejected_{kind}", n)
            if over_target_cap(len(imps), self.config.max_implications_per_target):
                self.metrics.inc("rejected_over_target_cap")
                log.warning("llm_answer_over_target_cap", event_id=eid, claims=len(imps),
                            cap=self.config.max_implications_per_target)
                continue
            for imp in imps:
                out += self._claim(imp)
        return out

    def _claim(self, imp: GroupImplication) -> list[ImplicationFound]:
        """A claim of the discovery answer: emitted again if known, else checked and queued
        for verification (or taken as said when verification is off)."""
        key = (imp.premise_event_id, imp.conclusion_event_id)
        premise, conclusion = self.state.groups.get(key[0]), self.state.groups.get(key[1])
        if premise is None or conclusion is None:
            return []  # a candidate closed while the request was in flight
        if key in self.state.found:
            found = self._emit_for(self.state.found[key])
            return [found] if found is not None else []
        if key in self.state.claims or key in self.state.rejected:
            return []
        self.metrics.inc("claims")
        reason = structural_reason(premise, conclusion)
        if reason is not None:
            self.state.rejected[key] = reason
            self.metrics.inc(f"rejected_structural_{reason}")
            return []
        if not self.config.verify:
            return self._accept(key, imp)
        self.state.claims[key] = (imp, Tally(), 0)
        return []

    def _accept(self, key: tuple[str, str], imp: GroupImplication) -> list[ImplicationFound]:
        self.state.found[key] = imp
        self.metrics.inc("implications")
        found = self._emit_for(imp)
        return [found] if found is not None else []

    def _harvest_rounds(self) -> list[ImplicationFound]:
        """Verification rounds that came back: tally, then accept, reject or ask again."""
        out: list[ImplicationFound] = []
        for key, fut in list(self.vinflight.items()):
            if not fut.done() or fut.cancelled():
                continue
            del self.vinflight[key]
            claim = self.state.claims.get(key)
            if claim is None:
                continue  # an event of the claim closed meanwhile
            imp, tally, fails = claim
            try:
                agrees = bool(fut.result())
            except Exception as exc:  # a failed request: ask the same round again, a few times
                kind = exc.kind if isinstance(exc, LLMFailure) else type(exc).__name__
                if fails + 1 > MAX_GROUP_RETRIES:
                    del self.state.claims[key]
                    self.state.rejected[key] = "verify_failed"
                    self.metrics.inc("rejected_verify_failed")
                    log.error("llm_verification_failed", premise=key[0], conclusion=key[1], kind=kind)
                else:
                    self.state.claims[key] = (imp, tally, fails + 1)
                continue
            tally = tally.add(agrees)
            verdict = decide(tally)
            if verdict == ASK:
                self.state.claims[key] = (imp, tally, fails)
                continue
            del self.state.claims[key]
            if verdict != ACCEPT:
                self.state.rejected[key] = "verification"
                self.metrics.inc("rejected_verification")
                log.info("llm_claim_rejected", premise=key[0], conclusion=key[1], agree=tally.agree,
                         disagree=tally.disagree)
                continue
            self.metrics.inc("verified")
            note = f"Verified: {tally.agree} of {tally.rounds} joint-outcome reviews agree."
            out += self._accept(key, replace(imp, confidence=confidence(tally),
                                             explanation=f"{imp.explanation} {note}".strip()))
        return out

    def _progress(self) -> None:
        backlog = len(self.state.pending) + len(self.inflight)
        self.metrics.set("claims_pending", len(self.state.claims))
        self.metrics.set("backlog", backlog)
        self.metrics.set("done", self.state.done)
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
            if not self._disabled_logged:
                self._disabled_logged = True
                log.warning("llm_disabled", detail="no OPENROUTER_API_KEY: only rule implications are produced")
            return [], StatefulLogic.RETAIN
        if not group.markets:  # the event closed: retract its pairs, forget it
            if group.event_id in self.state.groups:
                self.metrics.inc("groups_closed")
            return self._forget(group), StatefulLogic.RETAIN
        if self.config.screen_titles and suspect_title(group.title):
            # text addressed to a model: the event stays out of every prompt (and leaves if it was in)
            self.metrics.inc("rejected_suspect_title")
            _limited.warning("suspect_title", "llm_suspect_title", event_id=group.event_id,
                             title=group.title[:120])
            return self._forget(replace(group, markets=())), StatefulLogic.RETAIN
        old = self.state.groups.get(group.event_id)
        self.state.groups[group.event_id] = group
        out: list[ImplicationFound] = []
        if old is None or _signature(old) != _signature(group):
            self._last_group_at = time.monotonic()
            if self._settling_since is None:
                self._settling_since = self._last_group_at
            # claims turned down with the old group are judged afresh: on structure when its
            # markets changed, on everything when its title did
            retitled = old is not None and old.title != group.title
            for key, why in list(self.state.rejected.items()):
                if group.event_id in key and (retitled or why not in ("verification", "verify_failed")):
                    del self.state.rejected[key]
            if old is None or old.title != group.title:
                self._enter(group)
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
        self.shown.pop(eid, None)
        self.state.pending = [e for e in self.state.pending if e != eid]
        self.state.retry_at.pop(eid, None)
        for table in (self.state.claims, self.state.rejected):
            for key in [k for k in table if eid in k]:
                del table[key]
        out: list[ImplicationFound] = []
        for key, imp in list(self.state.found.items()):
            if eid not in key:
                continue
            del self.state.found[key]
            other = self.state.groups.get(key[1] if key[0] == eid else key[0])
            if other is not None:
                premise, conclusion = (gone, other) if key[0] == eid else (other, gone)
                out.append(ImplicationFound(imp, premise, conclusion))
        return out

    def on_notify(self) -> tuple[list[ImplicationFound], bool]:
        out = self._harvest()
        self._dispatch()
        return out, StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[ImplicationFound], bool]:
        out: list[ImplicationFound] = []
        if self._closed:
            return out, StatefulLogic.RETAIN
        deadline = time.monotonic() + self.eof_timeout
        while self.unfinished() and time.monotonic() < deadline:
            self._dispatch(force=True)
            out += self._harvest(block=max(0.0, deadline - time.monotonic()))
        if self.unfinished():
            log.error("llm_unfinished_at_eof", targets=len(self.inflight) + len(self.state.pending),
                      claims=len(self.state.claims))
        self.close()
        return out, StatefulLogic.RETAIN

    def unfinished(self) -> bool:
        """True while a target or a claim has work left (queued, in flight or being verified)."""
        return bool(self.inflight or self.state.pending or self.vinflight or self.state.claims)

    def notify_at(self) -> datetime | None:
        if self._closed:
            return None
        now = datetime.now(timezone.utc)
        if self.unfinished():
            return now + POLL
        if self.state.retry_at:
            first = min(at for at, _ in self.state.retry_at.values())
            return datetime.fromtimestamp(first, timezone.utc)
        return None

    def snapshot(self) -> CatalogState:
        s = self.state
        unfinished = list(self.inflight) + [e for e in s.pending if e not in self.inflight]
        return CatalogState(dict(s.groups), unfinished, dict(s.retry_at), dict(s.found), s.done,
                            dict(s.claims), dict(s.rejected))


def llm_implications(step_id: str, up: Stream[tuple[str, Group]], config: LLMStepConfig, *,
                     metrics: MetricGroup, cache_metrics: MetricGroup,
                     client_factory: Callable[[], ImplicationClient] | None = None,
                     steps: MetricGroup | None = None) -> Stream[ImplicationFound]:
    """Groups (all keyed "catalog") in, implications with both groups out. `metrics` is the
    group "llm", `cache_metrics` the group "cache"; with `steps`, a callback that raises drops
    its item (counted there) instead of ending the flow."""
    if client_factory is None:
        def client_factory() -> ImplicationClient:
            return make_client(config, metrics, cache_metrics)

    found = op.stateful(step_id, up, guarded_logic(
        step_id, lambda resume: CatalogLogic(config, client_factory, resume, metrics=metrics), steps))
    return op.map(f"{step_id}_unkey", found, lambda kv: kv[1])
