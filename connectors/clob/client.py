"""The websocket client of one CLOB shard: a background thread with its own asyncio loop (I/O; no Bytewax).

`ShardClient` keeps one socket to the market channel for the tokens its shard holds in the
token registry (re-read whenever the registry's version changes):

- connects (staggered by shard: `shard * stagger` s) only when the shard has tokens, sends
  the initial subscription with `initial_dump`, then applies registry changes over the open
  socket with `operation: subscribe/unsubscribe` — no reconnect when a token is added or
  removed;
- sends the text `PING` every `ping_interval` s and gives the socket up (`ClobHeartbeatLost`)
  when no `PONG` came for `max(3 * ping_interval, stall_timeout)` s;
- a data watchdog reconnects at once and resyncs from fresh book snapshots when subscribed
  tokens get no data for `stall_timeout` s;
- reconnects after an error with exponential backoff and jitter (`backoff_base` doubling to
  `backoff_max`);
- only frames carrying data about its subscribed tokens (`BookTracker.touched`) feed the
  data watchdog: broadcasts, complements, unknown assets and garbage do not;
- asks again (unsubscribe + subscribe on the open socket, counted `book_resyncs`) for the
  snapshot of tokens that got level changes but no `book` (a garbled snapshot frame), at
  most once per `refresh_interval`;
- turns frames into `PriceUpdate`s (`BookTracker`) in a coalescing buffer: one pending
  update per token, the newest wins, so a slow reader never gets a stale price and memory
  stays bounded by the shard's tokens. `drain()` swaps the buffer out and never blocks.

Coverage: every subscribe message stays under `MAX_SUBSCRIBE_BYTES` (a long list is split:
one initial subscription, then `subscribe` operations), and the client tracks which subscribed
tokens got their `book`. A token still without one `book_timeout` s after it was subscribed is
asked for again (unsubscribe + subscribe, counted `coverage_resubscribes`), at most once per
`book_timeout`; `report()` publishes `shard{NN}_booked` and `shard{NN}_coverage_pct`.

Counters live on the instance (`messages`, `updates`, `reconnects`, `stalls`, `coalesced`,
`max_depth`); `report()` copies them to the `ws` metric group it was given as
`shard{NN}_*` gauges, and `reconnects` / `stalls` / `queue_over_bound` / `book_resyncs` are
also counted there as they happen, as is every rejected input under its `BookTracker` kind
(`malformed_frame`, `malformed_message`, `price_out_of_range`, `unknown_token`,
`unknown_event_type`, `rejected_size`, `rejected_side`, `rejected_timestamp`,
`rejected_depth`, `rejected_change_before_book`, `rejected_tick`), each logged (rate-limited per kind, with
the token) as `ws_input_rejected`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterable
from typing import Protocol

import redis
import websockets

from connectors.clob.protocol import (PING, PONG, BookTracker, ClobError, subscribe_messages,
                                      unsubscribe_messages)
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import PriceUpdate

log = get_logger(__name__)


class ShardTokens(Protocol):
    """What the client reads from the token registry (`TokenRegistry` in production); each
    call may raise `redis.RedisError`, which the client survives."""

    def version(self) -> int: ...

    def shard_tokens(self, shard: int) -> set[str]: ...

    def complements(self, tokens: Iterable[str]) -> set[str]: ...


class ClobHeartbeatLost(ClobError):
    """The server stopped answering `PING`: the socket is treated as dead and reopened."""


#: What ends a session and is retried with backoff: the socket (OS / websockets / timeouts),
#: a lost heartbeat, or the token registry being unreachable while connecting.
RETRIED = (OSError, websockets.WebSocketException, asyncio.TimeoutError, ClobError, redis.RedisError)


class ShardClient:
    """The socket of one shard, in its own thread and event loop (started by the constructor;
    `stop()` ends it)."""

    def __init__(self, shard: int, url: str, registry: ShardTokens, *, metrics: MetricGroup, ping_interval: float,
                 stall_timeout: float, backoff_base: float, backoff_max: float, refresh_interval: float,
                 stagger: float, queue_max: int, book_timeout: float | None = None) -> None:
        self.shard = shard
        self.url = url
        self.registry = registry
        self.metrics = metrics
        self.ping_interval = ping_interval
        self.stall_timeout = stall_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.refresh_interval = refresh_interval
        self.stagger = stagger
        self.queue_max = queue_max
        self.tracker = BookTracker(shard, metrics)
        self._limited = RateLimitedLog(log, interval=10.0)
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
        #: how long a subscribed token may wait for its `book` before it is subscribed again
        self.book_timeout = book_timeout if book_timeout is not None else max(10.0, 2 * refresh_interval)
        self._pending_since: dict[str, float] = {}  # subscribed, no book yet: since when (monotonic)
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
                    self.metrics.inc("queue_over_bound")
                self._buf[u.token_id] = u
            depth = len(self._buf)
            if depth > self.max_depth:
                self.max_depth = depth

    def drain(self) -> list[PriceUpdate]:
        """The pending updates (newest per token), emptying the buffer; never blocks."""
        with self._lock:
            if not self._buf:
                return []
            out = list(self._buf.values())
            self._buf = {}
        return out

    # ---------------------------------------------------------------- registry
    def _desired(self) -> set[str]:
        try:
            return self.registry.shard_tokens(self.shard)
        except redis.RedisError as exc:
            self._limited.warning(f"registry{self.shard}", "token_registry_unreadable", shard=self.shard,
                                  error=str(exc))
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
            self._limited.warning(f"registry{self.shard}", "token_registry_unreadable", shard=self.shard,
                                  error=str(exc))
            return current  # keep the subscriptions we have until the registry answers again

    # ---------------------------------------------------------------- loop
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the thread must never die silently
            log.exception("ws_shard_thread_crashed", shard=self.shard, error=repr(exc))

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
            except RETRIED as exc:
                self.reconnects += 1
                self.metrics.inc("reconnects")
                wait = delay * (0.5 + random.random())  # jitter
                self._limited.warning(f"conn{self.shard}", "ws_disconnected", shard=self.shard,
                                      error=repr(exc)[:200], retry_in_s=round(wait, 2))
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
            self.tracker = BookTracker(self.shard, self.metrics)
            self.tracker.subscribed = set(desired)
            self.tracker.complements = complements
            self.subscribed = set(desired)
            msgs = subscribe_messages(desired, initial=True)
            for m in msgs:
                await ws.send(m)
            self._pending_since = dict.fromkeys(desired, time.monotonic())
            log.info("ws_subscribed", shard=self.shard, tokens=len(desired), messages=len(msgs))
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
                    if frame == PONG:
                        last_pong = now
                    else:
                        tracker = self.tracker
                        updates = tracker.handle(frame, int(time.time() * 1000))
                        self.messages += 1
                        if tracker.touched:  # data about this shard's tokens, not a broadcast
                            last_data = now
                        if tracker.last_error:  # rejections since the last frame (emptied when logged)
                            self._log_rejections()
                        if updates:
                            self.updates += len(updates)
                            self._put(updates)
                if now >= next_ping:
                    await ws.send(PING)
                    next_ping = now + self.ping_interval
                if now - last_pong > max(3 * self.ping_interval, self.stall_timeout):
                    raise ClobHeartbeatLost(f"no PONG for {now - last_pong:.1f} s")
                if self.subscribed and now - last_data > self.stall_timeout:
                    self.stalls += 1
                    self.metrics.inc("stalls")
                    log.warning("ws_stall_resync", shard=self.shard, silent_s=round(now - last_data, 2))
                    return  # reconnect at once: a fresh initial dump resyncs every book
                if now >= next_refresh:
                    next_refresh = now + self.refresh_interval
                    if self.tracker.need_book:
                        await self._resync_books(ws)
                    await self._cover(ws, now)
                    v = await asyncio.to_thread(self._version, version)
                    if v != version:
                        version = v
                        await self._apply(ws, await asyncio.to_thread(self._desired))

    def _log_rejections(self) -> None:
        for kind, (token, detail) in list(self.tracker.last_error.items()):
            self._limited.warning(f"rejected{self.shard}:{kind}", "ws_input_rejected", shard=self.shard, kind=kind,
                                  token=token, detail=detail)
        self.tracker.last_error.clear()

    def coverage(self) -> tuple[int, int]:
        """(subscribed tokens, those that got their `book`) on the current socket."""
        if not self.connected:
            return 0, 0
        tracker = self.tracker
        subscribed = tracker.subscribed
        return len(subscribed), len(tracker.booked & subscribed)

    async def _cover(self, ws: websockets.ClientConnection, now: float) -> None:
        """Ask again for tokens subscribed `book_timeout` s ago that still have no book."""
        booked = self.tracker.booked
        late = [t for t, since in self._pending_since.items() if t not in booked and now - since >= self.book_timeout]
        for t in [t for t in self._pending_since if t in booked]:
            del self._pending_since[t]
        if not late:
            return
        for m in unsubscribe_messages(late):
            await ws.send(m)
        for m in subscribe_messages(late, initial=False):
            await ws.send(m)
        for t in late:
            self._pending_since[t] = now
        self.metrics.inc("coverage_resubscribes", len(late))
        self._limited.warning(f"coverage{self.shard}", "ws_coverage_resubscribe", shard=self.shard, tokens=len(late),
                              token=late[0])

    async def _resync_books(self, ws: websockets.ClientConnection) -> None:
        """Ask again for the snapshots of tokens whose level changes came before any book."""
        tokens = sorted(self.tracker.need_book & self.tracker.subscribed)
        self.tracker.need_book.clear()
        if not tokens:
            return
        for m in unsubscribe_messages(tokens):
            await ws.send(m)
        for m in subscribe_messages(tokens, initial=False):  # the server answers with their books
            await ws.send(m)
        self.metrics.inc("book_resyncs", len(tokens))
        self._limited.warning(f"bookresync{self.shard}", "ws_book_resync", shard=self.shard, tokens=len(tokens),
                              token=tokens[0])

    async def _apply(self, ws: websockets.ClientConnection, desired: set[str]) -> None:
        add = sorted(desired - self.subscribed)
        drop = sorted(self.subscribed - desired)
        if add or drop:  # before subscribing: the new books' NO-side entries are then expected
            self.tracker.complements = await asyncio.to_thread(self._complements, desired)
        if drop:
            for m in unsubscribe_messages(drop):
                await ws.send(m)
            for t in drop:
                self.tracker.subscribed.discard(t)
                self.tracker.forget(t)
                self._pending_since.pop(t, None)
        if add:
            self.tracker.subscribed.update(add)
            for m in subscribe_messages(add, initial=False):
                await ws.send(m)
            now = time.monotonic()
            for t in add:
                self._pending_since[t] = now
        self.subscribed = set(desired)
        if add or drop:
            log.info("ws_subscription_changed", shard=self.shard, added=len(add), removed=len(drop))

    # ---------------------------------------------------------------- control
    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def report(self) -> None:
        """Copy this shard's counters to the metric group (`shard{NN}_*` gauges)."""
        p = f"shard{self.shard:02d}_"
        g = self.metrics
        g.set(p + "connected", int(self.connected))
        g.set(p + "tokens", len(self.subscribed) if self.connected else 0)
        g.set(p + "messages", self.messages)
        g.set(p + "updates", self.updates)
        g.set(p + "reconnects", self.reconnects)
        g.set(p + "stalls", self.stalls)
        g.set(p + "coalesced", self.coalesced)
        g.set(p + "queue_depth", len(self._buf))
        try:
            subscribed, booked = self.coverage()
        except RuntimeError:  # the sets changed size meanwhile (socket thread): next report
            subscribed, booked = 0, 0
        g.set(p + "booked", booked)
        g.set(p + "coverage_pct", round(100.0 * booked / subscribed, 1) if subscribed else 0.0)
        try:
            errors = dict(self.tracker.errors)  # written by the socket thread meanwhile
        except RuntimeError:
            return
        for kind, n in errors.items():
            g.set(p + f"errors_{kind}", n)
