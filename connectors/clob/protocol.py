"""CLOB market channel: frames → top of book per token, and the messages a client sends (pure; no I/O).

`BookTracker` keeps each subscribed token's price levels (from `book` snapshots, replaced
whole, and `price_change` level updates, where `size` is the new aggregate size and "0"
removes the level) and turns every frame into `PriceUpdate`s for the tokens whose top of
book changed. `best_bid_ask` messages set the top directly. Frames may be one object or an
array; `PONG` / `INVALID OPERATION` are plain text. Everything odd is counted per kind in
`errors` and skipped, never raised: malformed JSON, unknown event types, prices outside
[0, 1], tokens nobody subscribed.

`initial_subscription` / `subscription_change` build the client → server messages: the
first message on a socket (with `initial_dump`, so every book starts from a snapshot) and
the later `subscribe` / `unsubscribe` operations on the open socket. `PING` is the text
heartbeat the server answers with `PONG`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

import orjson

from polyalphascan.records import PriceUpdate

PING = "PING"
PONG = "PONG"
INVALID_OPERATION = "INVALID OPERATION"
KNOWN_TEXT = {PONG, INVALID_OPERATION}


class ClobError(Exception):
    """Base of the CLOB connector's errors."""


class ClobMessageError(ClobError, ValueError):
    """A market-channel message that does not have the expected shape (counted as
    `malformed_message` by `BookTracker`, never raised out of `handle`)."""


class PriceOutOfRange(ClobMessageError):
    """A price outside [0, 1] (counted as `price_out_of_range`)."""


def initial_subscription(tokens: Iterable[str]) -> str:
    """The first message on a new socket: subscribe `tokens`, starting from book snapshots."""
    return orjson.dumps({"type": "market", "assets_ids": sorted(tokens), "initial_dump": True, "level": 2,
                         "custom_feature_enabled": False}).decode()


def subscription_change(operation: Literal["subscribe", "unsubscribe"], tokens: Iterable[str]) -> str:
    """Add or remove `tokens` on an open socket (no reconnect)."""
    return orjson.dumps({"operation": operation, "assets_ids": sorted(tokens)}).decode()


def _price(raw: Any) -> float | None:
    if raw is None or raw == "":
        return None
    p = float(raw)
    if not 0.0 <= p <= 1.0:
        raise PriceOutOfRange(f"price {p} outside [0, 1]")
    return p


class BookTracker:
    """The books of one shard's tokens. Set `subscribed` (tokens whose updates are wanted) and
    `complements` (their NO tokens: expected in `price_change` messages, skipped, not errors)
    before feeding frames to `handle`."""

    def __init__(self, shard: int = -1) -> None:
        self.shard = shard
        self.subscribed: set[str] = set()
        self.complements: set[str] = set()  # NO tokens of subscribed YES tokens: expected, ignored
        self.bids: dict[str, dict[float, float]] = {}
        self.asks: dict[str, dict[float, float]] = {}
        self.top: dict[str, tuple[float | None, float | None, float | None, float | None]] = {}
        self.errors: Counter[str] = Counter()
        self.events: Counter[str] = Counter()

    def forget(self, token: str) -> None:
        self.bids.pop(token, None)
        self.asks.pop(token, None)
        self.top.pop(token, None)

    def _emit(self, token: str, ts: int, recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        bids, asks = self.bids.get(token, {}), self.asks.get(token, {})
        bb = max(bids) if bids else None
        ba = min(asks) if asks else None
        top = (bb, ba, bids.get(bb) if bb is not None else None, asks.get(ba) if ba is not None else None)
        if self.top.get(token) == top:
            return
        self.top[token] = top
        out[token] = PriceUpdate(token, top[0], top[1], top[2], top[3], ts, recv_ms, self.shard)

    def _known(self, token: str) -> bool:
        if token in self.subscribed:
            return True
        if token in self.complements:
            self.events["complement_skipped"] += 1
        else:
            self.errors["unknown_token"] += 1
        return False

    def handle(self, frame: str | bytes, recv_ms: int) -> list[PriceUpdate]:
        """Updates for the tokens whose top of book changed (newest per token)."""
        if isinstance(frame, str) and frame in KNOWN_TEXT:  # "pong", "invalid_operation"
            self.events[frame.lower().replace(" ", "_")] += 1
            return []
        try:
            data = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.errors["malformed_frame"] += 1
            return []
        msgs = data if isinstance(data, list) else [data]
        out: dict[str, PriceUpdate] = {}
        for msg in msgs:
            if not isinstance(msg, dict):
                self.errors["malformed_message"] += 1
                continue
            try:
                self._message(msg, recv_ms, out)
            except PriceOutOfRange:
                self.errors["price_out_of_range"] += 1
            except (TypeError, ValueError, KeyError, AttributeError):  # incl. ClobMessageError
                self.errors["malformed_message"] += 1
        return list(out.values())

    def _message(self, msg: dict[str, Any], recv_ms: int, out: dict[str, PriceUpdate]) -> None:
        kind = msg.get("event_type")
        ts = int(msg.get("timestamp") or 0)
        if kind == "book":
            token = str(msg["asset_id"])
            if not self._known(token):
                return
            bids = {p: float(lv["size"]) for lv in msg["bids"] if (p := _price(lv["price"])) is not None}
            asks = {p: float(lv["size"]) for lv in msg["asks"] if (p := _price(lv["price"])) is not None}
            self.bids[token] = {p: s for p, s in bids.items() if s > 0}
            self.asks[token] = {p: s for p, s in asks.items() if s > 0}
            self.events["book"] += 1
            self._emit(token, ts, recv_ms, out)
        elif kind == "price_change":
            changes = msg["price_changes"]
            if not isinstance(changes, list):
                raise ClobMessageError("price_changes is not a list")
            self.events["price_change"] += 1
            for ch in changes:
                token = str(ch["asset_id"])
                if not self._known(token):
                    continue
                price = _price(ch["price"])
                size = float(ch.get("size") or 0)
                book = self.bids.setdefault(token, {}) if ch["side"] == "BUY" else self.asks.setdefault(token, {})
                if price is not None:
                    if size > 0:
                        book[price] = size
                    else:
                        book.pop(price, None)
                self._emit(token, ts, recv_ms, out)
        elif kind == "best_bid_ask":
            token = str(msg["asset_id"])
            if not self._known(token):
                return
            self.events["best_bid_ask"] += 1
            bb, ba = _price(msg.get("best_bid")), _price(msg.get("best_ask"))
            # keep the level maps consistent with the announced top (sizes as last known)
            bids, asks = self.bids.setdefault(token, {}), self.asks.setdefault(token, {})
            for p in [p for p in bids if bb is None or p > bb]:
                bids.pop(p)
            for p in [p for p in asks if ba is None or p < ba]:
                asks.pop(p)
            if bb is not None:
                bids.setdefault(bb, 0.0)
            if ba is not None:
                asks.setdefault(ba, 0.0)
            self._emit(token, ts, recv_ms, out)
        elif kind in ("last_trade_price", "tick_size_change", "new_market", "market_resolved"):
            self.events[kind] += 1
        else:
            self.errors["unknown_event_type"] += 1
