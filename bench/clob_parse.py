"""CPU per CLOB market-channel frame: `BookTracker.handle`, the optimised tracker (NEW,
`connectors.clob.protocol`) against the frozen copy of the one before (OLD, `tests.clob_reference`).

The stream is built once, before any timing, with the stand-in's frame builders
(`book_message`, `price_change_message`): `--tokens` subscribed YES tokens, each with a
`book` snapshot of 10–30 levels per side (0.01 tick), sent `--book-passes` times (the later
passes are refreshes that replace the book and, changing nothing, emit nothing), then `--changes` `price_change` frames
like the stand-in's: one entry for a YES token (a size change of an existing level near the
top, a removal or a new level, its `best_bid` / `best_ask` the true top after it) and one for
its NO complement (in `complements`, so skipped). Frames are text (`str`), as the socket
hands them over.

Each round feeds the whole stream to a fresh tracker and times the `book` frames and the
`price_change` frames separately, in CPU time of the thread (`time.thread_time`: on shared
cores, the time the process waits for a core is not counted); rounds alternate OLD, NEW, OLD,
NEW, ... (`--rounds` pairs, at least 3), and the best round of each is printed in µs per frame and per emitted update,
with the OLD / NEW ratio. It also says whether both emitted the same updates and counted the
same errors and events. Prints figures; asserts nothing.

    .venv/bin/python -m bench.clob_parse [--tokens 2000] [--changes 50000] [--rounds 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from connectors.clob import protocol as new
from standins.clob_server import book_message, price_change_message
from standins.protocols import BookSnapshot, LevelChange, PriceChange
from tests import clob_reference as old

T0 = 1_786_728_432_337  # epoch ms of the first frame
TICK = 0.01


@dataclass
class Stream:
    yes: list[str]
    no: list[str]
    books: list[str]
    changes: list[str]


def _token(rng: random.Random) -> str:
    return str(rng.randrange(10**76, 10**77))


def _initial_book(rng: random.Random) -> tuple[dict[int, float], dict[int, float]]:
    """Bids and asks in ticks (price = ticks / 100) around a mid on the grid."""
    mid = rng.randrange(32, 69)
    bids = {mid - 1 - k: float(rng.randrange(1, 5000)) for k in range(rng.randrange(10, 31))}
    asks = {mid + 1 + k: float(rng.randrange(1, 5000)) for k in range(rng.randrange(10, 31))}
    return bids, asks


def _pick_existing(rng: random.Random, side: dict[int, float], is_bid: bool) -> int:
    """A level near the top more often than a deep one."""
    ordered = sorted(side, reverse=is_bid)
    return ordered[min(int(rng.expovariate(1 / 4)), len(ordered) - 1)]


def _step(rng: random.Random, side: dict[int, float], other: dict[int, float], is_bid: bool) -> tuple[int, float]:
    """One level change on `side` (applied to it): (price in ticks, new size; 0 removes)."""
    r = rng.random()
    if r < 0.2 and len(side) > 3:
        p = _pick_existing(rng, side, is_bid)
        del side[p]
        return p, 0.0
    if r < 0.4:
        best, limit = (max(side), min(other)) if is_bid else (min(side), max(other))
        p = best + (rng.randrange(-8, 2) if is_bid else rng.randrange(-1, 9))
        if 1 <= p <= 99 and (p < limit if is_bid else p > limit):
            side[p] = float(rng.randrange(1, 5000))
            return p, side[p]
    p = _pick_existing(rng, side, is_bid)
    side[p] = float(rng.randrange(1, 5000))
    return p, side[p]


def build(n_tokens: int, n_changes: int, seed: int) -> Stream:
    rng = random.Random(seed)
    yes = [_token(rng) for _ in range(n_tokens)]
    no = [_token(rng) for _ in range(n_tokens)]
    model = [_initial_book(rng) for _ in range(n_tokens)]
    books = []
    for i, (bids, asks) in enumerate(model):
        snap = BookSnapshot(yes[i], f"0x{i:064x}", tuple((p * TICK, s) for p, s in bids.items()),
                            tuple((p * TICK, s) for p, s in asks.items()), TICK)
        books.append(orjson.dumps(book_message(snap, str(T0 + i))).decode())
    changes = []
    for k in range(n_changes):
        i = rng.randrange(n_tokens)
        bids, asks = model[i]
        is_bid = rng.random() < 0.5
        p, s = _step(rng, bids, asks, True) if is_bid else _step(rng, asks, bids, False)
        bb, ba = max(bids) * TICK, min(asks) * TICK
        price = p * TICK
        entries = (LevelChange(yes[i], price, s, "BUY" if is_bid else "SELL", bb, ba),
                   LevelChange(no[i], 1 - price, s, "SELL" if is_bid else "BUY", 1 - ba, 1 - bb))
        msg = price_change_message(PriceChange(f"0x{i:064x}", entries), str(T0 + n_tokens + k))
        changes.append(orjson.dumps(msg).decode())
    return Stream(yes, no, books, changes)


def _feed(handle: Callable[[str, int], list[Any]], frames: list[str], keep: list[Any] | None) -> tuple[float, int]:
    """CPU seconds (this thread's) spent in `handle` over `frames`, and the updates emitted."""
    n = 0
    gc.collect()
    t0 = time.thread_time()
    for j, f in enumerate(frames):
        out = handle(f, T0 + j)
        n += len(out)
        if keep is not None:
            keep.append(out)
    return time.thread_time() - t0, n


def run(module: Any, stream: Stream, book_passes: int, keep: list[Any] | None = None
        ) -> tuple[float, int, float, int, Any]:
    t = module.BookTracker(0)
    t.subscribed, t.complements = set(stream.yes), set(stream.no)
    tb, nb = _feed(t.handle, stream.books * book_passes, keep)
    tc, nc = _feed(t.handle, stream.changes, keep)
    return tb, nb, tc, nc, (dict(t.errors), dict(t.events), t.top)


def _line(name: str, secs: float, frames: int, updates: int) -> str:
    per_update = f"{secs / updates * 1e6:7.2f} µs/update" if updates else "no update"
    return f"  {name:4s} {secs / frames * 1e6:7.2f} µs/frame  {per_update}  ({updates} updates, {frames} frames)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--changes", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3, help="OLD/NEW pairs (ABAB...), at least 3")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--book-passes", type=int, default=3, help="times the book snapshots are sent (1 + refreshes)")
    args = ap.parse_args()
    stream = build(args.tokens, args.changes, args.seed)
    kept: dict[str, list[Any]] = {"OLD": [], "NEW": []}
    best: dict[str, list[float]] = {}
    counts: dict[str, tuple[int, int]] = {}
    state: dict[str, Any] = {}
    n_books = len(stream.books) * args.book_passes
    for r in range(max(3, args.rounds)):
        for name, module in (("OLD", old), ("NEW", new)):
            tb, nb, tc, nc, state[name] = run(module, stream, args.book_passes, kept[name] if r == 0 else None)
            prev = best.get(name, [float("inf")] * 2)
            best[name] = [min(prev[0], tb), min(prev[1], tc)]
            counts[name] = (nb, nc)
            print(f"round {r + 1} {name}: book {tb / n_books * 1e6:6.2f} µs/frame, "
                  f"price_change {tc / len(stream.changes) * 1e6:6.2f} µs/frame")
    same = kept["OLD"] == kept["NEW"] and state["OLD"] == state["NEW"]
    print(f"\n{args.tokens} tokens, {n_books} book frames ({args.book_passes} passes), {len(stream.changes)} "
          f"price_change frames (2 entries each, the NO one a complement); best of {max(3, args.rounds)} rounds each")
    for i, kind, n_frames in ((0, "book", n_books), (1, "price_change", len(stream.changes))):
        print(kind)
        for name in ("OLD", "NEW"):
            print(_line(name, best[name][i], n_frames, counts[name][i]))
        print(f"  OLD/NEW {best['OLD'][i] / best['NEW'][i]:.2f}x  (NEW takes {best['NEW'][i] / best['OLD'][i]:.0%} "
              f"of OLD's time)")
    print(f"\nidentical updates, errors, events and tops: {same}")


if __name__ == "__main__":
    main()
