"""Token registry in Redis: which YES tokens each WebSocket shard subscribes.

Every process reads it, so shards spread over workers and processes agree. Assignment is
one Lua script (atomic): a token keeps its shard while subscribed; a new token goes to the
lowest shard with room; a removed token frees its slot, which the oldest overflow token
takes. Tokens beyond `max_shards × tokens_per_shard` wait in the overflow set — counted,
never silently dropped. `version` increments on every change, so shards re-read their set
only when something changed.

Keys (names from `RedisKeys`, prefix P): `P:v2:tokens:shard:{i}` set of tokens;
`P:v2:tokens:assign` hash token → shard; `P:v2:tokens:info` hash token → JSON {market_id,
no_token}; `P:v2:tokens:overflow` sorted set (score = arrival order); `P:v2:tokens:version`
counter; `P:v2:tokens:seq` arrival counter.

`TokenRegistrySink` feeds it from the event deltas through the shared write-behind writer
(`connectors.redis.writer`): `write_batch` never blocks on Redis.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis.layout import RedisKeys
from connectors.redis.writer import WriteBehind, WriterMetricNames
from polyalphascan.logs import get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import DeltaKind, EventDelta, Market

log = get_logger(__name__)

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
    """The registry under `prefix`: `max_shards` shards of at most `tokens_per_shard` tokens.
    `metrics` (the `ws` group; a private one when not given) gets the `overflow_tokens` gauge."""

    def __init__(self, client: redis.Redis, prefix: str, max_shards: int, tokens_per_shard: int, *,
                 metrics: MetricGroup | None = None) -> None:
        self.client = client
        self.max_shards = max_shards
        self.cap = tokens_per_shard
        self.metrics = metrics if metrics is not None else MetricGroup("ws")
        keys = RedisKeys(prefix)
        self.shard_prefix = keys.tokens_shard_prefix
        self.assign_key = keys.tokens_assign
        self.info_key = keys.tokens_info
        self.overflow_key = keys.tokens_overflow
        self.version_key = keys.tokens_version
        self.seq_key = keys.tokens_seq
        self.keys = keys
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
        self.metrics.set("overflow_tokens", n)
        if n != self._last_overflow:
            if n > 0:
                log.warning("token_overflow", tokens_not_subscribed=n, capacity=self.max_shards * self.cap,
                            hint="raise WS_MAX_CONNECTIONS (or WS_TOKENS_PER_CONNECTION, max 500)")
            elif self._last_overflow > 0:
                log.info("token_overflow_cleared")
            self._last_overflow = n

    def shard_tokens(self, shard: int) -> set[str]:
        return {t.decode() for t in self.client.smembers(self.keys.tokens_shard(shard))}

    def shard_of(self, token: str) -> int | None:
        v = self.client.hget(self.assign_key, token)
        return int(v) if v is not None else None

    def overflow(self) -> int:
        return int(self.client.zcard(self.overflow_key))

    def version(self) -> int:
        return int(self.client.get(self.version_key) or 0)

    def complements(self, tokens: Iterable[str]) -> set[str]:
        """The NO tokens of these YES tokens (one HMGET): their book entries are expected, not errors."""
        toks = list(tokens)
        if not toks:
            return set()
        return {orjson.loads(raw)["no_token"] for raw in self.client.hmget(self.info_key, toks) if raw}


_REGISTRY_METRICS = WriterMetricNames(pending="registry_pending", errors="registry_errors", coalesced=None,
                                      restarts=None, rejected="rejected_unwritable_tokens")


class RegistryWriter:
    """Write-behind for the registry: `submit` never blocks the worker; a `WriteBehind` thread
    applies the pending additions and removals, and keeps them (retrying with backoff) while
    Redis is unavailable, so no market is lost to an outage. Pending work is bounded by the
    number of distinct tokens (a later change to the same token replaces the earlier one);
    every open market is registered again when Redis comes back empty after a restart."""

    def __init__(self, registry: TokenRegistry, *, backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 metrics: MetricGroup | None = None) -> None:
        """`metrics`: the `ws` group (default: the registry's)."""
        self.registry = registry
        # yes token -> market to add, or None to remove; open markets are rewritten after a restart
        self.behind: WriteBehind[Market | None] = WriteBehind(
            registry.client, self._apply, live=lambda m: m is not None,
            metrics=metrics if metrics is not None else registry.metrics, names=_REGISTRY_METRICS,
            name="token-registry-writer", max_batch=None, backoff_initial=backoff_initial, backoff_max=backoff_max,
            close_grace=0.0,
        )

    def submit(self, deltas: list[EventDelta]) -> None:
        items: list[tuple[str, Market | None]] = []
        for delta in deltas:
            if delta.kind is DeltaKind.MARKET_CLOSED:
                closed = set(delta.closed_market_ids)
                items += [(m.yes_token, None) for m in delta.event.markets if m.id in closed and m.yes_token]
            else:
                items += [(m.yes_token, m) for m in delta.event.open_markets]
        self.behind.submit(items)

    def _apply(self, batch: dict[str, Market | None]) -> None:
        add = [m for m in batch.values() if m is not None]
        remove = [t for t, m in batch.items() if m is None]
        if add:
            self.registry.add_markets(add)
        if remove:
            self.registry.remove_tokens(remove)

    @property
    def pending(self) -> int:
        return self.behind.pending

    def thread_health(self) -> dict[str, object]:
        """The writer thread's health (`token_registry_writer_alive` gauge in the `ws` group)."""
        return self.behind.thread_health()

    def close(self, timeout: float = 10.0) -> None:
        self.behind.close(timeout)


class _RegistryPartition(StatelessSinkPartition[EventDelta]):
    def __init__(self, writer: RegistryWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[EventDelta]) -> None:
        self.writer.submit(items)

    def close(self) -> None:
        self.writer.close()
        self.writer.registry.client.close()


class TokenRegistrySink(DynamicSink[EventDelta]):
    """Feeds the registry from the event poller's deltas (open markets in, closed out).
    `max_shards` × `tokens_per_shard` is the capacity; `metrics` is the `ws` group (a private
    one when not given)."""

    def __init__(self, redis_url: str, key_prefix: str, max_shards: int, tokens_per_shard: int, *,
                 metrics: MetricGroup | None = None) -> None:
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.max_shards = max_shards
        self.tokens_per_shard = tokens_per_shard
        self.metrics = metrics if metrics is not None else MetricGroup("ws")

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RegistryPartition:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        registry = TokenRegistry(client, self.key_prefix, self.max_shards, self.tokens_per_shard, metrics=self.metrics)
        return _RegistryPartition(RegistryWriter(registry))
