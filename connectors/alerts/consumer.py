"""Alert delivery: one task per sink reading the change stream through its own consumer group.

Each sink `S` has the consumer group `alerts:S` on the change stream, its de-duplication set
(`alerts:S:alerted`) and a delivery log (`alerts:S:log`) in Redis. For every entry, in stream
order, the sink's `AlertGate` decides; a send goes through the sink's `SinkClient`. After each
delivered alert (and at the end of every batch) one MULTI commits the set changes, the log
entry and the XACK of every entry handled so far, so:

- a restart resumes where the group stands: entries read but not acknowledged (the process
  died mid-batch) come back first from the group's pending list and are handled again from the
  committed state, so nothing is lost and nothing already committed is sent twice. The one
  window left is a crash between the sink's 2xx and that commit (the generic webhook carries
  an `Idempotency-Key` for it);
- a sink that fails or is rate limited only holds up its own task and group; the others read on;
- a sink that is unavailable (every attempt of a send failed) keeps the entry and retries
  after a backoff, until it is delivered or older than the sink's `max_age_seconds` (then it
  is counted `skipped_stale_S` and not sent: an arbitrage lives seconds);
- a refused message (a permanent 4xx) is logged, counted and marked alerted (no repeat storm);
- a malformed entry is logged, counted (`rejected_malformed_S`) and acknowledged.

Run one `polyalphascan alerts` process per set of sinks: the consumer name is fixed, so a
restarted process picks up its own pending entries.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from connectors.alerts.client import SinkClient, SinkRefused, SinkUnavailable
from connectors.alerts.protocol import build_request
from connectors.redis.layout import RedisKeys
from polyalphascan.alert_settings import SinkSettings
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.alert_policy import AlertGate, backoff
from polyalphascan.opportunities import Change, MalformedChange, parse_change

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)
CONSUMER = "alerts"
LOG_MAX_LEN = 10_000


@dataclass
class _Pending:
    """What is handled but not yet committed."""

    ids: list[str] = field(default_factory=list)
    set_ops: list[tuple[str, str]] = field(default_factory=list)  # ("add" | "rem", id)
    sent: list[tuple[str, str, int]] = field(default_factory=list)  # (entry, id, latency ms)


async def ensure_group(client: aioredis.Redis, stream: str, group: str, start: str = "$") -> None:
    try:
        await client.xgroup_create(stream, group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class SinkWorker:
    """One sink's loop (see the module docstring)."""

    def __init__(self, sink: SinkSettings, client: aioredis.Redis, keys: RedisKeys, *, market_url: str,
                 metrics: MetricGroup, http_client: SinkClient | None = None, batch: int = 100,
                 block_ms: int = 500, backoff_initial: float = 0.5, backoff_max: float = 30.0) -> None:
        self.sink = sink
        self.name = sink.name
        self.redis = client
        self.keys = keys
        self.market_url = market_url
        self.metrics = metrics
        rate, burst = sink.rate
        self.http = http_client or SinkClient(sink.name, sink.type, rate=rate, burst=burst,
                                              max_attempts=sink.max_attempts, timeout=sink.timeout_seconds,
                                              backoff_initial=backoff_initial, backoff_max=backoff_max,
                                              metrics=metrics)
        self.endpoint = sink.endpoint()
        self.batch = batch
        self.block_ms = block_ms
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.group = keys.alerts_group(sink.name)
        self.gate: AlertGate | None = None
        self.stopping = asyncio.Event()

    async def start_state(self) -> None:
        await ensure_group(self.redis, self.keys.changes, self.group)
        members = await self.redis.smembers(self.keys.alerts_alerted(self.name))
        self.gate = AlertGate(self.sink.filter, (m.decode() for m in members))

    async def run(self) -> None:
        """Until `stopping` is set; survives Redis outages (retries with backoff)."""
        failures = 0
        while not self.stopping.is_set():
            try:
                if self.gate is None:
                    await self.start_state()
                await self._consume()
                return
            except RedisError as exc:
                failures += 1
                self.metrics.inc(f"errors_redis_{self.name}")
                _limited.warning(f"redis:{self.name}", "alert_sink_redis_error", sink=self.name, error=str(exc)[:200])
                self.gate = None  # reload the committed state: what was handled uncommitted comes back pending
                await self._wait(backoff(failures, 0.2, 5.0))

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _consume(self) -> None:
        cursor = "0"  # first this consumer's pending entries (read before a crash), then new ones
        stream = self.keys.changes
        while not self.stopping.is_set():
            resp = await self.redis.xreadgroup(self.group, CONSUMER, {stream: cursor}, count=self.batch,
                                               block=None if cursor != ">" else self.block_ms)
            entries = resp[0][1] if resp else []
            if cursor != ">" and not entries:
                cursor = ">"
                continue
            pending = _Pending()
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                if cursor != ">":
                    cursor = eid
                done = await self._handle(eid, fields, pending)
                if not done:  # stopping while a send waited: leave the entry pending
                    break
            await self._commit(pending)

    async def _handle(self, eid: str, fields: dict[Any, Any] | None, pending: _Pending) -> bool:
        assert self.gate is not None
        m, n = self.metrics, self.name
        try:
            if not fields:  # the entry was trimmed from the stream while pending
                raise MalformedChange("trimmed")
            change = parse_change(eid, fields)
        except MalformedChange as exc:
            m.inc(f"rejected_malformed_{n}")
            _limited.warning(f"malformed:{n}:{exc.kind}", "alert_entry_malformed", sink=n, entry=eid, kind=exc.kind)
            pending.ids.append(eid)
            return True
        decision = self.gate.decide(change)
        if decision.send:
            age_s = time.time() - change.entry_ms / 1000
            if age_s > self.sink.max_age_seconds:
                m.inc(f"skipped_stale_{n}")
                pending.ids.append(eid)
                return True
            outcome = await self._deliver(change, fields, pending)
            if outcome is None:
                return False
            if outcome == "stale":  # not announced: its next fresh update may alert
                pending.ids.append(eid)
                return True
        self.gate.apply(decision)
        if decision.alerted_add:
            pending.set_ops.append(("add", decision.alerted_add))
        if decision.alerted_remove:
            pending.set_ops.append(("rem", decision.alerted_remove))
        pending.ids.append(eid)
        if decision.send:
            await self._commit(pending)  # a delivered alert is committed at once
        return True

    async def _deliver(self, change: Change, fields: dict[Any, Any], pending: _Pending) -> str | None:
        """"delivered"; "refused" (marked alerted anyway: no repeats); "stale" (gave up, too old);
        None: stopping before it was delivered."""
        m, n = self.metrics, self.name
        raw = fields.get(b"data", fields.get("data"))
        data = orjson.loads(raw) if self.sink.type == "webhook" and raw else None
        request = build_request(self.sink.type, change, sink=n, url=self.endpoint, market_url=self.market_url,
                                chat_id=self.sink.chat_id or "", data=data)
        failures = 0
        while not self.stopping.is_set():
            try:
                await self.http.send(request)
            except SinkRefused as exc:
                log.error("alert_refused", sink=n, id=change.id, error=str(exc)[:300])
                return "refused"
            except SinkUnavailable as exc:
                failures += 1
                log.warning("alert_sink_unavailable", sink=n, id=change.id, error=str(exc)[:300])
                if time.time() - change.entry_ms / 1000 > self.sink.max_age_seconds:
                    m.inc(f"skipped_stale_{n}")
                    return "stale"
                await self._wait(backoff(failures, self.backoff_initial, self.backoff_max))
                continue
            latency = max(0, int(time.time() * 1000) - change.entry_ms)
            m.inc(f"delivered_{n}")
            m.observe(f"delivery_latency_ms_{n}", latency)
            pending.sent.append((change.entry_id, change.id, latency))
            log.info("alert_delivered", sink=n, id=change.id, kind=change.opportunity.kind if change.opportunity else "",
                     latency_ms=latency)
            return "delivered"
        return None

    async def _commit(self, pending: _Pending) -> None:
        if not pending.ids:
            return
        k, n = self.keys, self.name
        pipe = self.redis.pipeline(transaction=True)
        for op, cid in pending.set_ops:
            (pipe.sadd if op == "add" else pipe.srem)(k.alerts_alerted(n), cid)
        for entry, cid, latency in pending.sent:
            pipe.xadd(k.alerts_log(n), {"entry": entry, "id": cid, "latency_ms": latency}, maxlen=LOG_MAX_LEN,
                      approximate=True)
        pipe.xack(k.changes, self.group, *pending.ids)
        await pipe.execute()
        pending.ids.clear()
        pending.set_ops.clear()
        pending.sent.clear()

    async def aclose(self) -> None:
        await self.http.aclose()


class AlertService:
    """Every sink's worker on one event loop; `stop()` lets each finish its current entry."""

    def __init__(self, sinks: list[SinkSettings], redis_url: str, prefix: str, *, market_url: str,
                 metrics: MetricGroup, **worker_kw: Any) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        keys = RedisKeys(prefix)
        self.workers = [SinkWorker(s, self.redis, keys, market_url=market_url, metrics=metrics, **worker_kw)
                        for s in sinks]

    async def run(self) -> None:
        for w in self.workers:
            log.info("alert_sink_started", sink=w.name, type=w.sink.type, filter=str(w.sink.filter))
        try:
            await asyncio.gather(*(w.run() for w in self.workers))
        finally:
            for w in self.workers:
                await w.aclose()
            await self.redis.aclose()

    def stop(self) -> None:
        for w in self.workers:
            w.stopping.set()
