"""The CLOB book tracker's finer points (connectors/clob/protocol.py), tested directly: what each
rejection leaves in `last_error` (the token and the detail the client logs), the depth cap at
its edges (a level between the kept ones, a `best_bid_ask` that fills or overflows a side),
and `forget` leaving no pending snapshot request behind.
"""

from __future__ import annotations

from typing import Any

import orjson

from connectors.clob.protocol import BookSide, BookTracker


def tracker(*tokens: str, cap: int = 1000) -> BookTracker:
    t = BookTracker(3, cap=cap)
    t.subscribed = set(tokens)
    return t


def send(t: BookTracker, *msgs: Any, recv: int = 1_000) -> list[Any]:
    return t.handle(orjson.dumps(list(msgs) if len(msgs) > 1 else msgs[0]), recv)


def book(token: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> dict[str, Any]:
    return {"event_type": "book", "asset_id": token,
            "bids": [{"price": p, "size": s} for p, s in bids], "asks": [{"price": p, "size": s} for p, s in asks]}


def changes(*levels: Any) -> dict[str, Any]:
    return {"event_type": "price_change", "price_changes": list(levels)}


def bba(token: str, bid: str | None, ask: str | None) -> dict[str, Any]:
    return {"event_type": "best_bid_ask", "asset_id": token, "best_bid": bid, "best_ask": ask}


# ------------------------------------------------------------------ what the client logs
def test_a_bad_side_is_logged_with_its_token_and_the_side() -> None:
    t = tracker("a")
    send(t, book("a", [("0.4", "1")], []))
    send(t, changes({"asset_id": "a", "price": "0.5", "size": "1", "side": "XYZ"}))
    assert t.last_error["rejected_side"] == ("a", "side 'XYZ'")


def test_a_change_before_the_book_is_logged_with_its_token() -> None:
    t = tracker("a")
    send(t, changes({"asset_id": "a", "price": "0.5", "size": "1", "side": "BUY"}))
    assert t.last_error["rejected_change_before_book"] == ("a", "")


def test_an_unknown_token_is_logged_with_the_token_and_no_detail() -> None:
    t = tracker("a")
    send(t, changes({"asset_id": "zzz", "price": "0.5", "size": "1", "side": "BUY"}))
    assert t.last_error["unknown_token"] == ("zzz", "")


def test_a_rejected_level_change_is_logged_with_its_token_and_reason() -> None:
    t = tracker("a")
    send(t, book("a", [("0.4", "1")], []))
    send(t, changes({"asset_id": "a", "price": "1.5", "size": "1", "side": "BUY"}))
    assert t.last_error["price_out_of_range"] == ("a", "price '1.5' outside [0, 1]")
    send(t, changes({"asset_id": "a", "price": "0.5", "size": "x", "side": "BUY"}))
    assert t.last_error["rejected_size"] == ("a", "size 'x' is not a number")
    send(t, changes({"asset_id": "a", "price": "0.5", "size": "-1", "side": "SELL"}))
    assert t.last_error["rejected_size"] == ("a", "size '-1' is not finite and non-negative")


def test_a_bad_size_in_a_book_is_logged_with_the_books_token() -> None:
    t = tracker("a")
    send(t, book("a", [("0.4", "x")], []))
    assert t.last_error["rejected_size"] == ("a", "size 'x' is not a number")


def test_a_malformed_level_change_is_logged_with_its_token_and_the_error() -> None:
    t = tracker("a")
    send(t, book("a", [("0.4", "1")], []))
    send(t, changes({"asset_id": "a", "size": "1", "side": "BUY"}))  # no price
    assert t.last_error["malformed_message"] == ("a", "KeyError('price')")
    send(t, changes({"asset_id": 5, "price": "0.5", "size": "1", "side": "BUY"}))
    assert t.last_error["malformed_message"] == ("", "ClobMessageError('asset_id is not a string')")
    send(t, changes({"price": "0.5", "size": "1", "side": "BUY"}))  # no asset_id at all
    assert t.last_error["malformed_message"] == ("", "KeyError('asset_id')")
    send(t, changes(7))  # not an object
    assert t.last_error["malformed_message"] == ("", "TypeError(\"'int' object is not subscriptable\")")
    assert t.errors["malformed_message"] == 4


def test_logged_tokens_are_cut_to_80_characters_and_details_to_200() -> None:
    long_token = "t" * 100
    t = tracker(long_token)
    send(t, book(long_token, [("0.4", "1")], []))
    send(t, changes({"asset_id": long_token, "price": "2", "size": "1", "side": "BUY"}))
    assert t.last_error["price_out_of_range"] == ("t" * 80, "price '2' outside [0, 1]")
    send(t, changes({"asset_id": long_token, "price": "y" * 300, "size": "1", "side": "BUY"}))
    token, detail = t.last_error["malformed_message"]
    assert token == "t" * 80
    assert detail == repr(ValueError(f"could not convert string to float: {'y' * 300!r}"))[:200]


def test_levels_dropped_by_the_cap_in_a_change_are_logged_without_a_token() -> None:
    t = tracker("a", cap=1)
    send(t, book("a", [("0.4", "1")], []))
    send(t, changes({"asset_id": "a", "price": "0.3", "size": "1", "side": "BUY"}))
    assert t.last_error["rejected_depth"] == ("", "1 levels beyond 1 per side")
    assert t.bids["a"] == {0.4: 1.0}


def test_frame_level_rejections_are_logged_with_their_detail() -> None:
    t = tracker("a")
    garbage = "{" + "x" * 100
    t.handle(garbage, 1)
    assert t.last_error["malformed_frame"] == ("", repr(garbage[:80]))
    send(t, ["y" * 100, book("a", [("0.4", "1")], [])])  # a message that is not an object
    assert t.last_error["malformed_message"] == ("", repr("y" * 100)[:80])
    send(t, {"event_type": "mystery"})
    assert t.last_error["unknown_event_type"] == ("", "event_type 'mystery'")


def test_message_level_rejections_are_logged_with_the_messages_token() -> None:
    t = tracker("a")
    send(t, book("a", [("0.4", "1")], [("1.5", "1")]))
    assert t.last_error["price_out_of_range"] == ("a", "price '1.5' outside [0, 1]")
    send(t, bba("a", "0.4", "-2"))
    assert t.last_error["price_out_of_range"] == ("a", "price '-2' outside [0, 1]")
    send(t, {"event_type": "book", "asset_id": "a", "bids": "x", "asks": []})
    assert t.last_error["malformed_message"] == ("a", "ClobMessageError('levels are not a list')")
    send(t, {"event_type": "book", "asset_id": "a", "asks": []})
    assert t.last_error["malformed_message"] == ("a", "KeyError('bids')")
    send(t, book("a", [("0.4", [1])], [("0.5", "1")]))  # a size of the wrong type is a bad size
    assert t.last_error["rejected_size"] == ("a", "size [1] is not a number")
    send(t, book("a", [([0.4], "1")], []))  # a price of the wrong type is a malformed message
    assert t.last_error["malformed_message"] == ("a", "TypeError('not a number: list')")
    assert t.errors["malformed_message"] == 3


def test_a_message_without_a_token_is_logged_with_an_empty_token() -> None:
    t = tracker("a")
    send(t, {"event_type": "price_change", "price_changes": "oops"})
    assert t.last_error["malformed_message"] == ("", "ClobMessageError('price_changes is not a list')")
    send(t, {"event_type": "price_change", "timestamp": "abc", "price_changes": []})
    assert t.last_error["rejected_timestamp"] == ("", "timestamp 'abc'")


def test_a_non_string_token_is_logged_as_malformed_for_books_and_announced_tops() -> None:
    t = tracker("a")
    for msg in ({"event_type": "book", "asset_id": 5, "bids": [], "asks": []},
                {"event_type": "best_bid_ask", "asset_id": 5, "best_bid": "0.4", "best_ask": "0.5"}):
        t.last_error.clear()
        send(t, msg)
        assert t.last_error == {"malformed_message": ("5", "ClobMessageError('asset_id is not a string')")}


def test_a_rejected_timestamp_is_logged_with_its_token_and_value() -> None:
    long_token = "t" * 100
    t = tracker("a", long_token)
    send(t, {**book("a", [("0.4", "1")], []), "timestamp": "abc"})
    assert t.last_error["rejected_timestamp"] == ("a", "timestamp 'abc'")
    send(t, {**book(long_token, [("0.4", "1")], []), "timestamp": [1]})
    assert t.last_error["rejected_timestamp"] == ("t" * 80, "timestamp [1]")
    send(t, {"event_type": "book", "asset_id": long_token, "asks": []})  # no bids
    assert t.last_error["malformed_message"] == ("t" * 80, "KeyError('bids')")


def test_levels_dropped_by_the_cap_in_a_book_are_logged_with_its_token() -> None:
    t = tracker("a", cap=1)
    send(t, book("a", [("0.3", "1"), ("0.4", "1")], []))
    assert t.last_error["rejected_depth"] == ("a", "1 levels beyond 1 per side") and t.bids["a"] == {0.4: 1.0}


def test_a_snapshot_with_a_price_listed_twice_keeps_the_last_listing() -> None:
    t = tracker("a")
    (u,) = send(t, book("a", [("0.4", "1"), ("0.3", "2"), ("0.4", "0")], [("0.6", "0"), ("0.6", "5")]))
    assert t.bids["a"] == {0.3: 2.0} and t.asks["a"] == {0.6: 5.0}
    assert (u.best_bid, u.best_ask, u.bid_size, u.ask_size) == (0.3, 0.6, 2.0, 5.0)


def test_the_book_that_arrives_withdraws_the_snapshot_request() -> None:
    t = tracker("a")
    send(t, changes({"asset_id": "a", "price": "0.5", "size": "1", "side": "BUY"}))
    assert t.need_book == {"a"}
    send(t, book("a", [("0.4", "1")], []))
    assert t.need_book == set()


def test_broadcasts_are_counted_every_time() -> None:
    t = tracker("a")
    for _ in range(3):
        send(t, {"event_type": "new_market", "assets_ids": ["x"]})
        send(t, {"event_type": "market_resolved", "asset_id": "x"})
    assert (t.events["new_market"], t.events["market_resolved"]) == (3, 3) and not t.errors


# ------------------------------------------------------------------ the depth cap at its edges
def test_a_new_ask_between_the_kept_ones_pushes_out_the_highest() -> None:
    t = tracker("a", cap=3)
    send(t, book("a", [], [("0.7", "1"), ("0.8", "1"), ("0.9", "1")]))
    send(t, changes({"asset_id": "a", "price": "0.85", "size": "2", "side": "SELL"}))
    assert t.asks["a"] == {0.7: 1.0, 0.8: 1.0, 0.85: 2.0} and t.asks["a"].prices == [0.7, 0.8, 0.85]
    assert t.errors["rejected_depth"] == 1


def test_a_new_bid_between_the_kept_ones_pushes_out_the_lowest() -> None:
    t = tracker("a", cap=3)
    send(t, book("a", [("0.1", "1"), ("0.2", "1"), ("0.3", "1")], []))
    send(t, changes({"asset_id": "a", "price": "0.15", "size": "2", "side": "BUY"}))
    assert t.bids["a"] == {0.15: 2.0, 0.2: 1.0, 0.3: 1.0} and t.bids["a"].prices == [0.15, 0.2, 0.3]


def test_an_announced_top_that_fills_a_side_to_the_cap_keeps_every_level() -> None:
    t = tracker("a", cap=3)
    send(t, book("a", [("0.1", "1"), ("0.2", "2")], [("0.7", "7"), ("0.8", "8")]))
    (u,) = send(t, bba("a", "0.3", "0.6"))
    assert t.bids["a"] == {0.1: 1.0, 0.2: 2.0, 0.3: 0.0} and t.asks["a"] == {0.6: 0.0, 0.7: 7.0, 0.8: 8.0}
    assert (u.best_bid, u.best_ask) == (0.3, 0.6)


def test_an_announced_top_beyond_the_cap_drops_the_farthest_level_of_its_side() -> None:
    t = tracker("a", cap=3)
    send(t, book("a", [("0.1", "1"), ("0.2", "2"), ("0.3", "3")], [("0.7", "7"), ("0.8", "8"), ("0.9", "9")]))
    (u,) = send(t, bba("a", "0.35", "0.65"))
    assert t.bids["a"] == {0.2: 2.0, 0.3: 3.0, 0.35: 0.0} and t.bids["a"].prices == [0.2, 0.3, 0.35]
    assert t.asks["a"] == {0.65: 0.0, 0.7: 7.0, 0.8: 8.0} and t.asks["a"].prices == [0.65, 0.7, 0.8]
    assert (u.best_bid, u.best_ask, u.bid_size, u.ask_size) == (0.35, 0.65, 0.0, 0.0) and not t.errors


def test_book_side_cut_keeps_the_announced_best_when_over_the_cap() -> None:
    bids, asks = BookSide(True, cap=2), BookSide(False, cap=2)
    bids.replace({0.1: 1.0, 0.2: 2.0})
    asks.replace({0.8: 8.0, 0.9: 9.0})
    bids.cut_above_best(0.25)
    asks.cut_above_best(0.75)
    assert (bids, bids.prices, bids.best()) == ({0.2: 2.0, 0.25: 0.0}, [0.2, 0.25], 0.25)
    assert (asks, asks.prices, asks.best()) == ({0.75: 0.0, 0.8: 8.0}, [0.75, 0.8], 0.75)


# ------------------------------------------------------------------ forget
def test_forget_withdraws_a_pending_snapshot_request() -> None:
    t = tracker("a", "b")
    send(t, changes({"asset_id": "a", "price": "0.5", "size": "1", "side": "BUY"},
                    {"asset_id": "b", "price": "0.5", "size": "1", "side": "BUY"}))
    assert t.need_book == {"a", "b"}
    t.forget("a")
    assert t.need_book == {"b"}
