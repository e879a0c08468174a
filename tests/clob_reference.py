"""REFERENCE ONLY: a frozen copy of the CLOB market-channel parser (`connectors.clob.protocol`)
as it was before its hot path was optimised, kept verbatim so the differential test and
bench/clob_parse.py can compare the optimised `BookTracker` with it (same updates, same
counts) and time the two side by side. Not used by the application; do not change it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import orjson

from polyalphascan.records import PriceUpdate

PING = "PING"
PONG = "PONG"
INVALID_OPERATION = "INVALID OPERATION"
KNOWN_TEXT = {PONG, INVALID_OPERATION}

#: The most price levels kept per side of one token's book; beyond it the levels farthest
#: from the top are dropped (counted `rejected_depth`). Tick sizes of 0.01–0.001 give at
#: most 101–1001 distinct prices on [0, 1], so this never drops a real level there; on a
#: 0.0001 tick it still keeps the 0.1 nearest the top, far more than any top-of-book use.
MAX_LEVELS_PER_SIDE = 1000
#: Levels per side a `PriceUpdate` carries (the depth the pricing walks): enough for the
#: profit curve of a basket up to ~1,000 shares on real books, small enough to pickle cheaply.
BOOK_DEPTH = 10
#: A server timestamp more than this ahead of the receive time is not believed (clock skew
#: between the exchange and us is milliseconds; an hour is a broken or hostile value).
TS_MAX_AHEAD_MS = 3_600_000
#: ...nor one more than this behind it (no market-channel message is a day old).
TS_MAX_BEHIND_MS = 86_400_000


class ClobError(Exception):
    """Base of the CLOB connector's errors."""


class ClobMessageError(ClobError, ValueError):
    """A market-channel message that does not have the expected shape (counted as
    `malformed_message` by `BookTracker`, never raised out of `handle`)."""


class Rejected(ClobMessageError):
    """A field with a value the tracker refuses; `kind` is the counter it is counted under."""

    kind = "malformed_message"


class PriceOutOfRange(Rejected):
    """A price outside [0, 1] (counted as `price_out_of_range`)."""

    kind = "price_out_of_range"


class BadSize(Rejected):
    """A size that is not a finite non-negative number (counted as `rejected_size`)."""

    kind = "rejected_size"


class Counts(Protocol):
    """Where rejections are counted besides `BookTracker.errors` (a `MetricGroup`)."""

    def inc(self, key: str, n: float = 1) -> None: ...


def initial_subscription(tokens: Iterable[str]) -> str:
    """The first message on a new socket: subscribe `tokens`, starting from book snapshots."""
    return orjson.dumps({"type": "market", "assets_ids": sorted(tokens), "initial_dump": True, "level": 2,
                         "custom_feature_enabled": False}).decode()


def subscription_change(operation: Literal["subscribe", "unsubscribe"], tokens: Iterable[str]) -> str:
    """Add or remove `tokens` on an open socket (no reconnect)."""
    return orjson.dumps({"operation": operation, "assets_ids": sorted(tokens)}).decode()


#: The largest subscribe message sent. A production bot saw a subscribe message above about
#: 57 KiB silently part-served (at 61.6 KiB only 12 of 119 test ids got data); 16 KiB (~200
#: 77-digit token ids) stays far below that.
MAX_SUBSCRIBE_BYTES = 16 * 1024


def _chunks(tokens: list[str], budget: int) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for t in tokens:
        cost = len(t) + 3  # quotes and comma
        if cur and size + cost > budget:
            out.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += cost
    if cur:
        out.append(cur)
    return out


def subscribe_messages(tokens: Iterable[str], *, initial: bool, max_bytes: int = MAX_SUBSCRIBE_BYTES) -> list[str]:
    """`tokens` as subscribe messages of at most `max_bytes` each: with `initial`, the first is the
    socket's initial subscription (sent once per socket) and the others `subscribe` operations."""
    budget = max_bytes - 128  # the envelope
    out: list[str] = []
    for i, chunk in enumerate(_chunks(sorted(tokens), budget)):
        out.append(initial_subscription(chunk) if initial and i == 0 else subscription_change("subscribe", chunk))
    if initial and not out:
        out.append(initial_subscription(()))
    return out


def unsubscribe_messages(tokens: Iterable[str], max_bytes: int = MAX_SUBSCRIBE_BYTES) -> list[str]:
    """`unsubscribe` operations of at most `max_bytes` each."""
    return [subscription_change("unsubscribe", c) for c in _chunks(sorted(tokens), max_bytes - 128)]


#: What a malformed field raises while being read (OverflowError: int(inf), float(10**400)).
_BAD = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


def _number(raw: Any) -> float:
    """A JSON number or a numeric string as a float (may be inf / NaN); bool, None, lists and
    objects raise TypeError, other strings ValueError."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise TypeError(f"not a number: {type(raw).__name__}")
    return float(raw)


def _price(raw: Any) -> float:
    """A level's price, on [0, 1] (PriceOutOfRange otherwise, NaN included)."""
    p = _number(raw)
    if not 0.0 <= p <= 1.0:
        raise PriceOutOfRange(f"price {raw!r:.40} outside [0, 1]")
    return p + 0.0  # -0.0 -> 0.0


def _price_or_none(raw: Any) -> float | None:
    """`best_bid_ask` prices: None / "" = an empty side."""
    return None if raw is None or raw == "" else _price(raw)


def _venue_top(ch: dict[str, Any]) -> tuple[float | None, float | None] | None:
    """A `price_change` entry's announced (best bid, best ask), or None when it does not say
    both (missing, null, "") or either is unreadable. "0" as bid / "1" as ask is an empty side."""
    rb, ra = ch.get("best_bid"), ch.get("best_ask")
    if rb is None or ra is None or rb == "" or ra == "":
        return None
    try:
        bb, ba = _price(rb), _price(ra)
    except _BAD:
        return None
    return (bb if bb > 0.0 else None), (ba if ba < 1.0 else None)


def _tick(raw: Any) -> float:
    """A tick size in (0, 0.1] (ClobMessageError otherwise)."""
    t = _number(raw)
    if not 0.0 < t <= 0.1:
        raise Rejected(f"tick {raw!r:.40} outside (0, 0.1]")
    return t


class RejectedTick(Rejected):
    kind = "rejected_tick"


def _size(raw: Any) -> float:
    """A level's size: finite and >= 0 (BadSize otherwise); missing / "" = 0 (removed)."""
    if raw is None or raw == "":
        return 0.0
    try:
        s = _number(raw)
    except _BAD:
        raise BadSize(f"size {raw!r:.40} is not a number") from None
    if not 0.0 <= s < math.inf:  # NaN fails too
        raise BadSize(f"size {raw!r:.40} is not finite and non-negative")
    return s


def exchange_ts(raw: Any, recv_ms: int) -> tuple[int, bool]:
    """The server timestamp to publish for a message received at `recv_ms`, and whether the
    raw value was accepted. Missing (None / "") is 0, "unknown", and accepted; an unreadable
    value or one outside [recv - TS_MAX_BEHIND_MS, recv + TS_MAX_AHEAD_MS] is replaced by
    `recv_ms` and not accepted."""
    if raw is None or raw == "":
        return 0, True
    try:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise TypeError
        if isinstance(raw, int):
            ts = raw
        else:
            try:
                ts = int(raw)  # "1700000000000" (a 5,000-digit string raises ValueError)
            except ValueError:
                ts = int(float(raw))  # "1.7e12" (inf/NaN raise)
    except _BAD:
        return recv_ms, False
    if recv_ms - TS_MAX_BEHIND_MS <= ts <= recv_ms + TS_MAX_AHEAD_MS:
        return ts, True
    return recv_ms, False


class BookSide(dict[float, float]):
    """One side of a token's book: price -> size (a dict, so it compares with one), plus its
    prices sorted ascending, so the best price is read in O(1) and a level is added or removed
    with a bisect. Holds at most `cap` levels: beyond it the level farthest from the top goes."""

    __slots__ = ("is_bid", "prices", "cap")

    def __init__(self, is_bid: bool, cap: int = MAX_LEVELS_PER_SIDE) -> None:
        super().__init__()
        self.is_bid = is_bid
        self.prices: list[float] = []
        self.cap = cap

    def best(self) -> float | None:
        prices = self.prices
        if not prices:
            return None
        return prices[-1] if self.is_bid else prices[0]

    def set_level(self, price: float, size: float) -> int:
        """Set (size > 0) or remove (size 0) one level; returns the levels dropped by the cap (0 or 1)."""
        if size <= 0.0:
            if price in self:
                del self[price]
                prices = self.prices
                del prices[bisect_left(prices, price)]
            return 0
        if price in self:
            self[price] = size
            return 0
        prices = self.prices
        dropped = 0
        if len(prices) >= self.cap:
            if self.is_bid:
                if price < prices[0]:
                    return 1  # the new level is the farthest: it is the one dropped
                del self[prices.pop(0)]
            else:
                if price > prices[-1]:
                    return 1
                del self[prices.pop()]
            dropped = 1
        insort(prices, price)
        self[price] = size
        return dropped

    def replace(self, levels: dict[float, float]) -> int:
        """Become `levels` (sizes > 0), keeping the `cap` best; returns the levels dropped."""
        self.clear()
        prices = sorted(levels)
        dropped = max(0, len(prices) - self.cap)
        if dropped:
            prices = prices[dropped:] if self.is_bid else prices[: self.cap]
        self.prices = prices
        self.update((p, levels[p]) for p in prices)
        return dropped

    def cut_above_best(self, best: float | None) -> None:
        """Drop every level better than `best` (all of them for None); `best` itself is kept
        with its known size or added with size 0 (for `best_bid_ask`)."""
        prices = self.prices
        if best is None:
            self.clear()
            prices.clear()
            return
        if self.is_bid:
            while prices and prices[-1] > best:
                del self[prices.pop()]
        else:
            cut = bisect_left(prices, best)  # the asks better (lower) than the announced one
            for p in prices[:cut]:
                del self[p]
            del prices[:cut]
        if best not in self:
            insort(prices, best)
            self[best] = 0.0
            if len(prices) > self.cap:
                del self[prices.pop(0) if self.is_bid else prices.pop()]


class BookTracker:
    """The books of one shard's tokens. Set `subscribed` (tokens whose updates are wanted) and
    `complements` (their NO tokens: expected in `price_change` messages, skipped, not errors)
    before feeding frames to `handle`. `metrics` (optional): a group where every error kind is
    also counted (the client passes its `ws` group)."""

    def __init__(self, shard: int = -1, metrics: Counts | None = None, cap: int = MAX_LEVELS_PER_SIDE,
                 depth: int = BOOK_DEPTH) -> None:
        self.shard = shard
        self.metrics = metrics
        self.cap = cap
        self.depth = depth
        self.ticks: dict[str, float] = {}  # live tick per token (book `tick_size`, `tick_size_change`)
        self.venue_ts: dict[str, int] = {}  # server timestamp of the venue top last checked, per token
        self.subscribed: set[str] = set()
        self.complements: set[str] = set()  # NO tokens of subscribed YES tokens: expected, ignored
        self.bids: dict[str, BookSide] = {}
        self.asks: dict[str, BookSide] = {}
        self.booked: set[str] = set()  # tokens whose `book` snapshot has arrived
        #: Subscribed tokens that got level changes before their book (e.g. the snapshot frame was
        #: garbled): the client asks for their snapshot again and empties this set.
        self.need_book: set[str] = set()
        #: The top last emitted per token: (best bid, best ask, bid size, ask size).
        self.top: dict[str, tuple[float | None, float | None, float | None, float | None]] = {}
        #: What was last emitted per token: (bid levels, ask levels, tick) — an update goes out only
        #: when one of them changed.
        self.emitted: dict[str, tuple[tuple[float, ...], tuple[float, ...], float]] = {}
        self.errors: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        #: The last rejection of each kind: (token or "", a short description), for the client's log.
        self.last_error: dict[str, tuple[str, str]] = {}
        #: Whether the last `handle`d frame carried data about a subscribed token.
        self.touched = False
        self.last_ts = 0  # the newest server timestamp accepted (what stands in for a refused one)

    def count(self, kind: str, token: str = "", detail: str = "", n: int = 1) -> None:
        self.errors[kind] += n
        self.last_error[kind] = (token, detail[:200])
        if self.metrics is not None:
            self.metrics.inc(kind, n)

    def note(self, kind: str, n: int = 1) -> None:
        """A counted event that is no rejection (e.g. `top_disagreements`)."""
        self.events[kind] += n
        if self.metrics is not None:
            self.metrics.inc(kind, n)

    def forget(self, token: str) -> None:
        self.ticks.pop(token, None)
        self.venue_ts.pop(token, None)
        self.bids.pop(token, None)
        self.asks.pop(token, None)
        self.top.pop(token, None)
        self.emitted.pop(token, None)
        self.booked.discard(token)
        self.need_book.discard(token)

    def _sides(self, token: str) -> tuple[BookSide, BookSide]:
        bids = self.bids.get(token)
        if bids is None:
            bids = self.bids[token] = BookSide(True, self.cap)
        asks = self.asks.get(token)
        if asks is None:
            asks = self.asks[token] = BookSide(False, self.cap)
        return bids, asks

    def _emit(self, token: str, ts: int, recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        bids, asks = self._sides(token)
        n = self.depth
        bp, ap = bids.prices, asks.prices
        bl: list[float] = []
        for p in bp[: -n - 1: -1] if n else ():  # best (highest) bid first
            bl += (p, bids[p])
        al: list[float] = []
        for p in ap[:n]:  # best (lowest) ask first
            al += (p, asks[p])
        key = (tuple(bl), tuple(al), self.ticks.get(token, 0.0))
        if self.emitted.get(token) == key:
            return
        self.emitted[token] = key
        b, a = key[0], key[1]
        if not n:  # depth 0: the top alone
            bb, ba = bids.best(), asks.best()
            top = (bb, ba, bids[bb] if bb is not None else None, asks[ba] if ba is not None else None)
        else:
            top = (b[0] if b else None, a[0] if a else None, b[1] if b else None, a[1] if a else None)
        self.top[token] = top
        out[token] = PriceUpdate(token, top[0], top[1], top[2], top[3], ts, recv_ms, self.shard, False, b, a,
                                 key[2])

    def _known(self, token: str) -> bool:
        if token in self.subscribed:
            self.touched = True
            return True
        if token in self.complements:
            self.events["complement_skipped"] += 1
        else:
            self.count("unknown_token", token)
        return False

    def handle(self, frame: str | bytes, recv_ms: int) -> list[PriceUpdate]:
        """Updates for the tokens whose top of book changed (newest per token). Never raises."""
        self.touched = False
        if isinstance(frame, str) and frame in KNOWN_TEXT:  # "pong", "invalid_operation"
            self.events[frame.lower().replace(" ", "_")] += 1
            return []
        try:
            data = orjson.loads(frame)
        except (orjson.JSONDecodeError, TypeError):
            self.count("malformed_frame", "", repr(frame[:80]))
            return []
        msgs = data if isinstance(data, list) else [data]
        out: dict[str, PriceUpdate] = {}
        for msg in msgs:
            if not isinstance(msg, dict):
                self.count("malformed_message", "", repr(msg)[:80])
                continue
            try:
                self._message(msg, recv_ms, out)
            except Rejected as exc:
                self.count(exc.kind, str(msg.get("asset_id", "")), str(exc))
            except _BAD as exc:  # incl. ClobMessageError
                self.count("malformed_message", str(msg.get("asset_id", ""))[:80], repr(exc))
        return list(out.values())

    def _ts(self, msg: dict[str, Any], recv_ms: int) -> int:
        """The message's server timestamp; a refused one becomes the newest server timestamp
        accepted so far (the receive time only before any): stamped with our receive time, a
        poisoned message could outrank the genuine ones the server sent just after it, and
        the Redis writer refuses an update older than what it holds."""
        raw = msg.get("timestamp")
        ts, ok = exchange_ts(raw, recv_ms)
        if ok:
            self.last_ts = max(self.last_ts, ts)
            return ts
        self.count("rejected_timestamp", str(msg.get("asset_id", ""))[:80], f"timestamp {raw!r:.60}")
        return self.last_ts or ts

    def _levels(self, raw: Any, token: str) -> dict[float, float]:
        if not isinstance(raw, list):
            raise ClobMessageError("levels are not a list")
        levels: dict[float, float] = {}
        for lv in raw:
            p, s = _price(lv["price"]), _size(lv.get("size"))
            if s > 0:
                levels[p] = s
            else:
                levels.pop(p, None)
        return levels

    def _message(self, msg: dict[str, Any], recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        kind = msg.get("event_type")
        if kind == "book":
            token = msg["asset_id"]
            if not isinstance(token, str):
                raise ClobMessageError("asset_id is not a string")
            if not self._known(token):
                return
            bids = self._levels(msg["bids"], token)  # all levels read before anything changes
            asks = self._levels(msg["asks"], token)
            ts = self._ts(msg, recv_ms)
            raw_tick = msg.get("tick_size")
            if raw_tick is not None and raw_tick != "":  # a refresh after a trade omits it
                try:
                    self.ticks[token] = _tick(raw_tick)
                except _BAD + (Rejected,):
                    self.count("rejected_tick", token, f"tick_size {raw_tick!r:.40}")
            b, a = self._sides(token)
            dropped = b.replace(bids) + a.replace(asks)
            if dropped:
                self.count("rejected_depth", token, f"{dropped} levels beyond {self.cap} per side", dropped)
            self.booked.add(token)
            self.need_book.discard(token)
            self.events["book"] += 1
            self._emit(token, ts, recv_ms, out)
        elif kind == "price_change":
            changes = msg["price_changes"]
            if not isinstance(changes, list):
                raise ClobMessageError("price_changes is not a list")
            self.events["price_change"] += 1
            ts = self._ts(msg, recv_ms)
            self._changes(changes, ts, recv_ms, out)
        elif kind == "best_bid_ask":
            token = msg["asset_id"]
            if not isinstance(token, str):
                raise ClobMessageError("asset_id is not a string")
            if not self._known(token):
                return
            bb, ba = _price_or_none(msg.get("best_bid")), _price_or_none(msg.get("best_ask"))
            if token not in self.booked:  # no price before the token's book
                self.count("rejected_change_before_book", token, "best_bid_ask before book")
                self.need_book.add(token)
                return
            ts = self._ts(msg, recv_ms)
            self.events["best_bid_ask"] += 1
            # keep the level maps consistent with the announced top (sizes as last known)
            bids, asks = self._sides(token)
            bids.cut_above_best(bb)
            asks.cut_above_best(ba)
            self._emit(token, ts, recv_ms, out)
        elif kind == "tick_size_change":
            self.events[kind] += 1
            token = msg.get("asset_id")
            if not isinstance(token, str) or token not in self.subscribed:
                return
            self.touched = True
            raw = msg.get("new_tick_size")
            try:
                tick = _tick(raw)
            except _BAD + (Rejected,):
                self.count("rejected_tick", token, f"new_tick_size {raw!r:.40}")
                return
            self.ticks[token] = tick
            if token in self.booked:
                self._emit(token, self._ts(msg, recv_ms), recv_ms, out)
        elif kind == "last_trade_price":
            self.events[kind] += 1
            if msg.get("asset_id") in self.subscribed:
                self.touched = True
        elif kind in ("new_market", "market_resolved"):  # broadcasts: not data about this shard's tokens
            self.events[kind] += 1
        else:
            self.count("unknown_event_type", "", f"event_type {kind!r:.60}")

    def _changes(self, changes: list[Any], ts: int, recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        """Apply level changes one by one (a bad one is counted and skipped), then emit once per
        token whose top moved."""
        subscribed, booked = self.subscribed, self.booked
        moved: set[str] = set()
        venue: dict[str, tuple[float | None, float | None]] = {}  # last announced top per token
        dropped = 0
        for ch in changes:
            try:
                token = ch["asset_id"]
                if token not in subscribed or not isinstance(token, str):
                    if not isinstance(token, str):
                        raise ClobMessageError("asset_id is not a string")
                    self._known(token)
                    continue
                self.touched = True
                side = ch.get("side")
                price = _price(ch["price"])
                size = _size(ch.get("size"))
                if side == "BUY":
                    book = self.bids.get(token)
                elif side == "SELL":
                    book = self.asks.get(token)
                else:
                    self.count("rejected_side", token, f"side {side!r:.40}")
                    continue
                if token not in booked or book is None:
                    self.count("rejected_change_before_book", token)
                    self.need_book.add(token)
                    continue
                dropped += book.set_level(price, size)  # counted once per message (hot loop)
                moved.add(token)
                top = _venue_top(ch)
                if top is not None:
                    venue[token] = top
            except Rejected as exc:
                self.count(exc.kind, _tok(ch), str(exc))
            except _BAD as exc:
                self.count("malformed_message", _tok(ch), repr(exc))
        if dropped:
            self.count("rejected_depth", "", f"{dropped} levels beyond {self.cap} per side", dropped)
        seen = self.venue_ts
        for token in moved:
            top = venue.get(token)
            if top is not None and ts >= seen.get(token, 0):  # an older (reordered) message's top is stale
                seen[token] = ts
                self._check_top(token, top)
            self._emit(token, ts, recv_ms, out)

    def _check_top(self, token: str, top: tuple[float | None, float | None]) -> None:
        """Make the tracked top agree with the venue's announced one (the venue wins; counted)."""
        bids, asks = self.bids[token], self.asks[token]
        vb, va = top
        if bids.best() == vb and asks.best() == va:
            return
        self.note("top_disagreements")
        if bids.best() != vb:
            bids.cut_above_best(vb)
        if asks.best() != va:
            asks.cut_above_best(va)


def _tok(ch: Any) -> str:
    token = ch.get("asset_id", "") if isinstance(ch, dict) else ""
    return token[:80] if isinstance(token, str) else ""
