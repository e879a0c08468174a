"""Cost of one re-pricing: `evaluate` + `quote_changed`, the reference copy of the old pricing
(tests/pricing_reference.py) against the live `operators.pricing`, on the same inputs.

It builds a realistic mix of covers (default 20,000; 88 % two-leg pairs, the rest 3–13-leg
ALL_YES / ALL_NO baskets; ~10 % of the pairs are LLM covers; ~5 % of all covers profitable at
the top of book; ~20 % of the markets charge taker fees, with exponent 1 or 2; ticks 0.01 or
0.001; minimum orders; end dates), each leg's YES token with 10-level books on both sides, and
per cover a previously published quote (the same books with another top size). A call is what
the join does on a price update: `evaluate` on the cover's quotes and, when a quote comes back,
`quote_changed` against the published one. Both implementations run over every cover,
interleaved old / new / old / new ... (`--rounds`, default 5), for all covers, then for the
unprofitable ones (the walk stops at the top of book) and the profitable ones (it walks the
depth) separately. It prints CPU µs per call (best round and median) and the new/old ratio. It
asserts nothing; the differential test in tests/test_pricing_props.py checks that both give
identical quotes.

    .venv/bin/python -m bench.pricing_cost [--covers 20000] [--rounds 5] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from operators import pricing as new  # noqa: E402
from polyalphascan.records import CoverKind, CoverSpec, Leg, MarketTerms, PortfolioQuote, PriceUpdate, Side  # noqa: E402
from tests import pricing_reference as old  # noqa: E402

MIN_COVERAGE = 0.85
MAX_COST = 1.5
LEVELS = 10
Case = tuple[CoverSpec, dict[str, PriceUpdate], PortfolioQuote | None]


def terms_for(rng: random.Random) -> MarketTerms:
    """Mostly fee-free; a fifth charge fees (exponent 1 or 2); some on a 0.001 tick."""
    tick = 0.001 if rng.random() < 0.1 else 0.01
    end = f"2027-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z" if rng.random() < 0.9 else None
    r = rng.random()
    if r < 0.1:
        return MarketTerms(tick, 5.0, True, 0.05, 1.0, "economics", neg_risk=rng.random() < 0.5, end_date=end)
    if r < 0.2:
        return MarketTerms(tick, 5.0, True, 0.25, 2.0, "crypto", neg_risk=rng.random() < 0.5, end_date=end)
    return MarketTerms(tick, rng.choice((1.0, 5.0)), neg_risk=rng.random() < 0.5, end_date=end)


def side_levels(rng: random.Random, top: float, step: float, tick: float) -> tuple[float, ...]:
    """`LEVELS` levels from `top`, one to three ticks apart, best first (flat price, size)."""
    out: list[float] = []
    p = top
    for _ in range(LEVELS):
        if not 0.0 < p < 1.0:
            break
        out += [round(p, 6), float(rng.choice((5, 10, 20, 50, 100, 250, 500)))]
        p += step * tick * rng.randint(1, 3)
    return tuple(out)


def yes_book(rng: random.Random, token: str, side: Side, pay: float, tick: float, ts: int) -> PriceUpdate:
    """A YES book whose leg (`side`) pays `pay` at the top: a YES leg the YES ask, a NO leg
    1 − the YES bid."""
    if side is Side.YES:
        asks = side_levels(rng, pay, 1.0, tick)
        bids = side_levels(rng, pay - tick * rng.randint(1, 3), -1.0, tick)
    else:
        bids = side_levels(rng, 1.0 - pay, -1.0, tick)
        asks = side_levels(rng, 1.0 - pay + tick * rng.randint(1, 3), 1.0, tick)
    return PriceUpdate(token, bids[0] if bids else None, asks[0] if asks else None, bids[1] if bids else None,
                       asks[1] if asks else None, ts, ts + 3, 0, False, bids, asks, 0.0)


def leg_prices(rng: random.Random, n: int, cost: float, tick: float) -> list[float]:
    """`n` prices on the tick grid summing to about `cost`, each within (0, 1)."""
    w = [rng.uniform(0.5, 1.5) for _ in range(n)]
    total = sum(w)
    return [min(0.99, max(tick, round(cost * x / total / tick) * tick)) for x in w]


def make_cover(rng: random.Random, k: int) -> tuple[CoverSpec, list[Side]]:
    if rng.random() < 0.88:
        n, payout = 2, 1.0
        llm = rng.random() < 0.1
        kind = CoverKind.LLM if llm else rng.choice((CoverKind.TIMEFRAME, CoverKind.THRESHOLD))
        sides = [Side.YES, Side.NO]
    else:
        n = rng.randint(3, 13)
        llm = False
        kind = rng.choice((CoverKind.ALL_YES, CoverKind.ALL_NO))
        payout = 1.0 if kind is CoverKind.ALL_YES else float(n - 1)
        sides = [Side.YES if kind is CoverKind.ALL_YES else Side.NO] * n
    legs = tuple(Leg(f"m{k}-{i}", sd, f"y{k}-{i}", f"n{k}-{i}", f"Question {k}-{i}?", f"e{k}", terms_for(rng))
                 for i, sd in enumerate(sides))
    spec = CoverSpec(kind, legs, not llm, rng.uniform(0.9, 0.99) if llm else 1.0, payout, "because")
    return spec, sides


def make_case(rng: random.Random, k: int) -> Case:
    spec, sides = make_cover(rng, k)
    margin = -rng.uniform(0.005, 0.04) if rng.random() < 0.015 else rng.uniform(0.005, 0.08)
    ticks = [leg.terms.tick for leg in spec.legs]
    prices = leg_prices(rng, len(spec.legs), spec.payout * (1.0 + margin), max(ticks))
    ts = 1_790_000_000_000 + k
    now: dict[str, PriceUpdate] = {}
    before: dict[str, PriceUpdate] = {}
    for leg, sd, p, tick in zip(spec.legs, sides, prices, ticks):
        u = yes_book(rng, leg.yes_token, sd, p, tick, ts)
        now[leg.yes_token] = u
        before[leg.yes_token] = u._replace(ask_size=(u.ask_size or 0.0) + 1.0, bid_size=(u.bid_size or 0.0) + 1.0,
                                           exchange_ts_ms=ts - 1000)
    published, _ = old.evaluate(spec, before, min_coverage=MIN_COVERAGE, max_cost=MAX_COST)
    return spec, now, published


Evaluate = Callable[..., tuple[PortfolioQuote | None, str]]
Changed = Callable[[PortfolioQuote, PortfolioQuote], bool]


def run(cases: list[Case], evaluate: Evaluate, changed: Changed) -> float:
    """CPU seconds of this process (not wall time: the cores may be shared) for one join
    re-pricing per case: evaluate, then compare with the published quote."""
    gc.collect()
    t0 = time.process_time()
    for spec, quotes, published in cases:
        quote, _ = evaluate(spec, quotes, min_coverage=MIN_COVERAGE, max_cost=MAX_COST)
        if quote is not None and published is not None:
            changed(published, quote)
    return time.process_time() - t0


def compare(name: str, cases: list[Case], rounds: int) -> None:
    if not cases:
        print(f"{name:<14} (no covers)")
        return
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(rounds):  # ABAB...
        times["old"].append(run(cases, old.evaluate, old.quote_changed) / len(cases) * 1e6)
        times["new"].append(run(cases, new.evaluate, new.quote_changed) / len(cases) * 1e6)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name:<14} {len(cases):>7}  old {best['old']:6.2f} µs (median {med['old']:6.2f})  "
          f"new {best['new']:6.2f} µs (median {med['new']:6.2f})  "
          f"new/old {best['new'] / best['old']:.3f} (median {med['new'] / med['old']:.3f})")


def classify(cases: list[Case]) -> dict[str, list[Case]]:
    """By what the old pricing gives: profitable at the top of book, or not (incl. filtered)."""
    out: dict[str, list[Case]] = {"all": cases, "unprofitable": [], "profitable": []}
    for case in cases:
        q, _ = old.evaluate(case[0], case[1], min_coverage=MIN_COVERAGE, max_cost=MAX_COST)
        out["profitable" if q is not None and q.profit > old.EPS else "unprofitable"].append(case)
    return out


def describe(groups: Mapping[str, list[Case]]) -> str:
    cases = groups["all"]
    two = sum(1 for c in cases if len(c[0].legs) == 2)
    sized = 0
    for spec, quotes, _ in groups["profitable"]:
        q, _ = old.evaluate(spec, quotes, min_coverage=MIN_COVERAGE, max_cost=MAX_COST)
        sized += q is not None and q.size_at_profit > 0
    return (f"{len(cases)} covers: {two / len(cases):.0%} two-leg, {len(groups['profitable'])} profitable at the "
            f"top ({sized} with a size past the minimum order)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--covers", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args: Any = ap.parse_args(argv)
    rng = random.Random(args.seed)
    cases = [make_case(rng, k) for k in range(args.covers)]
    rng.shuffle(cases)
    groups = classify(cases)
    print(describe(groups))
    print(f"µs per call (evaluate + quote_changed), best of {args.rounds} interleaved rounds")
    for name, subset in groups.items():
        compare(name, subset, args.rounds)


if __name__ == "__main__":
    main()
