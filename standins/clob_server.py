"""CLOB market-channel WebSocket stand-in (`/ws/market`) over any `MarketFeed`.

Protocol as the real CLOB market channel speaks it: the first frame is the
initial subscription `{"assets_ids", "type": "market", "initial_dump", "level",
"custom_feature_enabled"}` (sent again → text `INVALID OPERATION`); later
`{"operation": "subscribe"|"unsubscribe", "assets_ids"}`; text `PING` → `PONG`; `book`
snapshots on subscribe; `price_change` in the `price_changes[]` format with best bid/ask
for both outcome tokens; `last_trade_price`, `tick_size_change`; `best_bid_ask` with custom
features; `new_market` / `market_resolved` broadcast to every connection. Frames are a
single object or an array. A per-connection asset cap (default 500) rejects more.

The price process runs on the server's loop: every 10 ms it advances the feed by
rate × 10 ms moves and routes each message to the connections subscribed to its assets.

Fault knobs (`ClobFaults`, mutable at runtime): drop connections, silent stall (PONG still
answered, no data), malformed frames, duplicated and reordered messages, refuse
connections with HTTP 429 when too many connect at once, and poison.

Poison (`poison_rate`: per 10 ms tick, the chance of one episode; `poison_kinds`, taken in
turn; runs whether or not the walk is paused): well-formed frames with hostile values, each
its own WebSocket frame, for one seeded subscribed token with a two-sided book — a level
change with size "inf", "NaN" or "-5", or side "XYZ"; a `book` whose best ask size is off by
one, stamped 2^64 + 1 or in the year 2100; a crossed `book` (best bid above best ask); one
`price_change` of 20,000 distinct price levels (all behind the top); and frames (`book` +
`price_change`) about asset ids nobody subscribed. After each episode about a subscribed
token a fresh true `book` snapshot follows, `poison_restore_s` later (a separate frame), so
the ground truth holds again once poison stops (`poison_pending()` says how many restores
are still to go). Each episode is counted in `stats.faults["poison_<kind>"]`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from standins.protocols import BookSnapshot, MarketFeed, PriceChange

TICK_S = 0.01
CLOB_POISON_KINDS = ("size_inf", "size_nan", "size_negative", "side_xyz", "ts_above_2_64", "ts_year_2100",
                     "crossed_book", "deep_levels", "unsubscribed")
#: price levels in one `deep_levels` frame (half bids below the best bid, half asks above the best ask)
DEEP_LEVELS = 20_000
TS_ABOVE_2_64 = str(2**64 + 1)
TS_YEAR_2100 = "4102444800000"  # 2100-01-01T00:00:00Z in ms


@dataclass
class ClobFaults:
    stall_all: bool = False  # no data to anyone, PONGs still answered
    malformed_rate: float = 0.0  # per frame: replaced by garbage
    duplicate_rate: float = 0.0  # per message: sent twice
    reorder_rate: float = 0.0  # per frame: messages shuffled
    max_connects_per_second: int = 0  # 0 = unlimited; above it: HTTP 429
    trade_rate: float = 0.05  # per price_change: also a last_trade_price
    poison_rate: float = 0.0  # per 10 ms tick: one poison episode (kinds in turn)
    poison_kinds: tuple[str, ...] = CLOB_POISON_KINDS
    poison_restore_s: float = 0.05  # the true `book` follows a poisoned token this much later
    #: per-asset silent loss (seen live): the first this many distinct assets subscribed get
    #: nothing on that subscription (no `book`, no changes) until unsubscribed and subscribed again;
    #: a duplicate subscribe of them is ignored, as the venue does
    silent_first_subscriptions: int = 0
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


@dataclass
class ClobStats:
    connections_total: int = 0
    connections_open: int = 0
    refused_429: int = 0
    initial_subscriptions: int = 0
    subscribe_ops: int = 0
    unsubscribe_ops: int = 0
    invalid_operations: int = 0
    pings: int = 0
    messages_sent: int = 0
    updates_sent: int = 0  # price levels (one per asset change) sent
    frames_sent: int = 0
    ops_by_connection: dict[int, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    faults: Counter[str] = field(default_factory=Counter)
    poisoned: list[tuple[str, str]] = field(default_factory=list)  # (poison kind, asset id) per episode


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}".rstrip("0").rstrip(".") if x not in (0.0, 1.0) else str(int(x))


def book_message(book: BookSnapshot, ts: str) -> dict[str, Any]:
    return {
        "event_type": "book",
        "asset_id": book.asset_id,
        "market": book.market,
        "bids": [{"price": _fmt(p), "size": _fmt(s)} for p, s in book.bids],
        "asks": [{"price": _fmt(p), "size": _fmt(s)} for p, s in book.asks],
        "timestamp": ts,
        "hash": f"0x{abs(hash((book.asset_id, ts))) % (1 << 64):016x}",
        "tick_size": _fmt(book.tick_size),
    }


def price_change_message(change: PriceChange, ts: str) -> dict[str, Any]:
    return {
        "event_type": "price_change",
        "market": change.market,
        "timestamp": ts,
        "price_changes": [
            {"asset_id": c.asset_id, "price": _fmt(c.price), "size": _fmt(c.size), "side": c.side,
             "hash": f"0x{abs(hash((c.asset_id, c.price, ts))) % (1 << 48):012x}",
             "best_bid": _fmt(c.best_bid), "best_ask": _fmt(c.best_ask)}
            for c in change.changes
        ],
    }


class _Conn:
    __slots__ = ("ws", "cid", "assets", "custom", "initialised", "stalled", "outbox", "wake")

    def __init__(self, ws: ServerConnection, cid: int) -> None:
        self.ws = ws
        self.cid = cid
        self.assets: set[str] = set()
        self.custom = False
        self.initialised = False
        self.stalled = False
        self.outbox: list[dict[str, Any] | str] = []
        self.wake = asyncio.Event()


class ClobServer:
    def __init__(self, feed: MarketFeed, host: str = "127.0.0.1", port: int = 0, faults: ClobFaults | None = None,
                 asset_cap: int = 500, rate: float = 100.0) -> None:
        self.feed = feed
        self.host = host
        self.port = port
        self.faults = faults or ClobFaults()
        self.asset_cap = asset_cap
        self.rate = rate
        self.stats = ClobStats()
        self._paused = threading.Event()
        self._conns: dict[int, _Conn] = {}
        self._by_asset: dict[str, set[int]] = defaultdict(set)
        self._next_cid = 0
        self._connect_times: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clob-standin", daemon=True)
        self._server: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._carry = 0.0
        self._poison_turn = 0
        self._restores: list[tuple[float, int, str]] = []  # (due, connection id, asset) of poisoned books
        self._seen_assets: set[str] = set()  # for `silent_first_subscriptions`

    # ------------------------------------------------------------------ public controls
    def set_rate(self, rate: float) -> None:
        self.rate = rate

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def _call(self, fn: Any, *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def push(self, changes: list[PriceChange]) -> None:
        """Send forced moves (e.g. `Universe.set_quote`) to their subscribers."""
        self._call(self._route, list(changes))

    def broadcast_new_market(self, info: dict[str, Any]) -> None:
        msg = {"event_type": "new_market", "timestamp": self._ts(), **info}
        self._call(self._broadcast, msg)

    def broadcast_market_resolved(self, info: dict[str, Any]) -> None:
        msg = {"event_type": "market_resolved", "timestamp": self._ts(), **info}
        self._call(self._broadcast, msg)

    def drop_all(self) -> None:
        """Close every connection abruptly (clients must reconnect and resubscribe)."""
        def _drop() -> None:
            for conn in list(self._conns.values()):
                conn.ws.transport.abort()
                self.stats.faults["dropped"] += 1
        self._call(_drop)

    def stall(self, on: bool = True) -> None:
        self.faults.stall_all = on

    def subscribers(self) -> dict[int, set[str]]:
        return {cid: set(c.assets) for cid, c in list(self._conns.items())}

    def poison_pending(self) -> int:
        """Restoring `book` snapshots still to be sent after poison episodes."""
        return len(self._restores)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _ts() -> str:
        return str(int(time.time() * 1000))

    def _queue(self, conn: _Conn, msg: dict[str, Any] | str) -> None:
        conn.outbox.append(msg)
        conn.wake.set()

    def _broadcast(self, msg: dict[str, Any]) -> None:
        for conn in self._conns.values():
            if conn.initialised:
                self._queue(conn, msg)

    def _route(self, changes: list[PriceChange]) -> None:
        ts = self._ts()
        f = self.faults
        for change in changes:
            targets: set[int] = set()
            for c in change.changes:
                targets |= self._by_asset.get(c.asset_id, set())
            if not targets:
                continue
            msg = price_change_message(change, ts)
            extra: list[dict[str, Any]] = []
            if f.trade_rate and f.rng.random() < f.trade_rate:
                c0 = change.changes[0]
                extra.append({"event_type": "last_trade_price", "asset_id": c0.asset_id, "market": change.market,
                              "price": _fmt(c0.price), "size": "10", "side": c0.side, "fee_rate_bps": "0",
                              "timestamp": ts})
            for c in change.changes:
                if c.best_bid is not None and (c.best_bid > 0.96 or c.best_bid < 0.04) and f.rng.random() < 0.01:
                    extra.append({"event_type": "tick_size_change", "asset_id": c.asset_id, "market": change.market,
                                  "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": ts})
            for cid in targets:
                conn = self._conns.get(cid)
                if conn is None:
                    continue
                self._queue(conn, msg)
                self.stats.updates_sent += len(change.changes)
                if conn.custom:
                    for c in change.changes:
                        if c.asset_id in conn.assets:
                            self._queue(conn, {"event_type": "best_bid_ask", "asset_id": c.asset_id,
                                               "market": change.market, "best_bid": _fmt(c.best_bid),
                                               "best_ask": _fmt(c.best_ask), "timestamp": ts,
                                               "spread": _fmt((c.best_ask or 0) - (c.best_bid or 0))})
                for e in extra:
                    self._queue(conn, e)

    # ------------------------------------------------------------------ poison
    def _poison_tick(self) -> None:
        f = self.faults
        now = time.monotonic()
        if self._restores:
            due = [r for r in self._restores if r[0] <= now]
            self._restores = [r for r in self._restores if r[0] > now]
            for _, cid, asset in due:
                conn = self._conns.get(cid)
                book = self.feed.book(asset)
                if conn is not None and asset in conn.assets and book is not None:
                    self._queue(conn, book_message(book, self._ts()))
        if f.poison_rate and f.poison_kinds and f.rng.random() < f.poison_rate:
            kind = f.poison_kinds[self._poison_turn % len(f.poison_kinds)]
            if self._poison_episode(kind, now):
                self._poison_turn += 1
                self.stats.faults[f"poison_{kind}"] += 1

    def _poison_episode(self, kind: str, now: float) -> bool:
        """Queue one poison frame of `kind` (and schedule its restoring book); False if no token fits."""
        f = self.faults
        conns = [c for _, c in sorted(self._conns.items()) if c.initialised and c.assets]
        if not conns:
            return False
        conn = f.rng.choice(conns)
        ts = self._ts()
        if kind == "unsubscribed":
            n = self._poison_turn
            ghost = f"poison-unsubscribed-{n}"
            frame = [{"event_type": "book", "asset_id": ghost, "market": "0xpoison", "timestamp": ts,
                      "bids": [{"price": "0.4", "size": "10"}], "asks": [{"price": "0.6", "size": "10"}],
                      "hash": "0x0", "tick_size": "0.01"},
                     {"event_type": "price_change", "market": "0xpoison", "timestamp": ts,
                      "price_changes": [{"asset_id": ghost, "price": "0.41", "size": "5", "side": "BUY",
                                         "hash": "0x0", "best_bid": "0.41", "best_ask": "0.6"}]}]
            self._queue(conn, {"__frame__": orjson.dumps(frame).decode()})
            self.stats.poisoned.append((kind, ghost))
            return True
        books = []
        for asset in sorted(conn.assets):
            b = self.feed.book(asset)
            if b is not None and b.bids and b.asks:
                bb, ba = max(p for p, _ in b.bids), min(p for p, _ in b.asks)
                if 0.001 < bb < ba < 0.999:
                    books.append((b, bb, ba))
        if not books:
            return False
        b, bb, ba = f.rng.choice(books)
        asset = b.asset_id

        def change(levels: list[dict[str, str]]) -> dict[str, Any]:
            return {"event_type": "price_change", "market": b.market, "timestamp": ts, "price_changes": levels}

        if kind in ("size_inf", "size_nan", "size_negative"):
            size = {"size_inf": "inf", "size_nan": "NaN", "size_negative": "-5"}[kind]
            msg: Any = change([{"asset_id": asset, "price": _fmt(ba), "size": size, "side": "SELL",
                                "best_bid": _fmt(bb), "best_ask": _fmt(ba)}])
        elif kind == "side_xyz":  # applied to the ask side it would be a new best ask
            msg = change([{"asset_id": asset, "price": f"{(bb + ba) / 2:.4f}", "size": "50", "side": "XYZ",
                           "best_bid": _fmt(bb), "best_ask": _fmt(ba)}])
        elif kind in ("ts_above_2_64", "ts_year_2100"):  # the best ask size off by one, stamped absurdly
            asks = tuple((p, s + 1.0 if p == ba else s) for p, s in b.asks)
            msg = book_message(BookSnapshot(asset, b.market, b.bids, asks, b.tick_size), ts)
            msg["timestamp"] = TS_ABOVE_2_64 if kind == "ts_above_2_64" else TS_YEAR_2100
        elif kind == "crossed_book":  # a bid above the best ask
            cross = min(1.0, round(ba + 0.01, 2))
            msg = book_message(BookSnapshot(asset, b.market, ((cross, 25.0), *b.bids), b.asks, b.tick_size), ts)
        elif kind == "deep_levels":  # distinct prices, all behind the top (the top does not move)
            half = DEEP_LEVELS // 2
            bids = [{"asset_id": asset, "price": f"{bb * i / (half + 1):.8f}", "size": "1", "side": "BUY"}
                    for i in range(1, half + 1)]
            asks = [{"asset_id": asset, "price": f"{ba + (1 - ba) * i / (half + 1):.8f}", "size": "1", "side": "SELL"}
                    for i in range(1, half + 1)]
            msg = change(bids + asks)
        else:
            return False
        self._queue(conn, {"__frame__": orjson.dumps(msg).decode()})
        self._restores.append((now + f.poison_restore_s, conn.cid, asset))
        self.stats.poisoned.append((kind, asset))
        return True

    async def _tick(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += TICK_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self._restores or self.faults.poison_rate:
                self._poison_tick()
            if self._paused.is_set() or self.rate <= 0 or not self._conns:
                self._carry = 0.0
                continue
            self._carry += self.rate * TICK_S
            n = int(self._carry)
            if n <= 0:
                continue
            self._carry -= n
            changes = self.feed.step(n)
            self._route(changes)

    def _books(self, conn: _Conn, assets: list[str]) -> None:
        ts = self._ts()
        books = [book_message(b, ts) for a in assets if (b := self.feed.book(a)) is not None]
        for i in range(0, len(books), 100):  # the initial dump arrives as arrays of book messages
            self._queue(conn, {"__array__": books[i : i + 100]})  # type: ignore[dict-item]

    def _subscribe(self, conn: _Conn, assets: list[str]) -> list[str]:
        new = [a for a in dict.fromkeys(assets) if a not in conn.assets]
        if len(conn.assets) + len(new) > self.asset_cap:
            return []
        out = []
        for a in new:
            conn.assets.add(a)
            if a not in self._seen_assets:
                self._seen_assets.add(a)
                if self.faults.silent_first_subscriptions > 0:
                    self.faults.silent_first_subscriptions -= 1
                    self.stats.faults["silent_subscription"] += 1
                    continue  # subscribed, yet nothing will come
            self._by_asset[a].add(conn.cid)
            out.append(a)
        return out

    def _unsubscribe(self, conn: _Conn, assets: list[str]) -> None:
        for a in assets:
            if a in conn.assets:
                conn.assets.discard(a)
                subs = self._by_asset.get(a)
                if subs is not None:
                    subs.discard(conn.cid)
                    if not subs:
                        del self._by_asset[a]

    def _handle_text(self, conn: _Conn, text: str) -> None:
        if text == "PING":
            self.stats.pings += 1
            self._queue(conn, "PONG")
            return
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._queue(conn, "INVALID OPERATION")
            return
        if not isinstance(msg, dict):
            self._queue(conn, "INVALID OPERATION")
            return
        assets = [str(a) for a in msg.get("assets_ids") or []]
        op = msg.get("operation")
        if op is None and str(msg.get("type", "")).lower() == "market":
            if conn.initialised:
                self.stats.invalid_operations += 1
                self._queue(conn, "INVALID OPERATION")
                return
            conn.initialised = True
            conn.custom = bool(msg.get("custom_feature_enabled", False))
            self.stats.initial_subscriptions += 1
            self.stats.ops_by_connection[conn.cid].append(("initial", len(assets)))
            added = self._subscribe(conn, assets)
            if assets and not added and len(assets) > self.asset_cap:
                self._queue(conn, f"too many assets: at most {self.asset_cap} per connection")
                return
            if msg.get("initial_dump", True):
                self._books(conn, added)
            return
        if op in ("subscribe", "unsubscribe") and conn.initialised:
            if "custom_feature_enabled" in msg:
                conn.custom = bool(msg["custom_feature_enabled"])
            self.stats.ops_by_connection[conn.cid].append((op, len(assets)))
            if op == "subscribe":
                self.stats.subscribe_ops += 1
                added = self._subscribe(conn, assets)
                if assets and not added and len(conn.assets) + len(assets) > self.asset_cap:
                    self._queue(conn, f"too many assets: at most {self.asset_cap} per connection")
                    return
                self._books(conn, added)
            else:
                self.stats.unsubscribe_ops += 1
                self._unsubscribe(conn, assets)
            return
        self.stats.invalid_operations += 1
        self._queue(conn, "INVALID OPERATION")

    def _frames(self, conn: _Conn, items: list[dict[str, Any] | str]) -> list[str]:
        """Frames for the queued items, in queue order: data queued before a PONG goes out before it."""
        f = self.faults
        frames: list[str] = []
        data: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, str):
                self._flush(data, frames)
                data = []
                frames.append(item)  # PONG, INVALID OPERATION: always answered, never stalled
                continue
            if conn.stalled or f.stall_all:
                continue
            if "__frame__" in item:  # a poison frame: sent alone, as written
                self._flush(data, frames)
                data = []
                frames.append(item["__frame__"])
                continue
            if "__array__" in item:
                data.extend(item["__array__"])
                continue
            data.append(item)
            if f.duplicate_rate and f.rng.random() < f.duplicate_rate:
                data.append(item)
                self.stats.faults["duplicated"] += 1
        self._flush(data, frames)
        return frames

    def _flush(self, data: list[dict[str, Any]], frames: list[str]) -> None:
        """Data messages as one frame (an array when several), with the reorder/malformed faults."""
        if not data:
            return
        f = self.faults
        if f.reorder_rate and f.rng.random() < f.reorder_rate:
            f.rng.shuffle(data)
            self.stats.faults["reordered"] += 1
        self.stats.messages_sent += len(data)
        payload = data[0] if len(data) == 1 else data
        text = orjson.dumps(payload).decode()
        if f.malformed_rate and f.rng.random() < f.malformed_rate:
            text = f.rng.choice([text[: len(text) // 2], '{"event_type": "book", "asset_id": ', "\x00garbage",
                                 '{"event_type":"price_change","price_changes":"oops"}',
                                 '[{"event_type":"mystery_event","asset_id":"1"}]'])
            self.stats.faults["malformed"] += 1
        frames.append(text)

    async def _writer(self, conn: _Conn) -> None:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            items, conn.outbox = conn.outbox, []
            for frame in self._frames(conn, items):
                await conn.ws.send(frame)
                self.stats.frames_sent += 1

    async def _handler(self, ws: ServerConnection) -> None:
        self._next_cid += 1
        conn = _Conn(ws, self._next_cid)
        self._conns[conn.cid] = conn
        self.stats.connections_total += 1
        self.stats.connections_open += 1
        writer = asyncio.create_task(self._writer(conn))
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                self._handle_text(conn, text)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            self._unsubscribe(conn, list(conn.assets))
            self._conns.pop(conn.cid, None)
            self.stats.connections_open -= 1

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] != "/ws/market":
            return connection.respond(404, "not found\n")
        limit = self.faults.max_connects_per_second
        if limit:
            now = time.monotonic()
            self._connect_times = [t for t in self._connect_times if now - t < 1.0]
            if len(self._connect_times) >= limit:
                self.stats.refused_429 += 1
                return connection.respond(429, "Too Many Requests\n")
            self._connect_times.append(now)
        return None

    async def _start(self) -> None:
        self._server = await serve(self._handler, self.host, self.port, process_request=self._process_request,
                                   ping_interval=None, max_size=2**22, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick())

    def start(self) -> "ClobServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/market"

    def stop(self) -> None:
        async def _stop() -> None:
            if self._ticker is not None:
                self._ticker.cancel()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> "ClobServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
