"""Hostile CLOB input (connectors/clob): sizes, sides, timestamps, depth, changes before the
book, the data watchdog — and property-based frames with bad values in every field.

The model-based property builds frames from labelled field values (each value valid, or
invalid with the counter kind it must land in), applies them to books kept by the test, and
compares the tracker's books, tops, updates and counters with them exactly: every rejection
counted under its kind, every valid level in the same frame applied. The fuzz property puts
arbitrary JSON (huge numbers, wrong types, lone surrogates, nesting) in every field and
checks that nothing escapes `handle`, every message is accounted for, and the books keep
their invariants (prices on [0, 1], finite sizes, bounded depth, sane timestamps).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from connectors.clob.client import ShardClient
from connectors.clob.protocol import (MAX_LEVELS_PER_SIDE, TS_MAX_AHEAD_MS, TS_MAX_BEHIND_MS, BookSide, BookTracker,
                                      exchange_ts)
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import PriceUpdate
from tests.waiting import wait_for

NOW = 1_700_000_000_000  # a realistic receive time (epoch ms)
YEAR_2100 = 4_102_444_800_000


def tracker(*tokens: str, complements: Iterable[str] = (), cap: int = MAX_LEVELS_PER_SIDE,
            metrics: MetricGroup | None = None) -> BookTracker:
    t = BookTracker(1, metrics, cap=cap)
    t.subscribed, t.complements = set(tokens), set(complements)
    return t


def book(token: Any, bids: list[tuple[Any, Any]], asks: list[tuple[Any, Any]], ts: Any = NOW) -> dict[str, Any]:
    return {"event_type": "book", "asset_id": token, "timestamp": ts,
            "bids": [{"price": p, "size": s} for p, s in bids], "asks": [{"price": p, "size": s} for p, s in asks]}


def change(*levels: tuple[Any, Any, Any, Any], ts: Any = NOW) -> dict[str, Any]:
    return {"event_type": "price_change", "timestamp": ts,
            "price_changes": [{"asset_id": a, "price": p, "size": s, "side": d} for a, p, s, d in levels]}


def send(t: BookTracker, *msgs: Any, recv: int = NOW) -> list[PriceUpdate]:
    return t.handle(json.dumps(list(msgs) if len(msgs) > 1 else msgs[0]), recv)


def top(u: PriceUpdate) -> tuple[Any, ...]:
    return (u.token_id, u.best_bid, u.best_ask, u.bid_size, u.ask_size)


def consistent(side: BookSide) -> bool:
    return side.prices == sorted(side) and len(side) <= side.cap


# ------------------------------------------------------------------ sizes and sides
def test_bad_sizes_and_sides_are_rejected_and_the_rest_of_the_frame_applies() -> None:
    m = MetricGroup("ws")
    t = tracker("a", metrics=m)
    send(t, book("a", [("0.40", "10")], [("0.50", "5")]))
    out = send(t, change(("a", "0.45", "inf", "BUY"), ("a", "0.46", "NaN", "BUY"), ("a", "0.44", "-2", "BUY"),
                         ("a", "0.43", "1e400", "BUY"), ("a", "0.42", "3", "XYZ"),
                         ("a", "0.41", "3", "sell"), ("a", "0.41", "3", None), ("a", "0.42", "2", "BUY"),
                         ("a", "0.48", 7, "SELL")),
               change(("a", "0.49", "-0.0001", "SELL"), ("a", "0.39", "1", "BUY")))
    assert [top(u) for u in out] == [("a", 0.42, 0.48, 2.0, 7.0)]
    assert t.bids["a"] == {0.40: 10.0, 0.42: 2.0, 0.39: 1.0} and t.asks["a"] == {0.48: 7.0, 0.50: 5.0}
    assert (t.errors["rejected_size"], t.errors["rejected_side"]) == (5, 3)
    assert (m.get("rejected_size"), m.get("rejected_side")) == (5, 3)  # and in the ws group
    # "XYZ" never lands on the ask side (it used to): the asks are exactly the SELL levels
    assert 0.42 not in t.asks["a"] and 0.41 not in t.asks["a"] and 0.41 not in t.bids["a"]
    # a size of zero (or missing) still removes; "-0" is zero
    (u,) = send(t, change(("a", "0.42", "-0", "BUY")))
    assert top(u) == ("a", 0.40, 0.48, 10.0, 7.0) and t.errors["rejected_size"] == 5


def test_a_book_with_one_bad_size_is_rejected_whole_and_the_old_book_stays() -> None:
    t = tracker("a", "b")
    send(t, book("a", [("0.40", "10")], [("0.50", "5")]))
    out = send(t, book("a", [("0.41", "1"), ("0.42", "inf")], [("0.45", "1")]),
               book("b", [("0.1", "1")], [("0.2", "2")]))
    assert [top(u) for u in out] == [("b", 0.1, 0.2, 1.0, 2.0)]  # the other message of the frame applies
    assert t.bids["a"] == {0.40: 10.0} and t.asks["a"] == {0.50: 5.0} and t.errors == Counter(rejected_size=1)


# ------------------------------------------------------------------ timestamps
@pytest.mark.parametrize("raw", [
    2**64, str(2**64), str(2**64 + 1), "1" + "0" * 5000, YEAR_2100, str(YEAR_2100), NOW + TS_MAX_AHEAD_MS + 1,
    NOW - TS_MAX_BEHIND_MS - 1, 0, "0", -5, "abc", "inf", "-inf", "nan", 1e300, True, [NOW], {"t": NOW}, 1.5e19,
])
def test_an_absurd_timestamp_is_replaced_by_the_receive_time_and_counted(raw: Any) -> None:
    m = MetricGroup("ws")
    t = tracker("a", metrics=m)
    (u,) = send(t, book("a", [("0.4", "1")], [], ts=raw), recv=NOW)
    assert u.exchange_ts_ms == NOW and u.recv_ts_ms == NOW and t.top["a"] == (0.4, None, 1.0, None)
    (u,) = send(t, change(("a", "0.41", "1", "BUY"), ts=raw), recv=NOW)
    assert u.exchange_ts_ms == NOW and u.best_bid == 0.41
    (u,) = send(t, {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.3", "best_ask": "0.6",
                    "timestamp": raw}, recv=NOW)
    assert u.exchange_ts_ms == NOW and u.best_bid == 0.3
    assert t.errors == Counter(rejected_timestamp=3) and m.get("rejected_timestamp") == 3


@pytest.mark.parametrize("raw,want", [
    (NOW, NOW), (str(NOW), NOW), (f"{NOW}.7", NOW), (float(NOW), NOW), ("1.7e12", 1_700_000_000_000),
    (NOW + TS_MAX_AHEAD_MS, NOW + TS_MAX_AHEAD_MS), (NOW - TS_MAX_BEHIND_MS, NOW - TS_MAX_BEHIND_MS),
    (None, 0), ("", 0),  # missing: 0 = unknown (pricing falls back to the receive time), not an error
])
def test_timestamps_inside_the_window_are_kept(raw: Any, want: int) -> None:
    assert exchange_ts(raw, NOW) == (want, True)
    t = tracker("a")
    (u,) = send(t, book("a", [("0.4", "1")], [], ts=raw))
    assert u.exchange_ts_ms == want and not t.errors


def test_the_window_constants_are_an_hour_ahead_and_a_day_behind() -> None:
    assert (TS_MAX_AHEAD_MS, TS_MAX_BEHIND_MS) == (3_600_000, 86_400_000)
    assert exchange_ts(YEAR_2100, NOW) == (NOW, False) and exchange_ts(str(2**64), NOW) == (NOW, False)


# ------------------------------------------------------------------ depth
def test_a_book_of_20000_levels_keeps_the_best_levels_per_side_exactly() -> None:
    n = 10_000
    bids = [(f"{i / 20000:.5f}", str(i % 7 + 1)) for i in range(1, n + 1)]  # 0.00005 .. 0.5
    asks = [(f"{1 - i / 20000:.5f}", str(i % 5 + 1)) for i in range(n)]  # 1.0 .. 0.50005: 20,000 distinct
    m = MetricGroup("ws")
    t = tracker("a", metrics=m)
    (u,) = send(t, book("a", bids, asks))
    cap = MAX_LEVELS_PER_SIDE
    want_bids = {float(p): float(s) for p, s in bids[-cap:]}
    want_asks = {float(p): float(s) for p, s in asks[-cap:]}
    assert t.bids["a"] == want_bids and t.asks["a"] == want_asks
    assert top(u) == ("a", 0.5, 0.50005, float(n % 7 + 1), float((n - 1) % 5 + 1))
    assert min(t.bids["a"]) == float(bids[-cap][0]) and max(t.asks["a"]) == float(asks[-cap][0])
    assert t.errors == Counter(rejected_depth=2 * (n - cap)) and m.get("rejected_depth") == 2 * (n - cap)
    assert consistent(t.bids["a"]) and consistent(t.asks["a"])


def test_one_price_change_of_20000_distinct_levels_gives_the_exact_book_and_top() -> None:
    n = 10_000
    t = tracker("a")
    send(t, book("a", [], []))
    step = 0.5 / (n + 1)
    bid_p = [round((i + 1) * step, 10) for i in range(n)]
    ask_p = [round(1 - (i + 1) * step, 10) for i in range(n)]
    levels = [("a", p, i % 9 + 1, "BUY") for i, p in enumerate(bid_p)]
    levels += [("a", p, i % 4 + 1, "SELL") for i, p in enumerate(ask_p)]
    (u,) = send(t, change(*levels))
    cap = MAX_LEVELS_PER_SIDE
    assert t.bids["a"] == {p: float(i % 9 + 1) for i, p in enumerate(bid_p) if i >= n - cap}
    assert t.asks["a"] == {p: float(i % 4 + 1) for i, p in enumerate(ask_p) if i >= n - cap}
    assert top(u) == ("a", bid_p[-1], ask_p[-1], float((n - 1) % 9 + 1), float((n - 1) % 4 + 1))
    assert t.errors == Counter(rejected_depth=2 * (n - cap))
    # now remove every kept bid from the top down: the top walks down level by level, then empties
    (u,) = send(t, change(*[("a", p, "0", "BUY") for p in reversed(bid_p[-cap:])]))
    assert top(u) == ("a", None, ask_p[-1], None, float((n - 1) % 4 + 1)) and t.bids["a"] == {}
    assert consistent(t.bids["a"]) and consistent(t.asks["a"])


def test_the_depth_cap_drops_the_farthest_level() -> None:
    t = tracker("a", cap=3)
    send(t, book("a", [("0.1", "1"), ("0.2", "1"), ("0.3", "1")], [("0.7", "1"), ("0.8", "1"), ("0.9", "1")]))
    assert not t.errors
    send(t, change(("a", "0.05", "1", "BUY"), ("a", "0.95", "1", "SELL")))  # farther than all: dropped
    assert t.bids["a"] == {0.1: 1, 0.2: 1, 0.3: 1} and t.asks["a"] == {0.7: 1, 0.8: 1, 0.9: 1}
    (u,) = send(t, change(("a", "0.35", "2", "BUY"), ("a", "0.75", "2", "SELL")))  # nearer: the farthest goes
    assert t.bids["a"] == {0.2: 1, 0.3: 1, 0.35: 2} and t.asks["a"] == {0.7: 1, 0.75: 2, 0.8: 1}
    assert top(u) == ("a", 0.35, 0.7, 2.0, 1.0) and t.errors == Counter(rejected_depth=4)
    send(t, change(("a", "0.3", "5", "BUY")))  # a size change at a kept level is no new level
    assert t.bids["a"] == {0.2: 1, 0.3: 5, 0.35: 2} and t.errors["rejected_depth"] == 4


def test_best_bid_ask_cuts_better_levels_on_both_sides() -> None:
    t = tracker("a")
    send(t, book("a", [("0.1", "1"), ("0.2", "2"), ("0.3", "3")], [("0.5", "5"), ("0.6", "6"), ("0.7", "7")]))
    (u,) = send(t, {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.2", "best_ask": "0.65"})
    assert top(u) == ("a", 0.2, 0.65, 2.0, 0.0)
    assert t.bids["a"] == {0.1: 1, 0.2: 2} and t.asks["a"] == {0.65: 0, 0.7: 7}
    assert consistent(t.bids["a"]) and consistent(t.asks["a"])


# ------------------------------------------------------------------ what counts as data
def test_touched_is_true_only_for_frames_about_subscribed_tokens() -> None:
    t = tracker("a", complements=("na",))
    send(t, book("a", [("0.4", "1")], []))
    assert t.touched
    for frame in [{"event_type": "new_market", "assets_ids": ["a"]}, {"event_type": "market_resolved", "asset_id": "a"},
                  change(("zz", "0.5", "1", "BUY")), change(("na", "0.5", "1", "BUY")), book("zz", [], []),
                  {"event_type": "last_trade_price", "asset_id": "zz"}, {"event_type": "mystery"}, [1, 2]]:
        send(t, frame)
        assert not t.touched, frame
    t.handle("PONG", NOW)
    assert not t.touched
    t.handle(b"\x00garbage", NOW)
    assert not t.touched
    send(t, change(("zz", "0.5", "1", "BUY"), ("a", "0.3", "1", "BUY")))
    assert t.touched
    send(t, {"event_type": "last_trade_price", "asset_id": "a"})
    assert t.touched


# ------------------------------------------------------------------ property: labelled values, exact model
MISSING = object()
OK = "ok"


def rendered(values: st.SearchStrategy[Any], label: str) -> st.SearchStrategy[tuple[Any, str]]:
    return values.map(lambda v: (v, label))


valid_price = st.integers(0, 100).flatmap(lambda i: st.sampled_from([f"{i / 100}", i / 100, f"{i / 100:.3f}"]))
prices = st.one_of(
    rendered(valid_price, OK), rendered(valid_price, OK),
    rendered(st.sampled_from(["1.5", "-0.01", 2, -1, "nan", "inf", "-inf", 1e300, 10**30, "1e400"]),
             "price_out_of_range"),
    rendered(st.sampled_from([None, "x", "", [], {}, True, False, [0.5], {"p": 1}, "0x1p-1"]), "malformed_message"),
    rendered(st.just(MISSING), "malformed_message"))
valid_size = st.integers(0, 50).flatmap(lambda i: st.sampled_from([str(i), i, float(i), f"{i}.0"]))
sizes = st.one_of(
    rendered(valid_size, OK), rendered(valid_size, OK), rendered(st.sampled_from([None, "", MISSING]), OK),
    rendered(st.sampled_from(["inf", "-inf", "nan", "-1", -0.5, "x", True, [], {}, "1e400", -(10**30)]),
             "rejected_size"))
sides = st.one_of(rendered(st.sampled_from(["BUY", "SELL"]), OK),
                  rendered(st.sampled_from(["buy", "Sell", "XYZ", "", None, 1, [], MISSING, "BUY "]), "rejected_side"))
assets = st.sampled_from([("a", OK), ("b", OK), ("na", "complement"), ("zz", "unknown_token"),
                          (5, "malformed_message"), (None, "malformed_message"), (MISSING, "malformed_message")])
stamps = st.one_of(
    rendered(st.integers(-1000, 1000).map(lambda d: NOW + d), OK), rendered(st.sampled_from([MISSING, None]), OK),
    rendered(st.integers(-1000, 1000).map(lambda d: str(NOW + d)), OK),
    rendered(st.sampled_from([str(2**64), 2**63, YEAR_2100, 0, "abc", "inf", NOW + TS_MAX_AHEAD_MS + 1,
                              NOW - TS_MAX_BEHIND_MS - 1, True, [1]]), "rejected_timestamp"))


def obj(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


@st.composite
def messages(draw: st.DrawFn) -> tuple[Any, list[Any]]:
    """(the JSON message, its spec for the model)."""
    kind = draw(st.sampled_from(["change", "change", "book", "other"]))
    ts = draw(stamps)
    if kind == "change":
        levels = draw(st.lists(st.tuples(assets, prices, sizes, sides), min_size=1, max_size=6))
        msg = {"event_type": "price_change", "price_changes": [
            obj(asset_id=a[0], price=p[0], size=s[0], side=d[0]) for a, p, s, d in levels]}
        if ts[0] is not MISSING:
            msg["timestamp"] = ts[0]
        return msg, ["change", ts, levels]
    if kind == "book":
        asset = draw(assets)
        bids = draw(st.lists(st.tuples(prices, sizes), max_size=6))
        asks = draw(st.lists(st.tuples(prices, sizes), max_size=6))
        msg = obj(event_type="book", asset_id=asset[0], timestamp=ts[0],
                  bids=[obj(price=p[0], size=s[0]) for p, s in bids], asks=[obj(price=p[0], size=s[0]) for p, s in asks])
        return msg, ["book", ts, asset, bids, asks]
    other = draw(st.sampled_from([({"event_type": "mystery"}, "unknown_event_type"), (7, "malformed_message"),
                                  ("junk", "malformed_message"), ({"event_type": "price_change"}, "malformed_message"),
                                  ({"event_type": "price_change", "price_changes": 3}, "malformed_message"),
                                  ({"event_type": "book", "asset_id": "a", "bids": 3, "asks": []}, "malformed_message"),
                                  ({"event_type": "new_market"}, None)]))
    return other[0], ["other", other[1]]


class Model:
    """Books kept by the test: what the tracker must hold after each frame."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.sides: dict[str, dict[str, dict[float, float]]] = {}
        self.errors: Counter[str] = Counter()

    def set_level(self, side: dict[float, float], is_bid: bool, price: float, size: float) -> None:
        if size == 0:
            side.pop(price, None)
            return
        if price not in side and len(side) >= self.cap:
            worst = min(side) if is_bid else max(side)
            if (price < worst) if is_bid else (price > worst):
                self.errors["rejected_depth"] += 1
                return
            del side[worst]
            self.errors["rejected_depth"] += 1
        side[price] = size

    def top(self, token: str) -> tuple[Any, ...]:
        bids, asks = self.sides[token]["BUY"], self.sides[token]["SELL"]
        bb, ba = (max(bids) if bids else None), (min(asks) if asks else None)
        return (bb, ba, bids[bb] if bb is not None else None, asks[ba] if ba is not None else None)

    def apply(self, spec: list[Any]) -> None:
        if spec[0] == "other":
            if spec[1]:
                self.errors[spec[1]] += 1
            return
        ts_label = spec[1][1]
        if spec[0] == "book":
            _, _, (token, a_label), bids, asks = spec
            if a_label != OK:
                if a_label != "complement":
                    self.errors[a_label] += 1
                return
            for (p, pl), (s, sl) in bids + asks:  # the first bad level rejects the snapshot
                if pl != OK or sl != OK:
                    self.errors[pl if pl != OK else sl] += 1
                    return
            if ts_label != OK:
                self.errors[ts_label] += 1
            book = self.sides[token] = {"BUY": {}, "SELL": {}}
            for name, levels in (("BUY", bids), ("SELL", asks)):
                raw: dict[float, float] = {}
                for (p, _), (s, _) in levels:
                    size = 0.0 if s in (None, "", MISSING) else float(s)
                    if size > 0:
                        raw[float(p)] = size
                    else:
                        raw.pop(float(p), None)
                keep = sorted(raw, reverse=name == "BUY")[: self.cap]
                self.errors["rejected_depth"] += len(raw) - len(keep)
                book[name].update({p: raw[p] for p in keep})
            return
        _, _, levels = spec
        if ts_label != OK:
            self.errors[ts_label] += 1
        for (token, al), (p, pl), (s, sl), (d, dl) in levels:  # the tracker's order of checks
            if al != OK:
                if al != "complement":
                    self.errors[al] += 1
                continue
            bad = next((lab for lab in (pl, sl, dl) if lab != OK), None)
            if bad:
                self.errors[bad] += 1
                continue
            if token not in self.sides:
                self.errors["rejected_change_before_book"] += 1
                continue
            size = 0.0 if s in (None, "", MISSING) else float(s)
            self.set_level(self.sides[token][d], d == "BUY", float(p), size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.lists(messages(), min_size=1, max_size=5), min_size=1, max_size=6),
       cap=st.sampled_from([2, 4, MAX_LEVELS_PER_SIDE]), array=st.booleans())
def test_frames_with_labelled_bad_values_match_the_model_exactly(frames: list[list[tuple[Any, list[Any]]]], cap: int,
                                                                 array: bool) -> None:
    metrics = MetricGroup("ws")
    t = tracker("a", "b", complements=("na",), cap=cap, metrics=metrics)
    model = Model(cap)
    send(t, book("a", [("0.3", "1"), ("0.2", "2")], [("0.6", "3")]))  # "b" has no book yet
    model.sides["a"] = {"BUY": {0.3: 1.0, 0.2: 2.0} if cap >= 2 else {}, "SELL": {0.6: 3.0}}
    for frame in frames:
        before = dict(t.top)
        payload = [m for m, _ in frame] if array or len(frame) > 1 else frame[0][0]
        out = t.handle(json.dumps(payload), NOW)
        for _, spec in frame:
            model.apply(spec)
        assert {tok: (t.bids[tok], t.asks[tok]) for tok in model.sides} == {
            tok: (s["BUY"], s["SELL"]) for tok, s in model.sides.items()}
        assert t.booked == set(model.sides)
        for tok in model.sides:
            assert t.top[tok] == model.top(tok)
        # an update per token whose top moved, saying the new top, with a believable timestamp
        assert all(u[1:5] == model.top(u.token_id) for u in out)
        assert {tok for tok in model.sides if model.top(tok) != before.get(tok)} <= {u.token_id for u in out}
        assert all(u.exchange_ts_ms == 0 or abs(u.exchange_ts_ms - NOW) <= 1000 for u in out)
        assert +t.errors == +model.errors
        assert {k: metrics.get(k) for k in t.errors} == dict(t.errors)


# ------------------------------------------------------------------ property: anything in any field
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70).map(lambda i: i * 10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["BUY", "SELL", "a", "b", "na", "0.5", "1e400", "nan", "-1", str(2**64), "0", "book",
                       "price_change", "best_bid_ask"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
TEMPLATES: list[dict[str, Any]] = [
    book("a", [("0.4", "1"), ("0.3", "2")], [("0.6", "1")]),
    change(("a", "0.45", "3", "BUY"), ("b", "0.5", "1", "SELL"), ("na", "0.5", "1", "SELL")),
    {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.41", "best_ask": "0.59", "timestamp": NOW},
    {"event_type": "last_trade_price", "asset_id": "a", "price": "0.5", "timestamp": NOW},
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@st.composite
def fuzzed(draw: st.DrawFn) -> Any:
    msg = draw(st.sampled_from(TEMPLATES))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(msg))))
        msg = replaced(msg, where, draw(json_values))
    return msg


def check_invariants(t: BookTracker, out: list[PriceUpdate], recv: int) -> None:
    for tok in set(t.bids) | set(t.asks):
        for side in (t.bids[tok], t.asks[tok]):
            assert consistent(side)
            assert all(0.0 <= p <= 1.0 and 0.0 <= s < math.inf for p, s in side.items())
        bids, asks = t.bids[tok], t.asks[tok]
        bb, ba = (max(bids) if bids else None), (min(asks) if asks else None)
        if tok in t.top:
            assert t.top[tok] == (bb, ba, bids.get(bb) if bb is not None else None,
                                  asks.get(ba) if ba is not None else None)
    for u in out:
        assert u.token_id in t.subscribed
        assert u.exchange_ts_ms == 0 or recv - TS_MAX_BEHIND_MS <= u.exchange_ts_ms <= recv + TS_MAX_AHEAD_MS


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.one_of(st.lists(fuzzed(), min_size=1, max_size=4), fuzzed(), json_values,
                                 st.binary(max_size=40)), min_size=1, max_size=8))
def test_anything_in_any_field_never_escapes_and_is_always_accounted_for(frames: list[Any]) -> None:
    t = tracker("a", "b", complements=("na",), cap=3)
    send(t, book("a", [("0.4", "1")], [("0.6", "1")]), book("b", [("0.1", "1")], []))
    for frame in frames:
        if isinstance(frame, bytes):
            raw: str | bytes = frame
        else:
            try:
                raw = json.dumps(frame)
            except ValueError:
                continue
        try:
            parsed = orjson.loads(raw)
            n: int | None = len(parsed) if isinstance(parsed, list) else 1
        except orjson.JSONDecodeError:
            n = None
        seen, unreadable = sum(t.errors.values()) + sum(t.events.values()), t.errors["malformed_frame"]
        out = t.handle(raw, NOW)  # must not raise
        if n is None:
            assert t.errors["malformed_frame"] == unreadable + 1
        else:  # every message left a trace in a counter (an error kind or an event)
            assert sum(t.errors.values()) + sum(t.events.values()) >= seen + n
        check_invariants(t, out, NOW)


def test_surrogates_huge_numbers_and_deep_nesting_are_counted_not_raised() -> None:
    t = tracker("a")
    frames: list[str | bytes] = ['{"event_type": "book", "asset_id": "\\ud800", "bids": [], "asks": []}',
                                 '{"event_type":"book","asset_id":"a","timestamp":1e400,"bids":[],"asks":[]}',
                                 '{"event_type":"book","asset_id":"a","timestamp":' + "9" * 400 + ',"bids":[],"asks":[]}',
                                 "[" * 5000 + "]" * 5000, "\ud800", b"\xff\xfe", ""]
    for f in frames:
        assert t.handle(f, NOW) == []
    assert t.errors == Counter(malformed_frame=len(frames)) and "a" not in t.top


# ------------------------------------------------------------------ differential: the tracker vs the reference
PRICES = ["0.1", "0.2", "0.3", "0.35", "0.4", "0.45", "0.5", "0.55", "0.6", "0.7", "0.8", "0.9", "0.45000"]
ODD_PRICES = ["0", "-0", "1", "1.0", "0.0", "-0.0", "", "x", "nan", "inf", "-0.1", "1.5", "1e400", 0.25, 1, 0,
              True, None, ["0.5"]]
SIZES = ["1", "2.5", "10", "0.001", "7"]
ODD_SIZES = ["0", "-0", "", "-1", "inf", "nan", "x", "1e400", 3, 0, 2.5, True, None, {"s": 1}]
SIDES = ["BUY", "SELL"]
ODD_SIDES = ["XYZ", "buy", "", None, 1]
TOKENS = ["a", "b"]
ODD_TOKENS = ["na", "zz", 5, None, ["a"]]
TIMESTAMPS = [str(NOW), str(NOW - 100), str(NOW + 100), NOW, str(NOW - 5)]
ODD_TIMESTAMPS = ["", None, "abc", str(2**64), YEAR_2100, f"{NOW}.7", "1.7e12", 1.5e19, True, "١٢٣"]


def usual_or_odd(usual: list[Any], odd: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(usual), st.sampled_from(usual), st.sampled_from(usual), st.sampled_from(odd))


def without_some(d: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


@st.composite
def diff_level(draw: st.DrawFn) -> Any:
    lv = {"price": draw(usual_or_odd(PRICES, ODD_PRICES)), "size": draw(usual_or_odd(SIZES, ODD_SIZES))}
    shape = draw(st.integers(0, 19))
    return lv if shape > 2 else without_some(lv, [["price"], ["size"], []][shape]) if shape else ["0.5", "1"]


@st.composite
def diff_entry(draw: st.DrawFn) -> Any:
    e = {"asset_id": draw(usual_or_odd(TOKENS, ODD_TOKENS)), "price": draw(usual_or_odd(PRICES, ODD_PRICES)),
         "size": draw(usual_or_odd(SIZES + ["0"], ODD_SIZES)), "side": draw(usual_or_odd(SIDES, ODD_SIDES)),
         "hash": "0x1", "best_bid": draw(usual_or_odd(PRICES, ODD_PRICES)),
         "best_ask": draw(usual_or_odd(PRICES, ODD_PRICES))}
    if draw(st.integers(0, 9)) == 0:
        e = without_some(e, draw(st.lists(st.sampled_from(list(e)), max_size=3)))
    return e if draw(st.integers(0, 29)) else draw(st.sampled_from([None, "x", 3, ["a"]]))


@st.composite
def diff_message(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 19))
    ts = draw(usual_or_odd(TIMESTAMPS, ODD_TIMESTAMPS))
    if kind < 10:
        msg: Any = {"event_type": "price_change", "market": "0x1", "timestamp": ts,
                    "price_changes": draw(st.lists(diff_entry(), max_size=4))}
    elif kind < 14:
        msg = {"event_type": "book", "asset_id": draw(usual_or_odd(TOKENS, ODD_TOKENS)), "timestamp": ts,
               "bids": draw(st.lists(diff_level(), max_size=6)), "asks": draw(st.lists(diff_level(), max_size=6)),
               "tick_size": draw(st.sampled_from(["0.01", "0.001", "", None, "0.5", "x"]))}
    elif kind < 16:
        msg = {"event_type": "best_bid_ask", "asset_id": draw(usual_or_odd(TOKENS, ODD_TOKENS)), "timestamp": ts,
               "best_bid": draw(usual_or_odd(PRICES, ODD_PRICES)), "best_ask": draw(usual_or_odd(PRICES, ODD_PRICES))}
    elif kind < 18:
        msg = {"event_type": "tick_size_change", "asset_id": draw(usual_or_odd(TOKENS, ODD_TOKENS)),
               "timestamp": ts, "new_tick_size": draw(st.sampled_from(["0.001", "0.01", "0", "x", None, 0.1]))}
    else:
        msg = draw(st.sampled_from([{"event_type": "last_trade_price", "asset_id": "a"}, {"event_type": "new_market"},
                                    {"event_type": "mystery"}, {"no": "type"}, None, 7]))
    if isinstance(msg, dict) and draw(st.integers(0, 14)) == 0:
        msg = without_some(msg, [draw(st.sampled_from(list(msg) or ["x"]))])
    return msg


def as_json(value: Any) -> str:
    try:
        return json.dumps(value)
    except ValueError:
        return "not json"


def diff_frames() -> st.SearchStrategy[str]:
    """Frames as sent: one message, an array of them, or plain text."""
    one = st.one_of(diff_message(), diff_message(), diff_message(), fuzzed())
    return st.one_of(one.map(as_json), one.map(as_json), st.lists(one, max_size=4).map(as_json),
                     st.sampled_from(["PONG", "INVALID OPERATION", "not json", "[]", "{}", "PING"]))


class Tally:
    """A metric group that only counts (both trackers get one)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def inc(self, key: str, n: float = 1) -> None:
        self.counts[key] += n


def tracker_state(t: Any) -> str:
    """Everything a tracker holds that anyone reads, as text: repr tells 0.0 from -0.0."""
    sides = {tok: (sorted(s.items()), s.prices, s.cap) for tok, s in [*t.bids.items(), *t.asks.items()]}
    maps = (t.errors, t.events, t.last_error, t.top, t.emitted, t.ticks, t.venue_ts, sides)
    return repr(([sorted(m.items()) for m in maps], sorted(t.booked), sorted(t.need_book), t.touched, t.last_ts,
                 sorted(t.bids), sorted(t.asks)))


def assert_same_run(frames: list[str | bytes], cap: int, depth: int, recv: list[int], every: int = 1) -> None:
    """Both trackers fed `frames`: the same updates after every frame, the same state and counts
    after every `every`-th frame and the last."""
    from tests import clob_reference as reference
    m_new, m_old = Tally(), Tally()
    new, old = BookTracker(3, m_new, cap=cap, depth=depth), reference.BookTracker(3, m_old, cap=cap, depth=depth)
    for t in (new, old):
        t.subscribed, t.complements = {"a", "b"}, {"na"}
    for i, frame in enumerate(frames):
        got, want = new.handle(frame, recv[i % len(recv)]), old.handle(frame, recv[i % len(recv)])
        assert repr(got) == repr(want) and got == want and all(type(u) is PriceUpdate for u in got)
        assert new.touched == old.touched
        if i % every == 0 or i == len(frames) - 1:
            assert tracker_state(new) == tracker_state(old) and m_new.counts == m_old.counts
            for side in [*new.bids.values(), *new.asks.values()]:  # the kept depth tuple is the rebuilt one
                assert side.flat is None or repr(side.flat) == repr(BookSide.levels(copy_side(side)))


def copy_side(side: BookSide) -> BookSide:
    fresh = BookSide(side.is_bid, side.cap, side.depth)
    fresh.update(side)
    fresh.prices = list(side.prices)
    return fresh


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(diff_frames(), min_size=1, max_size=20), cap=st.sampled_from([1, 2, 3, 5, MAX_LEVELS_PER_SIDE]),
       depth=st.sampled_from([0, 1, 2, 3, 10]), as_bytes=st.booleans(),
       recv=st.lists(st.sampled_from([NOW, NOW + 1, NOW - 3_600_000, NOW + 90_000_000]), min_size=1, max_size=3))
def test_the_tracker_does_exactly_what_the_reference_does_on_any_frames(frames: list[str], cap: int, depth: int,
                                                                         as_bytes: bool, recv: list[int]) -> None:
    assert_same_run([f.encode() if as_bytes else f for f in frames], cap, depth, recv)


@pytest.mark.parametrize("depth,cap", [(10, MAX_LEVELS_PER_SIDE), (3, 12), (1, MAX_LEVELS_PER_SIDE), (10, 8)])
def test_the_tracker_does_exactly_what_the_reference_does_on_a_realistic_stream(depth: int, cap: int) -> None:
    """Books of 10-30 levels, then price_change frames mostly near the top, each with the venue's
    true top after it and an entry for the NO token (a complement)."""
    import random
    rng = random.Random(depth * 1000 + cap)
    frames: list[str | bytes] = []
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    for tok in ("a", "b"):
        mid = rng.randrange(35, 66)
        books[tok] = ({(mid - 1 - k) / 100: float(rng.randrange(1, 99)) for k in range(rng.randrange(10, 31))},
                      {(mid + 1 + k) / 100: float(rng.randrange(1, 99)) for k in range(rng.randrange(10, 31))})
        frames.append(json.dumps(book(tok, [(str(p), str(s)) for p, s in books[tok][0].items()],
                                      [(str(p), str(s)) for p, s in books[tok][1].items()], ts=str(NOW))))
    for i in range(1500):
        tok = rng.choice("ab")
        bids, asks = books[tok]
        is_bid = rng.random() < 0.5
        side, other = (bids, asks) if is_bid else (asks, bids)
        ranked = sorted(side, reverse=is_bid)
        p = ranked[min(int(rng.expovariate(0.25)), len(ranked) - 1)] if rng.random() < 0.7 else \
            round(ranked[0] + rng.randrange(-5, 6) / 100 * (-1 if is_bid else 1), 2)
        if (p < min(other)) if is_bid else (p > max(other)):
            size = 0.0 if rng.random() < 0.25 and len(side) > 2 else float(rng.randrange(1, 99))
            if size:
                side[p] = size
            else:
                side.pop(p, None)
            entry = {"asset_id": tok, "price": str(p), "size": str(size).removesuffix(".0"),
                     "side": "BUY" if is_bid else "SELL", "hash": "0x1",
                     "best_bid": str(max(bids) if bids else 0), "best_ask": str(min(asks) if asks else 1)}
            no = {**entry, "asset_id": "na", "side": "SELL" if is_bid else "BUY"}
            frames.append(json.dumps({"event_type": "price_change", "market": "0x1", "timestamp": str(NOW + i),
                                      "price_changes": [entry, no]}))
    assert_same_run(frames, cap, depth, [NOW], every=50)


EDGE_VALUES = [*PRICES[:3], *ODD_PRICES, *ODD_SIZES, *ODD_SIDES, *ODD_TOKENS, *ODD_TIMESTAMPS, "1e-400", "-1e-400",
               " 0.5 ", "0.5\n", "0_5", "+0.5", "Infinity", "-nan", "0x1", "0.99999999999999999", 2**64, 2**70,
               -0.0, 1e-320, "SELL", "BUY", "a"]


def edge_frames() -> list[str]:
    """Each field of an otherwise usual message replaced, in turn, by each odd value, the books
    restored in between; and books whose levels are all usual but for one value (price 0, size 0)."""
    good_book = book("a", [("0.4", "1"), ("0.3", "2")], [("0.6", "3"), ("0.7", "4")], ts=str(NOW))
    entry = {"asset_id": "a", "price": "0.45", "size": "5", "side": "BUY", "hash": "0x1", "best_bid": "0.45",
             "best_ask": "0.6"}
    frames = [good_book, book("b", [("0.1", "1")], [], ts=str(NOW))]
    for value in EDGE_VALUES:
        for field in entry:
            for side in SIDES:
                e = {**entry, "side": side, field: value}
                pair = [e, {**e, "asset_id": "na"}]
                frames += [{"event_type": "price_change", "timestamp": str(NOW), "price_changes": pair}, good_book]
        for field in ("price", "size"):
            for i in range(3):
                levels = [{"price": p, "size": "1"} for p in ("0.5", "0.2", "0.1")]
                levels[i][field] = value
                frames += [{**good_book, "bids": levels}, {**good_book, "asks": levels[::-1]}]
        for field in ("best_bid", "best_ask", "timestamp", "asset_id"):
            frames.append({"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.4", "best_ask": "0.6",
                           "timestamp": str(NOW), field: value})
        frames += [{**good_book, "timestamp": value}, {**good_book, "tick_size": value},
                   {"event_type": "tick_size_change", "asset_id": "a", "new_tick_size": value,
                    "timestamp": str(NOW)}, good_book]
    frames += [{**good_book, "bids": [{"price": "0", "size": "1"}, {"price": "-0", "size": "2"}]},
               {**good_book, "bids": [{"price": "0.4", "size": "1"}, {"price": "0.4", "size": "0"}]},
               {**good_book, "bids": [{"price": "0.4", "size": "0"}, {"price": "0.4", "size": "2"}]},
               {**good_book, "bids": [{"price": "0.4", "size": "1"}, {"price": "0.40", "size": "2"}]},
               {**good_book, "timestamp": str(NOW + 50)}, {**good_book, "timestamp": str(NOW - 100)},
               {**good_book, "timestamp": "x"}]  # stamped with the newest accepted, not the last one
    return [json.dumps(f) for f in frames] + ["PONG", "INVALID OPERATION", "INVALID OPERATIONS", "PING", "pong"]


@pytest.mark.parametrize("depth,cap", [(10, MAX_LEVELS_PER_SIDE), (2, 3), (0, MAX_LEVELS_PER_SIDE), (1, 1)])
def test_the_tracker_does_exactly_what_the_reference_does_with_each_odd_value_anywhere(depth: int, cap: int) -> None:
    assert_same_run(edge_frames(), cap, depth, [NOW], every=7)


# ------------------------------------------------------------------ the client over loopback
class Registry:
    def __init__(self, tokens: set[str]) -> None:
        self.tokens = tokens

    def version(self) -> int:
        return 1

    def shard_tokens(self, shard: int) -> set[str]:
        return set(self.tokens)

    def complements(self, tokens: Iterable[str]) -> set[str]:
        return set()


class Server:
    """A loopback market channel whose answers the test scripts: `on_text(conn, text)` returns
    the frames to send back; `background` frames are sent every few ms while set."""

    def __init__(self, on_text: Callable[[str], list[str]]) -> None:
        self.on_text = on_text
        self.received: list[str] = []
        self.background: str | None = None
        self.connections = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1

        async def pump() -> None:
            while True:
                if self.background is not None:
                    await ws.send(self.background)
                await asyncio.sleep(0.005)

        task = asyncio.create_task(pump())
        try:
            async for text in ws:
                self.received.append(str(text))
                if text == "PING":
                    await ws.send("PONG")
                    continue
                for frame in self.on_text(str(text)):
                    await ws.send(frame)
        except Exception:
            pass
        finally:
            task.cancel()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)




def client(server: Server, tokens: set[str], metrics: MetricGroup, **kw: Any) -> ShardClient:
    params: dict[str, Any] = dict(ping_interval=0.2, stall_timeout=0.5, backoff_base=0.05, backoff_max=0.2,
                                  refresh_interval=0.05, stagger=0.0, queue_max=1000)
    params.update(kw)
    return ShardClient(0, f"ws://127.0.0.1:{server.port}", Registry(tokens), metrics=metrics, **params)


def test_broadcasts_and_other_assets_do_not_keep_a_silent_shard_alive() -> None:
    def on_text(text: str) -> list[str]:
        msg = orjson.loads(text)
        if msg.get("type") == "market":
            return [json.dumps(book("a", [("0.4", "1")], [("0.6", "1")]))]
        return []

    server = Server(on_text)
    # after the snapshot, only broadcasts and other assets' changes, every 5 ms
    server.background = json.dumps([{"event_type": "new_market", "assets_ids": ["x"]},
                                    change(("zz", "0.5", "1", "BUY"))])
    m = MetricGroup("ws")
    c = client(server, {"a"}, m)
    try:
        wait_for(lambda: c.stalls >= 1 and server.connections >= 2, what="stall despite the broadcasts")
        assert m.get("stalls") >= 1 and m.get("unknown_token") >= 1 and c.tracker.errors["unknown_token"] >= 1
    finally:
        c.stop()
        server.close()


def test_data_about_a_subscribed_token_keeps_the_shard_alive() -> None:
    def on_text(text: str) -> list[str]:
        msg = orjson.loads(text)
        if msg.get("type") == "market":
            return [json.dumps(book("a", [("0.4", "1")], [("0.6", "1")]))]
        return []

    server = Server(on_text)
    server.background = json.dumps({"event_type": "last_trade_price", "asset_id": "a", "price": "0.5"})
    m = MetricGroup("ws")
    c = client(server, {"a"}, m, stall_timeout=1.0)
    try:
        wait_for(lambda: c.messages > 600, timeout=30, what="a steady trickle of the shard's own data")  # >= 3 s
        assert c.stalls == 0 and server.connections == 1
    finally:
        c.stop()
        server.close()


def test_changes_before_the_book_ask_for_the_snapshot_again() -> None:
    """The first snapshot is lost (the server sends only a level change): the client counts
    it, subscribes the token again, and the book then arrives and applies."""
    def on_text(text: str) -> list[str]:
        msg = orjson.loads(text)
        if msg.get("type") == "market":
            return [json.dumps(change(("a", "0.45", "9", "BUY"), ts=None))]  # no book: it was "lost"
        if msg.get("operation") == "subscribe":
            return [json.dumps(book("a", [("0.4", "2")], [("0.6", "3")], ts=None))]
        return []

    server = Server(on_text)
    m = MetricGroup("ws")
    c = client(server, {"a"}, m, stall_timeout=30.0)
    try:
        wait_for(lambda: c.tracker.top.get("a") == (0.4, 0.6, 2.0, 3.0), what="the book after the resync")
        assert m.get("rejected_change_before_book") == 1 and m.get("book_resyncs") == 1
        ops = [orjson.loads(r) for r in server.received if r != "PING"]
        assert ops[1:] == [{"operation": "unsubscribe", "assets_ids": ["a"]},
                           {"operation": "subscribe", "assets_ids": ["a"]}]
        assert [top(u) for u in c.drain()] == [("a", 0.4, 0.6, 2.0, 3.0)]  # the only update: the real book
        assert server.connections == 1
    finally:
        c.stop()
        server.close()


def test_a_refused_timestamp_never_outranks_the_genuine_messages_after_it() -> None:
    """The server stamped a genuine book at NOW-500; a poisoned change (2^64) is received late, at
    NOW+1000; the genuine change the server sent just after the poison, stamped NOW-400, must still
    be newer than the poison's stand-in stamp, or the Redis writer would refuse it as older."""
    t = tracker("a")
    (good,) = send(t, book("a", [("0.4", "1")], [("0.6", "1")], ts=NOW - 500), recv=NOW)
    (poison,) = send(t, change(("a", "0.42", "1", "BUY"), ts=2**64), recv=NOW + 1000)
    (after,) = send(t, change(("a", "0.42", "0", "BUY"), ts=NOW - 400), recv=NOW + 1001)  # the top goes back
    assert good.exchange_ts_ms == NOW - 500 and poison.exchange_ts_ms == NOW - 500
    assert after.exchange_ts_ms == NOW - 400 > poison.exchange_ts_ms and t.errors["rejected_timestamp"] == 1
