"""One CLOB frame with 20,000 distinct price levels: how long `BookTracker.handle` takes.

Three frames, each timed on a fresh tracker (after an empty `book` for the token): a
`price_change` adding 20,000 distinct levels (10,000 bids rising towards the middle, 10,000
asks falling towards it, so the top moves on every change — the worst case for a best price
recomputed per change), a `price_change` removing the best level 20,000 times over, and a
`book` snapshot of 20,000 levels. Prints the time per frame and per level (goal: < 50 ms a
frame; the depth cap keeps `MAX_LEVELS_PER_SIDE` levels per side).

    .venv/bin/python -m bench.clob_book [--levels 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from connectors.clob.protocol import BookTracker


def _tracker() -> BookTracker:
    t = BookTracker(0)
    t.subscribed = {"a"}
    t.handle(orjson.dumps({"event_type": "book", "asset_id": "a", "timestamp": "1", "bids": [], "asks": []}), 1)
    return t


def frames(n: int) -> dict[str, tuple[list[bytes], bytes]]:
    half = n // 2
    step = 0.5 / (half + 1)
    bids = [f"{(i + 1) * step:.8f}" for i in range(half)]  # rising: each a new best bid
    asks = [f"{1 - (i + 1) * step:.8f}" for i in range(half)]  # falling: each a new best ask
    changes = [{"asset_id": "a", "price": p, "size": "5", "side": "BUY"} for p in bids]
    changes += [{"asset_id": "a", "price": p, "size": "5", "side": "SELL"} for p in asks]
    adds = orjson.dumps({"event_type": "price_change", "timestamp": "2", "price_changes": changes})
    # a deep book, then remove its best level over and over (the top moves down every time)
    depth = [{"price": f"{(i + 1) * (1 / (n + 2)):.8f}", "size": "1"} for i in range(n)]
    deep = orjson.dumps({"event_type": "book", "asset_id": "a", "timestamp": "1", "bids": depth, "asks": []})
    removes = orjson.dumps({"event_type": "price_change", "timestamp": "2", "price_changes": [
        {"asset_id": "a", "price": lv["price"], "size": "0", "side": "BUY"} for lv in reversed(depth)]})
    book = orjson.dumps({"event_type": "book", "asset_id": "a", "timestamp": "3",
                         "bids": [{"price": p, "size": "1"} for p in bids],
                         "asks": [{"price": p, "size": "1"} for p in asks]})
    return {"price_change adding levels": ([], adds), "price_change removing the top": ([deep], removes),
            "book snapshot": ([], book)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for name, (setup, frame) in frames(args.levels).items():
        best = float("inf")
        out: Any = None
        for _ in range(args.repeat):
            t = _tracker()
            for f in setup:
                t.handle(f, 1)
            t0 = time.perf_counter()
            out = t.handle(frame, 5)
            best = min(best, time.perf_counter() - t0)
        print(f"{name:32s} {args.levels} levels: {best * 1000:8.1f} ms  ({best / args.levels * 1e6:.2f} µs/level)"
              f"  top={out[0][1:3] if out else None}")


if __name__ == "__main__":
    main()
