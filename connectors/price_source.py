"""Price source: a Bytewax `FixedPartitionedSource` with one partition per CLOB WebSocket shard.

Partitions are fixed slots `ws-00 … ws-{N-1}` (N = `WS_MAX_CONNECTIONS`; Bytewax spreads
them over all workers and processes). Each slot's tokens come from the Redis
`TokenRegistry`, re-read when its version changes. Each partition runs its socket in a
background thread with its own asyncio loop:

- connects (staggered by slot) only when its slot has tokens, sends the initial
  subscription with `initial_dump`, then applies registry changes over the open socket with
  `operation: subscribe/unsubscribe` — no reconnect when a token is added or removed;
- sends the text `PING` every `ping_interval` s; a data watchdog reconnects and resyncs
  from fresh book snapshots when subscribed tokens get no data for `stall_timeout` s;
- reconnects with exponential backoff and jitter (`backoff_base` doubling to `backoff_max`);
- turns frames into `PriceUpdate`s (`BookTracker`) in a coalescing buffer: one pending
  update per token, the newest wins, so a lagging flow never reads a stale price and memory
  stays bounded by the shard's tokens.

`next_batch` only swaps the buffer out (never blocks); `next_awake` is ≤ 50 ms when idle.
The snapshot is None: a live feed cannot be replayed, and on resume every shard resyncs
from fresh `book` snapshots.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import orjson
import redis
import websockets
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.clob_protocol import BookTracker
from connectors.token_registry import TokenRegistry
from polyalphascan.lifecycle import STOP
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import metrics
from polyalphascan.records import PriceUpdate
from polyalphascan.settings import Settings

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)
_m = metrics("ws")


class ShardClient:
    """The socket of one shard, in its own thread and event loop."""

    def __init__(self, shard: int, url: str, registry: TokenRegistry, *, ping_interval: float, stall_timeout: float,
                 backoff_base: float, backoff_max: float, refresh_interval: float, stagger: float,
                 queue_max: int) -> None:
        self.shard = shard
        self.url = url
        self.registry = registry
        self.ping_interval = ping_interval
        self.stall_timeout = stall_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.refresh_interval = refresh_interval
        self.stagger = stagger
        self.queue_max = queue_max
        self.tracker = BookTracker(shard)
        self._buf: dict[str, PriceUpdate] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.connected = False
        self.reconnects = 0
        self.stalls = 0
        self.coalesced = 0
        self.messages = 0
        self.updates = 0
        self.subscribed: set[str] = set()
        self.max_depth = 0
        self._thread = threading.Thread(target=self._run, name=f"ws-shard-{shard}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- buffer
    def _put(self, updates: list[PriceUpdate]) -> None:
        with self._lock:
            for u in updates:
                if u.token_id in self._buf:
                    self.coalesced += 1
                elif len(self._buf) >= self.queue_max:
                    # cannot happen while queue_max >= the shard's tokens; never drop a price:
                    # count it, keep the newest per token as always
                    _m.inc("queue_over_bound")
                self._buf[u.token_id] = u
            depth = len(self._buf)
            if depth > self.max_depth:
                self.max_depth = depth

    def drain(self) -> list[PriceUpdate]:
        with self._lock:
            if not self._buf:
                return []
            out = list(self._buf.values())
            self._buf = {}
        return out

    # ---------------------------------------------------------------- loop
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the thread must never die silently
            log.exception("ws_shard_thread_crashed", shard=self.shard, error=repr(exc))

    def _desired(self) -> set[str]:
        try:
            return self.registry.shard_tokens(self.shard)
        except redis.RedisError as exc:
            _limited.warning(f"registry{self.shard}", "token_registry_unreadable", shard=self.shard, error=str(exc))
            return set(self.subscribed)

    def _complements(self, tokens: set[str]) -> set[str]:
        try:
            return self.registry.complements(tokens)
        except redis.RedisError:
            return set(self.tracker.complements)  # keep what we knew; only the error count is affected

    def _version(self, current: int) -> int:
        try:
            return self.registry.version()
        except redis.RedisError as exc:
            _limited.warning(f"registry{self.shard}", "token_registry_unreadable", shard=self.shard, error=str(exc))
            return current  # keep the subscriptions we have until the registry answers again

    async def _main(self) -> None:
        await asyncio.sleep(self.shard * self.stagger)  # staggered connects
        delay = self.backoff_base
        while not self._stop.is_set():
            # the version first: a change landing between the two reads is seen at the next refresh
            version = await asyncio.to_thread(self._version, -1)
            desired = await asyncio.to_thread(self._desired)
            if not desired:
                await asyncio.sleep(self.refresh_interval)
                continue
            try:
                await self._session(desired, version)
                delay = self.backoff_base  # a session that ended cleanly (stall resync) reconnects at once
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError, redis.RedisError) as exc:
                self.reconnects += 1
                _m.inc("reconnects")
                wait = delay * (0.5 + random.random())  # jitter
                _limited.warning(f"conn{self.shard}", "ws_disconnected", shard=self.shard, error=repr(exc)[:200],
                                 retry_in_s=round(wait, 2))
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max)
            except Exception as exc:  # a bug must not silence a shard forever: log, back off, go on
                self.reconnects += 1
                log.exception("ws_shard_session_failed", shard=self.shard, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    async def _session(self, desired: set[str], version: int) -> None:
        try:
            await self._connected_session(desired, version)
        finally:
            self.connected = False  # also while backing off after an error

    async def _connected_session(self, desired: set[str], version: int) -> None:
        complements = await asyncio.to_thread(self._complements, desired)
        async with websockets.connect(self.url, ping_interval=None, max_size=2**24, open_timeout=10,
                                      compression=None) as ws:
            self.connected = True
            self.tracker = BookTracker(self.shard)
            self.tracker.subscribed = set(desired)
            self.tracker.complements = complements
            self.subscribed = set(desired)
            await ws.send(orjson.dumps({"type": "market", "assets_ids": sorted(desired), "initial_dump": True,
                                        "level": 2, "custom_feature_enabled": False}).decode())
            log.info("ws_subscribed", shard=self.shard, tokens=len(desired))
            last_data = time.monotonic()
            last_pong = time.monotonic()
            next_ping = time.monotonic() + self.ping_interval
            next_refresh = time.monotonic() + self.refresh_interval
            while not self._stop.is_set():
                now = time.monotonic()
                timeout = max(0.0, min(next_ping, next_refresh) - now)
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=min(timeout, 0.5))
                except asyncio.TimeoutError:
                    frame = None
                now = time.monotonic()
                if frame is not None:
                    if frame == "PONG":
                        last_pong = now
                    else:
                        updates = self.tracker.handle(frame, int(time.time() * 1000))
                        self.messages += 1
                        if frame != "INVALID OPERATION":
                            last_data = now
                        if updates:
                            self.updates += len(updates)
                            self._put(updates)
                if now >= next_ping:
                    await ws.send("PING")
                    next_ping = now + self.ping_interval
                if now - last_pong > max(3 * self.ping_interval, self.stall_timeout):
                    raise asyncio.TimeoutError("no PONG")
                if self.subscribed and now - last_data > self.stall_timeout:
                    self.stalls += 1
                    _m.inc("stalls")
                    log.warning("ws_stall_resync", shard=self.shard, silent_s=round(now - last_data, 2))
                    return  # reconnect at once: a fresh initial dump resyncs every book
                if now >= next_refresh:
                    next_refresh = now + self.refresh_interval
                    v = await asyncio.to_thread(self._version, version)
                    if v != version:
                        version = v
                        await self._apply(ws, await asyncio.to_thread(self._desired))

    async def _apply(self, ws: websockets.ClientConnection, desired: set[str]) -> None:
        add = sorted(desired - self.subscribed)
        drop = sorted(self.subscribed - desired)
        if add or drop:  # before subscribing: the new books' NO-side entries are then expected
            self.tracker.complements = await asyncio.to_thread(self._complements, desired)
        if drop:
            await ws.send(orjson.dumps({"operation": "unsubscribe", "assets_ids": drop}).decode())
            for t in drop:
                self.tracker.subscribed.discard(t)
                self.tracker.forget(t)
        if add:
            self.tracker.subscribed.update(add)
            await ws.send(orjson.dumps({"operation": "subscribe", "assets_ids": add}).decode())
        self.subscribed = set(desired)
        if add or drop:
            log.info("ws_subscription_changed", shard=self.shard, added=len(add), removed=len(drop))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def report(self) -> None:
        p = f"shard{self.shard:02d}_"
        g = _m
        g.set(p + "connected", int(self.connected))
        g.set(p + "tokens", len(self.subscribed) if self.connected else 0)
        g.set(p + "messages", self.messages)
        g.set(p + "updates", self.updates)
        g.set(p + "reconnects", self.reconnects)
        g.set(p + "stalls", self.stalls)
        g.set(p + "coalesced", self.coalesced)
        g.set(p + "queue_depth", len(self._buf))
        for kind, n in self.tracker.errors.items():
            g.set(p + f"errors_{kind}", n)


class ShardPartition(StatefulSourcePartition[PriceUpdate, None]):
    def __init__(self, client: ShardClient) -> None:
        self.client = client
        self._empty = False
        self._last_report = 0.0
        self._last_counts = (0, 0, time.monotonic())

    def next_batch(self) -> list[PriceUpdate]:
        if STOP.is_set():
            self.client.stop()
            raise StopIteration
        out = self.client.drain()
        self._empty = not out
        now = time.monotonic()
        if now - self._last_report > 1.0:
            self._last_report = now
            self.client.report()
            m0, u0, t0 = self._last_counts
            dt = max(now - t0, 1e-6)
            p = f"shard{self.client.shard:02d}_"
            _m.set(p + "messages_per_s", round((self.client.messages - m0) / dt, 1))
            _m.set(p + "updates_per_s", round((self.client.updates - u0) / dt, 1))
            self._last_counts = (self.client.messages, self.client.updates, now)
            ShardRegistry.publish_totals()
        return out

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + timedelta(milliseconds=20) if self._empty else None

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.client.stop()


class ShardRegistry:
    """This process's shard clients, for totals in the metrics."""

    clients: dict[int, ShardClient] = {}

    @classmethod
    def publish_totals(cls) -> None:
        clients = list(cls.clients.values())
        _m.set("connections", sum(1 for c in clients if c.connected))
        _m.set("subscriptions", sum(len(c.subscribed) for c in clients if c.connected))


class PriceShardSource(FixedPartitionedSource[PriceUpdate, None]):
    def __init__(self, settings: Settings, redis_url: str, *, refresh_interval: float = 0.5, stagger: float = 0.2,
                 backoff_base: float = 2.0, backoff_max: float = 60.0, ping_interval: float | None = None,
                 stall_timeout: float | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.refresh_interval = refresh_interval
        self.stagger = stagger
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.ping_interval = ping_interval or settings.ws_ping_interval_seconds
        self.stall_timeout = stall_timeout or settings.ws_stall_timeout_seconds

    def list_parts(self) -> list[str]:
        return [f"ws-{i:02d}" for i in range(self.settings.ws_max_connections)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> ShardPartition:
        shard = int(for_part.split("-")[1])
        s = self.settings
        registry = TokenRegistry(redis.Redis.from_url(self.redis_url, socket_timeout=5), s.redis_key_prefix,
                                 s.ws_max_connections, s.ws_tokens_per_connection)
        client = ShardClient(shard, s.clob_ws_url, registry, ping_interval=self.ping_interval,
                             stall_timeout=self.stall_timeout, backoff_base=self.backoff_base,
                             backoff_max=self.backoff_max, refresh_interval=self.refresh_interval,
                             stagger=self.stagger, queue_max=s.price_queue_max_size)
        ShardRegistry.clients[shard] = client
        return ShardPartition(client)
