"""Market universe generator: build time, Gamma rendering, ground truth, random-walk speed.

    .venv/bin/python -m bench.universe_bench [sizes...]     (default: 300 2000 20000)

Prints one row per universe size; step() figures are moves/s (one move = one PriceChange
carrying both tokens' level changes), first on a fresh walk (message cache cold), then warm.
"""

from __future__ import annotations

import sys
import time

from standins.universe import Universe


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(sizes: list[int]) -> None:
    print(f"{'events':>7} {'markets':>8} {'covers':>7} {'profit':>6} {'build s':>8} {'gamma s':>8} "
          f"{'gamma2 ms':>9} {'truth s':>8} {'cold mv/s':>10} {'warm mv/s':>10} {'add_ev ms':>9}")
    for n in sizes:
        u, build = timed(lambda: Universe(seed=7, n_events=n))
        _, gamma = timed(u.gamma_events)
        _, gamma2 = timed(u.gamma_events)
        gt, truth = timed(u.ground_truth)
        moves = 100_000
        out, cold = timed(lambda: u.step(moves))
        out2, warm = timed(lambda: u.step(moves))
        _, add = timed(lambda: u.add_events(1))
        print(f"{n:>7} {len(u.token_ids()) // 2:>8} {len(gt.covers):>7} {len(gt.profitable):>6} {build:>8.2f} "
              f"{gamma:>8.2f} {gamma2 * 1000:>9.2f} {truth:>8.2f} {len(out) / cold:>10.0f} {len(out2) / warm:>10.0f} "
              f"{add * 1000:>9.0f}")


if __name__ == "__main__":
    main([int(x) for x in sys.argv[1:]] or [300, 2000, 20_000])
