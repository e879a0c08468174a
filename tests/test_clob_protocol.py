"""The CLOB frame parser and book tracker (connectors/clob/protocol.py), tested directly.

Every test checks the book afterwards (the top of book and its sizes), not only that
nothing raised: a change of size alone, a lowered and a raised top on each side, a level
removed with size "0" or no size, `best_bid_ask` overrides, and bad frames or messages
between good ones. The replay test feeds a random level stream (built with the stand-in's
own message builders) with duplicated messages and garbage frames mixed in, and
compares every token's top of book (and every level) with books kept by the test.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connectors.clob.protocol import BookTracker, initial_subscription, subscription_change
from polyalphascan.records import PriceUpdate
from standins.clob_server import book_message, price_change_message
from standins.protocols import BookSnapshot, LevelChange, PriceChange


def tracker(*tokens: str, complements: tuple[str, ...] = (), shard: int = 2) -> BookTracker:
    t = BookTracker(shard)
    t.subscribed = set(tokens)
    t.complements = set(complements)
    return t


def book(token: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], ts: Any = "100") -> dict[str, Any]:
    msg: dict[str, Any] = {"event_type": "book", "asset_id": token, "market": "0x1",
                           "bids": [{"price": p, "size": s} for p, s in bids],
                           "asks": [{"price": p, "size": s} for p, s in asks]}
    if ts is not None:
        msg["timestamp"] = ts
    return msg


def change(*levels: tuple[str, str, str | None, str], ts: str = "200") -> dict[str, Any]:
    """levels: (token, price, size or None for a missing size, "BUY" | "SELL")."""
    out = []
    for token, price, size, side in levels:
        lv = {"asset_id": token, "price": price, "side": side}
        if size is not None:
            lv["size"] = size
        out.append(lv)
    return {"event_type": "price_change", "market": "0x1", "timestamp": ts, "price_changes": out}


def top(u: PriceUpdate) -> tuple[Any, ...]:
    return (u.token_id, u.best_bid, u.best_ask, u.bid_size, u.ask_size)


def send(t: BookTracker, *msgs: Any, recv: int = 7) -> list[PriceUpdate]:
    return t.handle(orjson.dumps(list(msgs) if len(msgs) > 1 else msgs[0]), recv)


BASE = book("a", [("0.40", "10"), ("0.41", "5"), ("0.39", "0")], [("0.45", "7"), ("0.44", "0"), ("0.47", "2")])


def test_book_snapshot_sets_the_top_and_every_field() -> None:
    t = tracker("a", shard=4)
    (u,) = send(t, BASE, recv=55)
    # zero-size levels are no levels; the depth is best first on each side
    assert u == PriceUpdate("a", 0.41, 0.45, 5.0, 7.0, 100, 55, 4, False, (0.41, 5.0, 0.40, 10.0), (0.45, 7.0, 0.47, 2.0))
    assert t.bids["a"] == {0.40: 10.0, 0.41: 5.0} and t.asks["a"] == {0.45: 7.0, 0.47: 2.0}
    assert t.events["book"] == 1 and not t.errors
    # a snapshot replaces the book whole: old levels go
    (u,) = send(t, book("a", [("0.30", "1")], [("0.60", "2")], ts=None))
    assert top(u) == ("a", 0.30, 0.60, 1.0, 2.0) and u.exchange_ts_ms == 0
    assert t.bids["a"] == {0.30: 1.0} and t.asks["a"] == {0.60: 2.0}
    # an empty book: both sides empty
    (u,) = send(t, book("a", [], []))
    assert top(u) == ("a", None, None, None, None)
    # the same snapshot again changes nothing: nothing emitted
    assert send(t, book("a", [], [])) == []


@pytest.mark.parametrize("level,want", [
    (("a", "0.41", "9", "BUY"), ("a", 0.41, 0.45, 9.0, 7.0)),  # size alone at the top bid
    (("a", "0.45", "1.5", "SELL"), ("a", 0.41, 0.45, 5.0, 1.5)),  # size alone at the top ask
    (("a", "0.41", "0", "BUY"), ("a", 0.40, 0.45, 10.0, 7.0)),  # top bid removed: the bid is lowered
    (("a", "0.41", None, "BUY"), ("a", 0.40, 0.45, 10.0, 7.0)),  # no size = removed
    (("a", "0.43", "4", "BUY"), ("a", 0.43, 0.45, 4.0, 7.0)),  # a higher bid
    (("a", "0.42", "3", "SELL"), ("a", 0.41, 0.42, 5.0, 3.0)),  # a lowered ask
    (("a", "0.45", "0", "SELL"), ("a", 0.41, 0.47, 5.0, 2.0)),  # top ask removed: the ask is raised
])
def test_level_changes_move_the_top_on_the_right_side(level: tuple[str, str, str | None, str],
                                                      want: tuple[Any, ...]) -> None:
    t = tracker("a")
    send(t, BASE)
    (u,) = send(t, change(level, ts="250"), recv=9)
    assert top(u) == want and (u.exchange_ts_ms, u.recv_ts_ms, u.shard) == (250, 9, 2)
    assert t.top["a"] == want[1:]


def test_changes_below_the_top_emit_the_new_depth_and_beyond_the_depth_nothing() -> None:
    t = tracker("a")
    send(t, BASE)
    (u,) = send(t, change(("a", "0.40", "12", "BUY"), ("a", "0.47", "0", "SELL"), ("a", "0.30", "0", "BUY")))
    assert top(u) == ("a", 0.41, 0.45, 5.0, 7.0) and u.bids == (0.41, 5.0, 0.40, 12.0) and u.asks == (0.45, 7.0)
    assert t.bids["a"] == {0.40: 12.0, 0.41: 5.0} and t.asks["a"] == {0.45: 7.0}
    (u,) = send(t, change(("a", "0.41", "0", "BUY"), ("a", "0.45", "0", "SELL")))
    assert top(u) == ("a", 0.40, None, 12.0, None) and u.bids == (0.40, 12.0) and u.asks == ()
    # with a depth of one level a change below the top emits nothing, and matters once the top goes
    t = BookTracker(2, depth=1)
    t.subscribed = {"a"}
    send(t, BASE)
    assert send(t, change(("a", "0.40", "12", "BUY"), ("a", "0.47", "0", "SELL"))) == []
    (u,) = send(t, change(("a", "0.41", "0", "BUY")))
    assert top(u) == ("a", 0.40, 0.45, 12.0, 7.0) and u.bids == (0.40, 12.0) and u.asks == (0.45, 7.0)


def test_a_level_change_before_the_book_waits_for_the_book() -> None:
    """No partial book from level changes: they are counted and dropped until the snapshot."""
    t = tracker("a", "b")
    send(t, book("b", [("0.1", "1")], []))
    assert send(t, change(("a", "0.20", "3", "BUY"), ("a", "0.30", "4", "SELL"), ("b", "0.2", "2", "BUY"))) == [
        PriceUpdate("b", 0.2, None, 2.0, None, 200, 7, 2, False, (0.2, 2.0, 0.1, 1.0))]  # the booked token applies
    assert t.errors["rejected_change_before_book"] == 2 and "a" not in t.top and "a" not in t.booked
    assert t.bids.get("a", {}) == {} and t.asks.get("a", {}) == {}
    (u,) = send(t, book("a", [("0.25", "1")], [("0.35", "2")]))  # the book starts it; changes then apply
    assert top(u) == ("a", 0.25, 0.35, 1.0, 2.0)
    (u,) = send(t, change(("a", "0.30", "4", "SELL")))
    assert top(u) == ("a", 0.25, 0.30, 1.0, 4.0)
    t.forget("a")  # unsubscribed: the next changes wait for a new book again
    assert send(t, change(("a", "0.26", "1", "BUY"))) == [] and t.errors["rejected_change_before_book"] == 3
    # a best_bid_ask is no book either: refused, counted, the snapshot asked for again
    assert send(t, {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.3", "best_ask": "0.4"}) == []
    assert t.errors["rejected_change_before_book"] == 4 and "a" in t.need_book and "a" not in t.top
    assert send(t, change(("a", "0.31", "1", "BUY"))) == [] and t.errors["rejected_change_before_book"] == 5


def test_one_update_per_token_per_frame_the_newest_state() -> None:
    t = tracker("a", "b")
    out = send(t, BASE, book("b", [("0.10", "1")], [("0.90", "1")]),
               change(("a", "0.42", "8", "BUY"), ("b", "0.11", "2", "BUY")),
               change(("a", "0.43", "6", "BUY"), ts="300"))
    assert sorted(map(top, out)) == [("a", 0.43, 0.45, 6.0, 7.0), ("b", 0.11, 0.90, 2.0, 1.0)]
    assert {u.token_id: u.exchange_ts_ms for u in out} == {"a": 300, "b": 200}


def test_two_changes_with_the_same_timestamp_both_apply_in_order() -> None:
    t = tracker("a")
    send(t, BASE)
    (u,) = send(t, change(("a", "0.42", "3", "BUY"), ts="500"))
    assert top(u) == ("a", 0.42, 0.45, 3.0, 7.0)
    (u,) = send(t, change(("a", "0.42", "0", "BUY"), ts="500"))  # same timestamp: still the newer message
    assert top(u) == ("a", 0.41, 0.45, 5.0, 7.0) and u.exchange_ts_ms == 500


def test_best_bid_ask_sets_the_top_and_keeps_known_sizes() -> None:
    t = tracker("a")
    send(t, BASE)
    bba = {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.40", "best_ask": "0.47", "timestamp": "400"}
    (u,) = send(t, bba)
    # better levels than the announced top go; the announced levels keep the sizes known for them
    assert top(u) == ("a", 0.40, 0.47, 10.0, 2.0) and u.exchange_ts_ms == 400
    assert t.bids["a"] == {0.40: 10.0} and t.asks["a"] == {0.47: 2.0}
    (u,) = send(t, {**bba, "best_bid": "0.44", "best_ask": "0.46"})  # unknown levels: size 0 until a change says
    assert top(u) == ("a", 0.44, 0.46, 0.0, 0.0)
    assert t.bids["a"] == {0.40: 10.0, 0.44: 0.0} and t.asks["a"] == {0.46: 0.0, 0.47: 2.0}
    (u,) = send(t, {**bba, "best_bid": "", "best_ask": None})  # both sides emptied
    assert top(u) == ("a", None, None, None, None) and t.bids["a"] == {} and t.asks["a"] == {}
    assert t.events["best_bid_ask"] == 3


def test_bad_input_is_counted_skipped_and_leaves_the_book_as_it_was() -> None:
    t = tracker("a", complements=("na",))
    send(t, BASE)
    before = (dict(t.bids["a"]), dict(t.asks["a"]), t.top["a"])
    bad: list[tuple[Any, str]] = [
        ('{"event_type": "book", "asset_id": ', "malformed_frame"),
        (b"\x00garbage", "malformed_frame"),
        ('{"event_type": "mystery"}', "unknown_event_type"),
        (orjson.dumps({**BASE, "asset_id": "zzz"}), "unknown_token"),
        (orjson.dumps(book("a", [("1.7", "1")], [])), "price_out_of_range"),
        (orjson.dumps(book("a", [("0.5", "1")], [("-0.1", "1")])), "price_out_of_range"),
        (orjson.dumps(change(("a", "1.01", "3", "BUY"))), "price_out_of_range"),
        ('{"event_type":"price_change","price_changes":"oops"}', "malformed_message"),
        (orjson.dumps({"event_type": "book", "asset_id": "a"}), "malformed_message"),  # no levels
        (orjson.dumps({"event_type": "book", "asset_id": "a", "bids": [{"price": "x", "size": "1"}], "asks": []}),
         "malformed_message"),
        (orjson.dumps({"event_type": "price_change", "price_changes": [{"asset_id": "a", "price": "0.5"}]}),
         "rejected_side"),  # no side: applied to neither side
        (orjson.dumps(change(("a", "0.5", "1", "XYZ"))), "rejected_side"),
        (orjson.dumps(change(("a", "0.5", "1", "buy"))), "rejected_side"),  # exactly "BUY"
        (orjson.dumps(change(("a", "0.42", "inf", "BUY"))), "rejected_size"),
        (orjson.dumps(change(("a", "0.42", "NaN", "BUY"))), "rejected_size"),
        (orjson.dumps(change(("a", "0.42", "-1", "SELL"))), "rejected_size"),
        (orjson.dumps(book("a", [("0.5", "1")], [("0.6", "-3")])), "rejected_size"),  # a book is atomic
        (orjson.dumps(book("a", [("0.5", "nan")], [])), "rejected_size"),
        (orjson.dumps(book("a", [("0.5", True)], [])), "rejected_size"),
        (orjson.dumps(change(("a", "nan", "1", "BUY"))), "price_out_of_range"),
        (orjson.dumps(change(("a", [0.5], "1", "BUY"))), "malformed_message"),
        (orjson.dumps({"event_type": "book", "asset_id": 5, "bids": [], "asks": []}), "malformed_message"),
        ("[1, 2]", "malformed_message"),
    ]
    for frame, kind in bad:
        errors = dict(t.errors)
        assert t.handle(frame, 1) == [], frame
        assert t.errors[kind] == errors.get(kind, 0) + (2 if frame == "[1, 2]" else 1), frame
        assert (t.bids["a"], t.asks["a"], t.top["a"]) == before, frame  # the book is untouched
    assert t.handle("PONG", 1) == [] and t.handle("INVALID OPERATION", 1) == []
    assert (t.events["pong"], t.events["invalid_operation"]) == (1, 1)
    assert send(t, {**BASE, "asset_id": "na"}) == [] and t.events["complement_skipped"] == 1
    for kind in ("last_trade_price", "tick_size_change", "new_market", "market_resolved"):
        assert send(t, {"event_type": kind, "asset_id": "a"}) == [] and t.events[kind] == 1
    # a bad message inside an array does not cost the good ones around it
    out = send(t, {"event_type": "mystery"}, change(("a", "0.43", "2", "BUY")), "junk", change(("zzz", "0.1", "1", "BUY")))
    assert [top(u) for u in out] == [("a", 0.43, 0.45, 2.0, 7.0)]
    # a rejected book does not replace the good one, and the next good message applies to it
    assert send(t, book("a", [("0.5", "1")], [("2", "1")])) == []
    (u,) = send(t, change(("a", "0.45", "0", "SELL")))
    assert top(u) == ("a", 0.43, 0.47, 2.0, 2.0)


def test_price_bounds_are_inclusive() -> None:
    t = tracker("a")
    (u,) = send(t, book("a", [("0", "1")], [("1", "2")]))
    assert top(u) == ("a", 0.0, 1.0, 1.0, 2.0) and not t.errors


def test_forget_drops_the_book_so_the_next_snapshot_is_emitted_again() -> None:
    t = tracker("a")
    send(t, BASE)
    t.forget("a")
    assert "a" not in t.bids and "a" not in t.asks and "a" not in t.top
    (u,) = send(t, BASE)
    assert top(u) == ("a", 0.41, 0.45, 5.0, 7.0)
    t.forget("never-seen")  # no error


def test_replaying_a_random_stream_with_duplicates_and_garbage_gives_its_books() -> None:
    """A random level stream (the stand-in's own message builders) against books kept here:
    duplicated messages change nothing (sizes are absolute), garbage costs nothing."""
    import random

    rng = random.Random(3)
    tokens = [f"t{i}" for i in range(12)]
    books: dict[str, dict[str, dict[float, float]]] = {}
    for tok in tokens:
        mid = rng.randint(20, 80)
        books[tok] = {"BUY": {(mid - k) / 100: float(rng.randint(1, 50)) for k in range(1, 4)},
                      "SELL": {(mid + k) / 100: float(rng.randint(1, 50)) for k in range(0, 3)}}
    t = tracker(*tokens)
    latest: dict[str, PriceUpdate] = {}
    snaps = [book_message(BookSnapshot(tok, "0x1", tuple(b["BUY"].items()), tuple(b["SELL"].items())), "1")
             for tok, b in books.items()]
    for u in t.handle(orjson.dumps(snaps), 1):
        latest[u.token_id] = u

    def want(tok: str) -> tuple[Any, ...]:
        bids, asks = books[tok]["BUY"], books[tok]["SELL"]
        bb, ba = (max(bids) if bids else None), (min(asks) if asks else None)
        return (tok, bb, ba, bids.get(bb) if bb is not None else None, asks.get(ba) if ba is not None else None)

    assert {tok: top(latest[tok]) for tok in tokens} == {tok: want(tok) for tok in tokens}
    for step in range(300):
        frame: list[Any] = []
        for _ in range(rng.randint(1, 4)):
            tok, side = rng.choice(tokens), rng.choice(["BUY", "SELL"])
            levels = books[tok][side]
            other = books[tok]["SELL" if side == "BUY" else "BUY"]
            if levels and rng.random() < 0.4:
                price = rng.choice(sorted(levels))
                size = 0.0 if rng.random() < 0.5 else float(rng.randint(1, 60))  # removed, or a size alone
            else:
                edge = (min(other) if other else 1.0) if side == "BUY" else (max(other) if other else 0.0)
                ticks = range(1, round(edge * 100)) if side == "BUY" else range(round(edge * 100) + 1, 100)
                if not ticks:
                    continue
                price, size = rng.choice(list(ticks)) / 100, float(rng.randint(1, 60))
            if size:
                levels[price] = size
            else:
                levels.pop(price, None)
            msg = price_change_message(PriceChange("0x1", (LevelChange(tok, price, size, side, None, None),)),
                                       str(10 + step))
            frame.append(msg)
            if rng.random() < 0.3:
                frame.append(msg)
        if rng.random() < 0.2:
            frame.insert(rng.randrange(len(frame) + 1), {"event_type": "mystery"})
        for u in t.handle(orjson.dumps(frame), 2):
            latest[u.token_id] = u
        if rng.random() < 0.2:
            assert t.handle(b'{"event_type": "price_change", "price_', 3) == []  # garbage between frames
    assert t.errors["malformed_frame"] > 0 and t.errors["unknown_event_type"] > 0
    expected = {tok: want(tok) for tok in tokens}
    assert {tok: (tok, *t.top[tok]) for tok in tokens} == expected
    assert {tok: top(latest[tok]) for tok in tokens} == expected  # the last update emitted per token is the book
    assert {tok: (t.bids[tok], t.asks[tok]) for tok in tokens} == {
        tok: (books[tok]["BUY"], books[tok]["SELL"]) for tok in tokens}


def test_counters_count_every_occurrence() -> None:
    t = BookTracker()  # a fresh tracker knows no token: everything is unknown, nothing breaks
    assert send(t, BASE) == [] and t.errors["unknown_token"] == 1
    t.subscribed, t.complements = {"a"}, {"na"}
    for _ in range(2):
        send(t, BASE)
        send(t, change(("a", "0.30", "1", "BUY")))
        send(t, {**BASE, "asset_id": "na"})
        send(t, {**BASE, "asset_id": "zzz"})
        t.handle("PONG", 1)
        send(t, {"event_type": "last_trade_price", "asset_id": "a"})
        send(t, {"event_type": "mystery"})
    assert (t.events["book"], t.events["price_change"], t.events["complement_skipped"], t.events["pong"],
            t.events["last_trade_price"]) == (2, 2, 2, 2, 2)
    assert (t.errors["unknown_token"], t.errors["unknown_event_type"]) == (3, 2)


def test_unknown_levels_in_a_change_do_not_stop_the_known_ones_after_them() -> None:
    t = tracker("a")
    send(t, BASE)
    (u,) = send(t, change(("zzz", "0.5", "1", "BUY"), ("a", "0.43", "4", "BUY")))
    assert top(u) == ("a", 0.43, 0.45, 4.0, 7.0)
    # removing a level that is not there is no error
    assert send(t, change(("a", "0.20", "0", "BUY"))) == [] and not t.errors.get("malformed_message")


def test_best_bid_ask_before_any_book_is_no_price() -> None:
    t = tracker("a")
    assert send(t, {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.30", "best_ask": "0.35",
                    "timestamp": "9"}, recv=77) == []
    assert t.errors["rejected_change_before_book"] == 1 and t.need_book == {"a"}
    send(t, book("a", [("0.29", "4")], [("0.36", "5")]))
    (u,) = send(t, {"event_type": "best_bid_ask", "asset_id": "a", "best_bid": "0.30", "best_ask": "0.35",
                    "timestamp": "9"}, recv=77)
    assert u[:8] == PriceUpdate("a", 0.30, 0.35, 0.0, 0.0, 9, 77, 2)[:8] and u.bids == (0.30, 0.0, 0.29, 4.0)


def test_subscription_messages() -> None:
    assert orjson.loads(initial_subscription({"b", "a"})) == {
        "type": "market", "assets_ids": ["a", "b"], "initial_dump": True, "level": 2,
        "custom_feature_enabled": False}
    assert orjson.loads(subscription_change("unsubscribe", ["z", "y"])) == {
        "operation": "unsubscribe", "assets_ids": ["y", "z"]}


# ------------------------------------------------------------------ real recorded frames (issue 16)
REAL = orjson.loads((__import__("pathlib").Path(__file__).parent / "fixtures/clob_real/market_channel_frames.json")
                    .read_bytes())
PC_YES = "40600137944982070120020561148201046074034528738262880058756488608210871246278"
PC_NO = "79597156840177168343562124064866301094619106642263695929345529947536386203124"
BOOK_TOKEN = "63691357964355397861776339416833450653158434687925250159757815624217137833471"


def test_real_book_unsorted_levels_give_the_sorted_depth_and_its_tick() -> None:
    t = tracker(BOOK_TOKEN)
    (u,) = t.handle(REAL["book"], 1786728432400)
    assert top(u) == (BOOK_TOKEN, 0.004, 0.009, 100.0, 25.0)
    assert u.bids == (0.004, 100.0, 0.001, 2200.8) and u.asks == (0.009, 25.0, 0.999, 50.0)
    assert u.tick == 0.001 and u.exchange_ts_ms == 1786728432337


def test_real_price_change_before_its_book_emits_nothing_and_asks_for_the_book() -> None:
    t = tracker(PC_YES, complements=(PC_NO,))
    assert t.handle(REAL["price_change"], 1786728438500) == []
    assert t.errors["rejected_change_before_book"] == 1 and t.need_book == {PC_YES} and PC_YES not in t.top
    assert t.events["complement_skipped"] == 1


def test_real_price_change_agreeing_with_the_book_counts_no_disagreement() -> None:
    t = tracker(PC_YES, complements=(PC_NO,))
    # a book built for this test, consistent with the venue's announced top (0.07 / 0.08)
    send(t, book(PC_YES, [("0.07", "50"), ("0.05", "10")], [("0.08", "40"), ("0.09", "5")]))
    (u,) = t.handle(REAL["price_change"], 1786728438500)
    assert top(u) == (PC_YES, 0.07, 0.08, 50.0, 40.0) and u.bids == (0.07, 50.0, 0.06, 374.34, 0.05, 10.0)
    assert t.events["top_disagreements"] == 0


def test_real_price_change_overrides_a_stale_crossed_top_with_the_venues() -> None:
    """A split frame left a stale bid at 0.085 above the ask 0.08 (crossed): the real entry's
    best_bid 0.07 wins, the stale level goes, the disagreement is counted."""
    t = tracker(PC_YES, complements=(PC_NO,))
    send(t, book(PC_YES, [("0.085", "9"), ("0.07", "50")], [("0.08", "40")]))  # built for this test
    (u,) = t.handle(REAL["price_change"], 1786728438500)
    assert top(u) == (PC_YES, 0.07, 0.08, 50.0, 40.0) and 0.085 not in t.bids[PC_YES]
    assert t.events["top_disagreements"] == 1
    # the venue announcing a best bid the book lacks: it is added with size 0 (size unknown)
    t2 = tracker(PC_YES)
    send(t2, book(PC_YES, [("0.05", "50")], [("0.08", "40")]))
    (u,) = t2.handle(REAL["price_change"], 1786728438500)
    assert top(u) == (PC_YES, 0.07, 0.08, 0.0, 40.0) and t2.events["top_disagreements"] == 1


def test_real_tick_size_change_emits_the_new_tick_for_a_booked_token_only() -> None:
    t = tracker("658186")
    assert t.handle(REAL["tick_size_change"], 1757908892400) == []  # no book yet: no price
    assert t.ticks["658186"] == 0.001
    (u,) = send(t, book("658186", [("0.95", "10")], [("0.97", "3")]))
    assert u.tick == 0.001
    (u,) = send(t, {"event_type": "tick_size_change", "asset_id": "658186", "new_tick_size": "0.01"})
    assert u.tick == 0.01 and top(u) == ("658186", 0.95, 0.97, 10.0, 3.0)
    assert send(t, {"event_type": "tick_size_change", "asset_id": "658186", "new_tick_size": "0.5"}) == []
    assert t.errors["rejected_tick"] == 1 and t.ticks["658186"] == 0.01


def test_real_best_bid_ask_applies_only_after_a_book() -> None:
    tok = "72710166409980712002774407052535905861151156175854323762835102340552522606004"
    t = tracker(tok)
    assert t.handle(REAL["best_bid_ask"], 1786728467100) == [] and t.need_book == {tok}
    send(t, book(tok, [("0.58", "10")], [("0.59", "10")]))  # built for this test
    (u,) = t.handle(REAL["best_bid_ask"], 1786728467100)
    assert (u.best_bid, u.best_ask) == (0.585, 0.587)


def test_subscribe_messages_stay_well_under_57_kib_and_cover_every_token_once() -> None:
    from connectors.clob.protocol import MAX_SUBSCRIBE_BYTES, subscribe_messages, unsubscribe_messages
    tokens = [str(10**76 + i * 7919) for i in range(1200)]  # 77-digit ids like the real ones
    msgs = subscribe_messages(tokens, initial=True)
    assert len(msgs) > 1 and all(len(m.encode()) <= MAX_SUBSCRIBE_BYTES < 57 * 1024 for m in msgs)
    decoded = [orjson.loads(m) for m in msgs]
    assert decoded[0]["type"] == "market" and decoded[0]["initial_dump"] is True
    assert all(d == {"operation": "subscribe", "assets_ids": d["assets_ids"]} for d in decoded[1:])
    sent = [t for d in decoded for t in d["assets_ids"]]
    assert sorted(sent) == sorted(tokens) and len(set(sent)) == len(sent)
    later = subscribe_messages(tokens[:3], initial=False)
    assert [orjson.loads(m) for m in later] == [{"operation": "subscribe", "assets_ids": sorted(tokens[:3])}]
    assert orjson.loads(subscribe_messages([], initial=True)[0])["assets_ids"] == []
    un = [orjson.loads(m) for m in unsubscribe_messages(tokens)]
    assert sorted(t for d in un for t in d["assets_ids"]) == sorted(tokens)
    assert all(d["operation"] == "unsubscribe" for d in un)


def test_coverage_report_per_shard_and_in_total() -> None:
    from polyalphascan_app.monitoring import _coverage
    got = _coverage({"shard00_tokens": 200, "shard00_booked": 200, "shard01_tokens": 100, "shard01_booked": 40,
                     "connections": 2})
    assert got == {"total_pct": 80.0, "tokens_subscribed": 300, "tokens_booked": 240,
                   "shards": {"00": 100.0, "01": 40.0}}


def test_venue_top_zero_bid_and_one_ask_mean_an_empty_side_and_missing_fields_check_nothing() -> None:
    t = tracker("a")
    send(t, book("a", [("0.40", "5")], [("0.45", "7")]))
    entry = {"asset_id": "a", "price": "0.30", "size": "2", "side": "BUY", "best_bid": "0", "best_ask": "0.45"}
    (u,) = send(t, {"event_type": "price_change", "timestamp": "300", "price_changes": [entry]})
    assert (u.best_bid, u.best_ask, u.bids) == (None, 0.45, ()) and t.events["top_disagreements"] == 1
    entry = {"asset_id": "a", "price": "0.46", "size": "1", "side": "SELL", "best_bid": "", "best_ask": "0.2"}
    (u,) = send(t, {"event_type": "price_change", "timestamp": "301", "price_changes": [entry]})
    assert u.asks == (0.45, 7.0, 0.46, 1.0) and t.events["top_disagreements"] == 1  # one side unsaid: no check
    entry = {"asset_id": "a", "price": "0.47", "size": "1", "side": "SELL", "best_bid": "0", "best_ask": "1"}
    (u,) = send(t, {"event_type": "price_change", "timestamp": "302", "price_changes": [entry]})
    assert (u.best_bid, u.best_ask) == (None, None) and t.events["top_disagreements"] == 2
    assert send(t, {"event_type": "tick_size_change", "asset_id": "zzz", "new_tick_size": "0.001"}) == []
    assert "zzz" not in t.ticks


def test_a_reordered_older_message_does_not_impose_its_stale_top() -> None:
    t = tracker("a")
    send(t, book("a", [("0.40", "5")], [("0.45", "7")], ts="100"))
    new = {"asset_id": "a", "price": "0.42", "size": "3", "side": "BUY", "best_bid": "0.42", "best_ask": "0.45"}
    old = {"asset_id": "a", "price": "0.39", "size": "2", "side": "BUY", "best_bid": "0.40", "best_ask": "0.45"}
    send(t, {"event_type": "price_change", "timestamp": "300", "price_changes": [new]})
    (u,) = send(t, {"event_type": "price_change", "timestamp": "200", "price_changes": [old]})
    assert u.bids == (0.42, 3.0, 0.40, 5.0, 0.39, 2.0) and t.events["top_disagreements"] == 0
    (u,) = send(t, {"event_type": "price_change", "timestamp": "300", "price_changes": [{**old, "size": "4"}]})
    assert u.bids == (0.40, 5.0, 0.39, 4.0) and t.events["top_disagreements"] == 1  # as new: the venue wins


def test_the_remembered_prices_are_floats_of_the_text_and_stay_bounded() -> None:
    from connectors.clob.protocol import _PRICES, _Prices
    memo = _Prices()
    memo.limit = 3
    assert [memo[t] for t in ("0.5", "0.50", "-0", "1e-400")] == [0.5, 0.5, -0.0, 0.0] and len(memo) == 1
    assert repr(memo["-0"]) == "-0.0" and len(memo) == 2
    with pytest.raises(ValueError):
        memo["x"]
    assert "x" not in memo and _PRICES.limit == 20_000
