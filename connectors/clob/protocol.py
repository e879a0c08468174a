"""CLOB market channel: frames → top of book per token, and the messages a client sends (pure; no I/O).

`BookTracker` keeps each subscribed token's price levels (from `book` snapshots, replaced
whole, and `price_change` level updates, where `size` is the new aggregate size and "0"
removes the level) and turns every frame into `PriceUpdate`s for the tokens whose top of
book changed. `best_bid_ask` messages set the top directly. Frames may be one object or an
array; `PONG` / `INVALID OPERATION` are plain text. Everything odd is counted per kind in
`errors` (and, when a metric group is given, as counters of that name in it) and skipped,
never raised; the rest of the frame still applies:

- `malformed_frame` (not JSON), `malformed_message` (a message or level change of the wrong
  shape: missing keys, wrong types, an unparseable price), `unknown_event_type`,
  `unknown_token` (an asset nobody subscribed);
- `price_out_of_range`: a price outside [0, 1] (NaN and inf included);
- `rejected_size`: a size that is not a finite non-negative number (inf, NaN, "-1", "x",
  true); a missing / empty size is 0 (the level is removed);
- `rejected_side`: a level change whose `side` is not exactly "BUY" or "SELL" — never
  applied to either side;
- `rejected_timestamp`: a server timestamp that is unreadable or outside
  [recv − `TS_MAX_BEHIND_MS`, recv + `TS_MAX_AHEAD_MS`]: the message still applies, stamped
  with the newest server timestamp accepted so far (the receive time before any): an absurd
  timestamp such as 2^64 or the year 2100 never reaches `PriceUpdate.exchange_ts_ms`; a
  missing timestamp stays 0 ("unknown");
- `rejected_depth`: levels beyond `MAX_LEVELS_PER_SIDE` on one side of a book, the
  farthest from the top dropped (one count per level dropped);
- `rejected_change_before_book`: a `price_change` level for a subscribed token whose
  `book` snapshot has not arrived (the change is not applied and no partial book is
  emitted; the snapshot, which the server sends on subscribe, starts the book; such tokens
  are listed in `need_book` so the client can ask for the snapshot again); a `best_bid_ask`
  for such a token is refused the same way: no price of a token is emitted before its book;
- `rejected_tick`: a `tick_size_change` (or a book's `tick_size`) that is not a number in
  (0, 0.1]: the token keeps the tick it had.

The venue's own top: each new-format `price_change` entry carries the asset's `best_bid` /
`best_ask` after the change. Once a message's level changes are applied, the tracked top of
every token it touched is checked against the last such pair announced for it; when they
disagree (a split or reordered frame left a stale level, which can cross the book: bid 0.311
over ask 0.301 where the venue says 0.29), the venue wins: levels better than its best are
dropped (its best is added with size 0, "size unknown", when the book lacks it), and the
disagreement is counted (`top_disagreements` in `events` and in the metric group). "0" as
best bid and "1" as best ask mean an empty side (no order rests at 0 or 1); an entry without
both fields (older recordings) is not checked, nor one in a message older (server timestamp)
than the last checked for that token: a reordered frame's top is stale.

Every `PriceUpdate` carries the token's best `depth` levels per side (flat tuples, best
first) and its live tick (`book.tick_size`, then `tick_size_change`); an update is emitted
when any of those changed, so a change deeper than `depth` levels emits nothing.

A `book` snapshot is atomic: one bad level rejects the snapshot (counted by its kind) and the
token keeps the book it had. A `price_change` is applied level by level: a bad level change
is counted and skipped, the others apply. Each side of a book keeps its prices sorted
(`BookSide`), so the top is read, not recomputed, after every change: a frame of 20,000
levels costs milliseconds (bench/clob_book.py). Each side also keeps its best `depth` levels
as the flat tuple an update carries, patched when a change reaches them, and the usual
well-formed message is read on a fast path that falls back to the careful reading above for
anything else (bench/clob_parse.py: the cost per frame).

`BookTracker.touched` tells the client whether the last frame carried data about a
subscribed token (what resets its stall watchdog); frames only about other assets
(broadcasts, complements, unknown tokens), `PONG`s and garbage do not.

`initial_subscription` / `subscription_change` build the client → server messages: the
first message on a socket (with `initial_dump`, so every book starts from a snapshot) and
the later `subscribe` / `unsubscribe` operations on the open socket. `PING` is the text
heartbeat the server answers with `PONG`.
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
_LONGEST_TEXT = max(map(len, KNOWN_TEXT))  # a longer frame is not one of them (no hashing of it)

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
_INF = math.inf


class _Prices(dict[str, float]):
    """`float(text)` of price strings, remembered: a market channel repeats a few thousand
    prices (one per tick), and reading one is a dict lookup instead of a parse. Raises what
    `float` raises (nothing is remembered then); forgets everything past `limit` entries."""

    limit = 20_000

    def __missing__(self, text: str) -> float:
        value = float(text)
        if len(self) >= self.limit:
            self.clear()
        self[text] = value
        return value


#: Only ever given `str` keys (the callers check the type first).
_PRICES = _Prices()
#: Builds a `PriceUpdate` from a tuple of all its fields, without the keyword-handling `__new__`.
_new_update = tuple.__new__


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


def _plain_levels(raw: list[Any]) -> dict[float, float] | None:
    """The usual `book` side read in one go: every level an object whose price and size are
    numeric strings, prices in (0, 1], sizes finite and > 0. None for anything else (an empty
    side included), which the careful level-by-level reading then handles."""
    try:
        rps = [lv["price"] for lv in raw]
        rss = [lv["size"] for lv in raw]
    except (TypeError, KeyError):
        return None
    if {*map(type, rps), *map(type, rss)} != {str}:
        return None
    try:
        ps = list(map(_PRICES.__getitem__, rps))
        ss = list(map(float, rss))
    except ValueError:
        return None
    total = sum(ps) + sum(ss)  # NaN if any is NaN (min / max would not see it)
    if total != total or not (0.0 < min(ps) and max(ps) <= 1.0 and 0.0 < min(ss) and max(ss) < _INF):
        return None
    return dict(zip(ps, ss))


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
    with a bisect. Holds at most `cap` levels: beyond it the level farthest from the top goes.

    `levels()` is the best `depth` levels as one flat tuple, best first (price, size, ...); it
    is kept (`flat`) until a change reaches those levels, so a change deeper than `depth`
    levels, or none at all, costs no rebuild. Change the side only through its methods."""

    __slots__ = ("is_bid", "prices", "cap", "depth", "flat")

    def __init__(self, is_bid: bool, cap: int = MAX_LEVELS_PER_SIDE, depth: int = BOOK_DEPTH) -> None:
        super().__init__()
        self.is_bid = is_bid
        self.prices: list[float] = []
        self.cap = cap
        self.depth = depth
        self.flat: tuple[float, ...] | None = None  # levels() until a change reaches them

    def levels(self) -> tuple[float, ...]:
        """The best `depth` levels, best first, flat: (price, size, price, size, ...)."""
        flat = self.flat
        if flat is None:
            n, prices = self.depth, self.prices
            best = (prices[: -n - 1: -1] if self.is_bid else prices[:n]) if n else ()
            out: list[float] = []
            for p in best:
                out += (p, self[p])
            flat = self.flat = tuple(out)
        return flat

    def best(self) -> float | None:
        prices = self.prices
        if not prices:
            return None
        return prices[-1] if self.is_bid else prices[0]

    def set_level(self, price: float, size: float) -> int:
        """Set (size > 0) or remove (size 0) one level; returns the levels dropped by the cap (0 or 1)."""
        prices = self.prices
        if size <= 0.0:
            if price in self:
                del self[price]
                i = bisect_left(prices, price)
                del prices[i]
                if self.flat is not None:
                    self._removed(i)
            return 0
        if price in self:
            self[price] = size
            if self.flat is not None:
                self._resized(price, size)
            return 0
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
            self.flat = None
        i = bisect_left(prices, price)
        prices.insert(i, price)
        self[price] = size
        if self.flat is not None:
            self._inserted(i, price, size)
        return dropped

    def _resized(self, price: float, size: float) -> None:
        """Keep `flat` right after the size of an existing level changed."""
        prices = self.prices
        i = bisect_left(prices, price)
        k = len(prices) - 1 - i if self.is_bid else i
        if k < self.depth:
            flat = self.flat
            self.flat = flat[: 2 * k + 1] + (size,) + flat[2 * k + 2:]

    def _inserted(self, i: int, price: float, size: float) -> None:
        """Keep `flat` right after a new level went in at `prices[i]` (no level dropped)."""
        n = self.depth
        k = len(self.prices) - 1 - i if self.is_bid else i  # levels better than it
        if k < n:
            flat = self.flat
            self.flat = flat[: 2 * k] + (price, size) + flat[2 * k: 2 * n - 2]

    def _removed(self, i: int) -> None:
        """Keep `flat` right after the level at `prices[i]` went (`prices` no longer holds it)."""
        prices, n = self.prices, self.depth
        k = len(prices) - i if self.is_bid else i
        if k < n:
            flat = self.flat
            flat = flat[: 2 * k] + flat[2 * k + 2:]
            if len(prices) >= n:  # the level that now ranks n-th comes in at the end
                p = prices[-n] if self.is_bid else prices[n - 1]
                flat += (p, self[p])
            self.flat = flat

    def replace(self, levels: dict[float, float]) -> int:
        """Become `levels` (sizes > 0), keeping the `cap` best; returns the levels dropped."""
        self.flat = None
        self.clear()
        prices = sorted(levels)
        dropped = max(0, len(prices) - self.cap)
        if dropped:
            prices = prices[dropped:] if self.is_bid else prices[: self.cap]
        self.prices = prices
        self.update(zip(prices, map(levels.__getitem__, prices)))
        return dropped

    def cut_above_best(self, best: float | None) -> None:
        """Drop every level better than `best` (all of them for None); `best` itself is kept
        with its known size or added with size 0 (for `best_bid_ask`)."""
        self.flat = None
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
            bids = self.bids[token] = BookSide(True, self.cap, self.depth)
        asks = self.asks.get(token)
        if asks is None:
            asks = self.asks[token] = BookSide(False, self.cap, self.depth)
        return bids, asks

    def _emit(self, token: str, ts: int, recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        bids, asks = self.bids.get(token), self.asks.get(token)
        if bids is None or asks is None:
            bids, asks = self._sides(token)
        b = bids.flat
        if b is None:
            b = bids.levels()
        a = asks.flat
        if a is None:
            a = asks.levels()
        tick = self.ticks.get(token, 0.0)
        key = (b, a, tick)
        if self.emitted.get(token) == key:
            return
        self.emitted[token] = key
        if not self.depth:  # depth 0: the top alone
            bb, ba = bids.best(), asks.best()
            top = (bb, ba, bids[bb] if bb is not None else None, asks[ba] if ba is not None else None)
        elif b:
            top = (b[0], a[0], b[1], a[1]) if a else (b[0], None, b[1], None)
        else:
            top = (None, a[0], None, a[1]) if a else (None, None, None, None)
        self.top[token] = top
        out[token] = _new_update(PriceUpdate, (token, top[0], top[1], top[2], top[3], ts, recv_ms, self.shard,
                                               False, b, a, tick))

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
        if isinstance(frame, str) and len(frame) <= _LONGEST_TEXT and frame in KNOWN_TEXT:
            self.events[frame.lower().replace(" ", "_")] += 1  # "pong", "invalid_operation"
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
        if type(raw) is str:  # the usual "1786728432337": read here, as exchange_ts would
            try:
                ts = int(raw)
            except ValueError:
                pass
            else:
                if recv_ms - TS_MAX_BEHIND_MS <= ts <= recv_ms + TS_MAX_AHEAD_MS:
                    if ts > self.last_ts:
                        self.last_ts = ts
                    return ts
        ts, ok = exchange_ts(raw, recv_ms)
        if ok:
            self.last_ts = max(self.last_ts, ts)
            return ts
        self.count("rejected_timestamp", str(msg.get("asset_id", ""))[:80], f"timestamp {raw!r:.60}")
        return self.last_ts or ts

    def _levels(self, raw: Any, token: str) -> dict[float, float]:
        if not isinstance(raw, list):
            raise ClobMessageError("levels are not a list")
        levels = _plain_levels(raw)
        if levels is not None:
            return levels
        levels = {}
        for lv in raw:
            p, s = _price(lv["price"]), _size(lv.get("size"))
            if s > 0:
                levels[p] = s
            else:
                levels.pop(p, None)
        return levels

    def _message(self, msg: dict[str, Any], recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        kind = msg.get("event_type")
        if kind == "price_change":
            changes = msg["price_changes"]
            if not isinstance(changes, list):
                raise ClobMessageError("price_changes is not a list")
            self.events["price_change"] += 1
            ts = self._ts(msg, recv_ms)
            self._changes(changes, ts, recv_ms, out)
        elif kind == "book":
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
        token whose top moved. The usual entry (numeric strings, side BUY / SELL) is read inline;
        any other goes through the careful readers (`_price`, `_size`, `_venue_top`)."""
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
                    if token in self.complements:  # as `_known` would
                        self.events["complement_skipped"] += 1
                    else:
                        self.count("unknown_token", token)
                    continue
                self.touched = True
                side = ch.get("side")
                rp, rs = ch.get("price"), ch.get("size")
                price = size = -1.0
                if type(rp) is str and type(rs) is str:
                    try:
                        price, size = _PRICES[rp], float(rs)
                    except ValueError:
                        price = -1.0
                if 0.0 <= price <= 1.0 and 0.0 <= size < _INF:
                    price += 0.0  # -0.0 -> 0.0
                else:
                    price = _price(ch["price"])
                    size = _size(rs)
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
                rb, ra = ch.get("best_bid"), ch.get("best_ask")
                if type(rb) is str and type(ra) is str:  # as `_venue_top` would read them
                    try:
                        vb, va = _PRICES[rb], _PRICES[ra]
                    except ValueError:
                        continue
                    if 0.0 <= vb <= 1.0 and 0.0 <= va <= 1.0:
                        venue[token] = (vb if vb > 0.0 else None), (va + 0.0 if va < 1.0 else None)
                else:
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
        bp, ap = bids.prices, asks.prices
        bb = bp[-1] if bp else None
        ba = ap[0] if ap else None
        if bb == vb and ba == va:
            return
        self.note("top_disagreements")
        if bb != vb:
            bids.cut_above_best(vb)
        if ba != va:
            asks.cut_above_best(va)


def _tok(ch: Any) -> str:
    token = ch.get("asset_id", "") if isinstance(ch, dict) else ""
    return token[:80] if isinstance(token, str) else ""
