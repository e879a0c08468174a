"""Token registry in Redis: which YES tokens each WebSocket shard subscribes.

Every process reads it, so shards spread over workers and processes agree. Assignment is
one Lua script (atomic): a token keeps its shard while subscribed; a new token goes to the
lowest shard with room; a removed token frees its slot, which the oldest overflow token
takes. Tokens beyond `max_shards × tokens_per_shard` wait in the overflow set — counted,
never silently dropped. `version` increments on every change, so shards re-read their set
only when something changed.

Keys (prefix P): `P:v1:tokens:shard:{i}` set of tokens; `P:v1:tokens:assign` hash token →
shard; `P:v1:tokens:info` hash token → JSON {market_id, no_token}; `P:v1:tokens:overflow`
sorted set (score = arrival order); `P:v1:tokens:version` counter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis_restart import RestartWatch
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import metrics
from polyalphascan.records import DeltaKind, EventDelta, Market
from polyalphascan.settings import Settings

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)
_m = metrics("ws")

# KEYS: assign, info, overflow, version, seq   ARGV: shards, cap, shard_prefix, then (token, info) pairs
_ADD = """
local shards, cap, sp = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local changed, overflow = 0, 0
for i = 4, #ARGV, 2 do
  local tok, info = ARGV[i], ARGV[i + 1]
  redis.call('HSET', KEYS[2], tok, info)
  if not redis.call('HGET', KEYS[1], tok) and not redis.call('ZSCORE', KEYS[3], tok) then
    local placed = false
    for s = 0, shards - 1 do
      if redis.call('SCARD', sp .. s) < cap then
        redis.call('SADD', sp .. s, tok); redis.call('HSET', KEYS[1], tok, s)
        placed = true; changed = changed + 1; break
      end
    end
    if not placed then
      redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), tok); overflow = overflow + 1
    end
  end
end
if changed > 0 or overflow > 0 then redis.call('INCR', KEYS[4]) end
return {changed, overflow}
"""

# KEYS: assign, info, overflow, version   ARGV: shards, cap, shard_prefix, tokens...
_REMOVE = """
local shards, cap, sp = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local removed = 0
for i = 4, #ARGV do
  local tok = ARGV[i]
  local s = redis.call('HGET', KEYS[1], tok)
  if s then
    redis.call('SREM', sp .. s, tok); redis.call('HDEL', KEYS[1], tok); removed = removed + 1
  end
  if redis.call('ZREM', KEYS[3], tok) == 1 then removed = removed + 1 end
  redis.call('HDEL', KEYS[2], tok)
end
-- freed slots go to the oldest waiting tokens
local promoted = 0
for s = 0, shards - 1 do
  while redis.call('SCARD', sp .. s) < cap do
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)
    if #head == 0 then break end
    redis.call('ZREM', KEYS[3], head[1]); redis.call('SADD', sp .. s, head[1]); redis.call('HSET', KEYS[1], head[1], s)
    promoted = promoted + 1
  end
end
if removed > 0 or promoted > 0 then redis.call('INCR', KEYS[4]) end
return {removed, promoted}
"""


class TokenRegistry:
    def __init__(self, client: redis.Redis, prefix: str, max_shards: int, tokens_per_shard: int) -> None:
        self.client = client
        self.max_shards = max_shards
        self.cap = tokens_per_shard
        base = f"{prefix}:v1:tokens"
        self.shard_prefix = f"{base}:shard:"
        self.assign_key = f"{base}:assign"
        self.info_key = f"{base}:info"
        self.overflow_key = f"{base}:overflow"
        self.version_key = f"{base}:version"
        self.seq_key = f"{base}:seq"
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._last_overflow = -1

    def add_markets(self, markets: Iterable[Market]) -> tuple[int, int]:
        """Register each open market's YES token; returns (newly placed, newly overflowed)."""
        args: list[str | bytes] = []
        for m in markets:
            if m.closed or not m.active:
                continue
            args += [m.yes_token, orjson.dumps({"market_id": m.id, "no_token": m.no_token})]
        if not args:
            return (0, 0)
        placed, over = 0, 0
        for i in range(0, len(args), 2000):  # keep each script call short
            p, o = self._add(keys=[self.assign_key, self.info_key, self.overflow_key, self.version_key, self.seq_key],
                             args=[self.max_shards, self.cap, self.shard_prefix, *args[i : i + 2000]])
            placed += int(p)
            over += int(o)
        self._report_overflow()
        return placed, over

    def remove_tokens(self, tokens: Iterable[str]) -> tuple[int, int]:
        toks = list(tokens)
        if not toks:
            return (0, 0)
        removed, promoted = self._remove(keys=[self.assign_key, self.info_key, self.overflow_key, self.version_key],
                                         args=[self.max_shards, self.cap, self.shard_prefix, *toks])
        self._report_overflow()
        return int(removed), int(promoted)

    def _report_overflow(self) -> None:
        n = self.overflow()
        _m.set("overflow_tokens", n)
        if n != self._last_overflow:
            if n > 0:
                log.warning("token_overflow", tokens_not_subscribed=n, capacity=self.max_shards * self.cap,
                            hint="raise WS_MAX_CONNECTIONS (or WS_TOKENS_PER_CONNECTION, max 500)")
            elif self._last_overflow > 0:
                log.info("token_overflow_cleared")
            self._last_overflow = n

    def shard_tokens(self, shard: int) -> set[str]:
        return {t.decode() for t in self.client.smembers(f"{self.shard_prefix}{shard}")}

    def shard_of(self, token: str) -> int | None:
        v = self.client.hget(self.assign_key, token)
        return int(v) if v is not None else None

    def overflow(self) -> int:
        return int(self.client.zcard(self.overflow_key))

    def version(self) -> int:
        return int(self.client.get(self.version_key) or 0)

    def complement(self, token: str) -> str | None:
        raw = self.client.hget(self.info_key, token)
        return orjson.loads(raw)["no_token"] if raw else None

    def complements(self, tokens: Iterable[str]) -> set[str]:
        """The NO tokens of these YES tokens (one HMGET): their book entries are expected, not errors."""
        toks = list(tokens)
        if not toks:
            return set()
        return {orjson.loads(raw)["no_token"] for raw in self.client.hmget(self.info_key, toks) if raw}


class RegistryWriter:
    """Write-behind for the registry: `submit` never blocks the worker; a thread applies the
    pending additions and removals, and keeps them (retrying with backoff) while Redis is
    unavailable, so no market is lost to an outage. Pending work is bounded by the number of
    distinct tokens (a later change to the same token replaces the earlier one)."""

    def __init__(self, registry: TokenRegistry, *, backoff_initial: float = 0.2, backoff_max: float = 5.0) -> None:
        self.registry = registry
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._pending: dict[str, Market | None] = {}  # yes token -> market to add, or None to remove
        self._live: dict[str, Market] = {}  # every open market registered: rewritten after a restart
        self._restarts = RestartWatch(registry.client)
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="token-registry-writer", daemon=True)
        self._thread.start()

    def submit(self, deltas: list[EventDelta]) -> None:
        with self._cv:
            for delta in deltas:
                if delta.kind is DeltaKind.MARKET_CLOSED:
                    closed = set(delta.closed_market_ids)
                    for m in delta.event.markets:
                        if m.id in closed and m.yes_token:
                            self._pending[m.yes_token] = None
                            self._live.pop(m.yes_token, None)
                else:
                    for m in delta.event.open_markets:
                        self._pending[m.yes_token] = m
                        self._live[m.yes_token] = m
            _m.set("registry_pending", len(self._pending))
            self._cv.notify()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._pending)

    def _requeue_if_restarted(self, force: bool = False) -> None:
        """A Redis that came back empty: register every open market again."""
        if not self._restarts.restarted(force=force):
            return
        with self._cv:
            for token, market in self._live.items():
                self._pending.setdefault(token, market)
        log.warning("redis_restart_detected_reregistering", tokens=len(self._live))

    def _run(self) -> None:
        delay = self.backoff_initial
        self._restarts.restarted(force=True)
        while True:
            self._requeue_if_restarted()
            with self._cv:
                if not self._pending and not self._closing:
                    self._cv.wait(0.5)
                if not self._pending:
                    if self._closing:
                        return
                    continue
                batch, self._pending = self._pending, {}
            add = [m for m in batch.values() if m is not None]
            remove = [t for t, m in batch.items() if m is None]
            try:
                if add:
                    self.registry.add_markets(add)
                if remove:
                    self.registry.remove_tokens(remove)
                if delay > self.backoff_initial:
                    self._requeue_if_restarted(force=True)  # just recovered: was it a restart?
                delay = self.backoff_initial
            except redis.RedisError as exc:
                _m.inc("registry_errors")
                with self._cv:
                    for token, change in batch.items():
                        self._pending.setdefault(token, change)  # newer changes win
                _limited.warning("registry", "token_registry_write_failed_retrying", error=str(exc),
                                 pending=len(batch))
                if self._closing:
                    return
                time.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)


class _RegistryPartition(StatelessSinkPartition[EventDelta]):
    def __init__(self, writer: RegistryWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[EventDelta]) -> None:
        self.writer.submit(items)

    def close(self) -> None:
        self.writer.close()


class TokenRegistrySink(DynamicSink[EventDelta]):
    """Feeds the registry from the event poller's deltas (open markets in, closed out)."""

    def __init__(self, redis_url: str, settings: Settings) -> None:
        self.redis_url = redis_url
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RegistryPartition:
        s = self.settings
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        return _RegistryPartition(RegistryWriter(TokenRegistry(client, s.redis_key_prefix, s.ws_max_connections,
                                                               s.ws_tokens_per_connection)))
