"""Redis sinks: live portfolios, ranking, change stream, alerts; and the metrics writer.

`PortfolioSink` is a Bytewax `DynamicSink`. `write_batch` never talks to Redis itself: it
hands the batch to a per-partition writer thread and returns at once, so a slow or absent
Redis never stalls the dataflow. The writer coalesces per portfolio (the newest change
wins), writes with one pipeline per round, and on a Redis error keeps everything it could
not write and retries with backoff until Redis is back (the pending set is bounded by the
number of live portfolios; `sink.pending` reports it). Each write is one Lua script, so a
replayed change (at-least-once delivery after recovery) is a no-op: identical or older
data writes nothing, a removal of an absent portfolio writes nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis_layout import SCHEMA_VERSION, RedisKeys
from connectors.redis_restart import RestartWatch
from polyalphascan.records import PortfolioChange, PortfolioRemoved, PortfolioUpsert
from polyalphascan.logs import get_logger
from polyalphascan.metrics import all_metrics, metrics

log = get_logger(__name__)
_m = metrics("sink")

# KEYS: hash, ranking, opportunities, stream, alerts channel
# ARGV: id, data (the portfolio JSON: the script reads its numbers, so the writer thread
#       formats nothing twice and Redis does that work on its own core), maxlen
_UPSERT = """
local cur = redis.call('HMGET', KEYS[1], 'data', 'updated_ms', 'tier', 'profit')
if cur[1] == ARGV[2] then return 0 end
local d = cjson.decode(ARGV[2])
if cur[2] and tonumber(cur[2]) > d.updated_ms then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'updated_ms', string.format('%d', d.updated_ms),
  'expected_profit', d.expected_profit, 'profit', d.profit, 'tier', d.tier, 'kind', d.kind,
  'guaranteed', d.guaranteed and 1 or 0, 'cost', d.cost, 'payout', d.payout, 'profit_pct', d.profit_pct,
  'coverage', d.coverage, 'size_at_profit', d.size_at_profit)
redis.call('ZADD', KEYS[2], d.expected_profit, ARGV[1])
local profitable = d.profit > 1e-9
if profitable then redis.call('ZADD', KEYS[3], d.profit, ARGV[1]) else redis.call('ZREM', KEYS[3], ARGV[1]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'op', 'upsert', 'id', ARGV[1], 'data', ARGV[2])
local alerts = 0
if d.tier == 1 and (not cur[3] or tonumber(cur[3]) ~= 1) then
  redis.call('PUBLISH', KEYS[5], '{"alert":"tier1","id":"' .. ARGV[1] .. '","data":' .. ARGV[2] .. '}')
  alerts = alerts + 1
end
if profitable and (not cur[4] or tonumber(cur[4]) <= 1e-9) then
  redis.call('PUBLISH', KEYS[5], '{"alert":"profitable","id":"' .. ARGV[1] .. '","data":' .. ARGV[2] .. '}')
  alerts = alerts + 1
end
return 1 + alerts
"""

# KEYS: hash, ranking, opportunities, stream   ARGV: id, reason, maxlen
_REMOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'op', 'remove', 'id', ARGV[1], 'data', '', 'reason', ARGV[2])
return 1
"""


def change_key(change: PortfolioChange) -> str:
    return change.quote.cover_id if isinstance(change, PortfolioUpsert) else change.cover_id


def portfolio_json(change: PortfolioUpsert) -> bytes:
    """The `data` field: the priced portfolio plus the legs' questions and the explanation."""
    q = change.quote
    legs = [
        {
            "market_id": lq.market_id,
            "side": lq.side.value,
            "token_id": lq.token_id,
            "ask": lq.ask,
            "ask_size": lq.ask_size,
            "question": leg.question,
            "event_id": leg.event_id,
        }
        for lq, leg in zip(q.legs, change.spec.legs)
    ]
    return orjson.dumps(
        {
            "id": q.cover_id,
            "kind": q.kind.value,
            "guaranteed": q.guaranteed,
            "legs": legs,
            "cost": q.cost,
            "payout": q.payout,
            "profit": q.profit,
            "profit_pct": q.profit_pct,
            "coverage": q.coverage,
            "loss_probability": q.loss_probability,
            "expected_profit": q.expected_profit,
            "tier": q.tier,
            "size_at_profit": q.size_at_profit,
            "updated_ms": q.updated_ms,
            "explanation": change.spec.explanation,
        }
    )


class PortfolioWriter:
    """Write-behind writer: coalescing pending map + a thread that writes it to Redis."""

    def __init__(
        self,
        redis_url: str,
        keys: RedisKeys,
        *,
        stream_max_len: int = 100_000,
        max_batch: int = 2000,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
    ) -> None:
        self.keys = keys
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.stream_max_len = stream_max_len
        self.max_batch = max_batch
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._pending: dict[str, PortfolioChange] = {}
        # the newest upsert of every live portfolio: rewritten if Redis comes back empty
        self._live: dict[str, PortfolioUpsert] = {}
        self._restarts = RestartWatch(self.client)
        self._cv = threading.Condition()
        self._closing = False
        self._upsert = self.client.register_script(_UPSERT)
        self._remove = self.client.register_script(_REMOVE)
        self._thread = threading.Thread(target=self._run, name="portfolio-writer", daemon=True)
        self._thread.start()

    # called on the Bytewax worker: never blocks on Redis
    def submit(self, changes: list[PortfolioChange]) -> None:
        with self._cv:
            for change in changes:
                key = change_key(change)
                if key in self._pending:
                    _m.inc("coalesced")
                self._pending[key] = change
                if isinstance(change, PortfolioUpsert):
                    self._live[key] = change
                else:
                    self._live.pop(key, None)
            _m.set("pending", len(self._pending))
            self._cv.notify()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._pending)

    def _take(self) -> dict[str, PortfolioChange]:
        with self._cv:
            if not self._pending and not self._closing:
                self._cv.wait(0.5)
            batch: dict[str, PortfolioChange] = {}
            for key in list(self._pending)[: self.max_batch]:
                batch[key] = self._pending.pop(key)
            return batch

    def _putback(self, batch: dict[str, PortfolioChange]) -> None:
        with self._cv:
            for key, change in batch.items():
                self._pending.setdefault(key, change)  # a newer change that arrived meanwhile wins
            _m.set("pending", len(self._pending))

    def write_now(self, batch: dict[str, PortfolioChange]) -> list[int]:
        """One pipelined round trip for the batch; returns each script's result."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.scripts.add(self._upsert)  # execute() loads it first if Redis lost it (a restart)
        maxlen = str(self.stream_max_len)
        upsert = pipe.evalsha  # the hot path: no per-call Script wrapper
        ranking, opportunities, changes, alerts = k.ranking, k.opportunities, k.changes, k.alerts
        for key, change in batch.items():
            if isinstance(change, PortfolioUpsert):
                upsert(self._upsert.sha, 5, k.portfolio(key), ranking, opportunities, changes, alerts,
                       key, portfolio_json(change), maxlen)
            else:
                self._remove(
                    keys=[k.portfolio(key), k.ranking, k.opportunities, k.changes],
                    args=[key, change.reason, maxlen],
                    client=pipe,
                )
        pipe.set(k.schema, SCHEMA_VERSION)
        return [int(r) for r in pipe.execute()[:-1]]

    def _check_restart(self, force: bool = False) -> None:
        """A Redis that restarted may have come back empty: rewrite every live portfolio
        (the Lua guards make this a no-op where the data survived)."""
        if not self._restarts.restarted(force=force):
            return
        with self._cv:
            for key, change in self._live.items():
                self._pending.setdefault(key, change)
            n = len(self._live)
        _m.inc("restarts_detected")
        log.warning("redis_restart_detected_rewriting", portfolios=n)

    def _run(self) -> None:
        self._check_restart(force=True)
        delay = self.backoff_initial
        down_since: float | None = None
        while True:
            if down_since is None:
                self._check_restart()  # also catches a restart that happened while idle
            batch = self._take()
            if not batch:
                if self._closing:
                    return
                continue
            try:
                results = self.write_now(batch)
            except redis.RedisError as exc:
                self._putback(batch)
                _m.inc("write_errors")
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("redis_write_failed_retrying", error=str(exc), pending=self.pending)
                if self._closing and time.monotonic() - down_since > 10:
                    log.error("redis_unavailable_at_close", lost=self.pending)
                    return
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            if down_since is not None:
                log.info("redis_write_recovered", down_s=round(time.monotonic() - down_since, 2))
                down_since = None
                self._check_restart(force=True)
            delay = self.backoff_initial
            now_ms = time.time() * 1000
            for change in batch.values():  # exchange timestamp of the newest leg price -> in Redis
                if isinstance(change, PortfolioUpsert) and change.quote.updated_ms:
                    _m.observe("latency_ms", now_ms - change.quote.updated_ms)
            written = sum(1 for r in results if r > 0)
            _m.inc("written", written)
            _m.inc("noop", len(results) - written)
            _m.inc("alerts", sum(r - 1 for r in results if r > 1))
            _m.set("pending", self.pending)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted is written (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cv:
                if not self._pending:
                    break
                self._cv.notify()
            time.sleep(0.01)
        # the last taken batch may still be in flight: one more check round
        return self.pending == 0

    def close(self, timeout: float = 15.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)
        self.client.close()


class _PortfolioPartition(StatelessSinkPartition[PortfolioChange]):
    def __init__(self, writer: PortfolioWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[PortfolioChange]) -> None:
        self.writer.submit(items)

    def close(self) -> None:
        self.writer.close()


class PortfolioSink(DynamicSink[PortfolioChange]):
    def __init__(self, redis_url: str, prefix: str, *, stream_max_len: int = 100_000) -> None:
        self.redis_url = redis_url
        self.keys = RedisKeys(prefix)
        self.stream_max_len = stream_max_len

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PortfolioPartition:
        return _PortfolioPartition(PortfolioWriter(self.redis_url, self.keys, stream_max_len=self.stream_max_len))


# --------------------------------------------------------------------------- metrics
def process_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class MetricsWriter:
    """Copies this process's metric groups to Redis every `interval` seconds (TTL'd hashes)."""

    def __init__(self, redis_url: str, prefix: str, *, interval: float = 1.0, ttl: int = 30) -> None:
        self.keys = RedisKeys(prefix)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.interval = interval
        self.ttl = ttl
        self.process = process_name()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-writer", daemon=True)

    def start(self) -> "MetricsWriter":
        self._thread.start()
        return self

    def write_once(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for group, values in all_metrics().items():
            flat: dict[str, Any] = {
                k: (v if isinstance(v, (int, float, str)) else orjson.dumps(v).decode()) for k, v in values.items()
            }
            if not flat:
                continue
            key = self.keys.metrics(group, self.process)
            pipe.delete(key)
            pipe.hset(key, mapping=flat)
            pipe.expire(key, self.ttl)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write_once()
            except redis.RedisError:
                _m.inc("metrics_write_errors")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.write_once()
        except redis.RedisError:
            pass
        self.client.close()


def read_metrics(client: redis.Redis, keys: RedisKeys, group: str) -> dict[str, float]:
    """Sum of a metric group's numeric fields over every live process."""
    total: dict[str, float] = {}
    for key in client.scan_iter(match=keys.metrics_pattern(group), count=100):
        for field, raw in client.hgetall(key).items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            total[name] = total.get(name, 0.0) + value
    return total
