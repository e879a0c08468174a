"""Incremental vs full Gamma polling over a 5,000-event universe, 10 new events per poll.

Prints events fetched and processed per poll for both modes side by side, and the ratio
(goal: incremental processes at most 1 % of what a full pass does).

    .venv/bin/python -m bench.poll_incremental [--events 5000] [--polls 5] [--new 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from connectors.gamma.changes import PollerState
from connectors.gamma.client import GammaClient
from connectors.gamma.poller import GammaPoller
from polyalphascan.metrics import MetricGroup
from standins.gamma_server import GammaServer
from standins.universe import Universe


def run(incremental: bool, n_events: int, polls: int, new: int) -> dict[str, float]:
    universe = Universe(seed=42, n_events=n_events)
    with GammaServer(universe) as server:
        group = MetricGroup("poller")
        client = GammaClient(server.url, stop=threading.Event(), metrics=group, min_interval=0.0)
        poller = GammaPoller(client, metrics=group, incremental=incremental, full_every=10_000)
        state = poller.poll(PollerState()).state  # the first poll reads everything in both modes
        fetched, processed, pages, secs, deltas = [], [], [], [], []
        for _ in range(polls):
            universe.add_events(new)
            t0 = time.perf_counter()
            r = poller.poll(state)
            secs.append(time.perf_counter() - t0)
            state = r.state
            fetched.append(r.fetched)
            processed.append(r.processed)
            pages.append(r.pages)
            deltas.append(len(r.deltas))
        poller.client.close()
    return {"fetched": statistics.mean(fetched), "processed": statistics.mean(processed),
            "pages": statistics.mean(pages), "deltas": statistics.mean(deltas), "seconds": statistics.mean(secs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--polls", type=int, default=5)
    ap.add_argument("--new", type=int, default=10)
    a = ap.parse_args()
    inc = run(True, a.events, a.polls, a.new)
    full = run(False, a.events, a.polls, a.new)
    print(f"universe {a.events} events, {a.new} new per poll, mean over {a.polls} polls")
    print(f"{'mode':<12}{'pages':>8}{'fetched':>10}{'processed':>11}{'deltas':>8}{'seconds':>9}")
    for name, r in (("incremental", inc), ("full", full)):
        print(f"{name:<12}{r['pages']:>8.1f}{r['fetched']:>10.0f}{r['processed']:>11.0f}{r['deltas']:>8.0f}{r['seconds']:>9.3f}")
    print(f"processed ratio incremental/full: {inc['processed'] / full['processed']:.4%} (goal <= 1%)")
    print(f"fetched ratio incremental/full:   {inc['fetched'] / full['fetched']:.4%}")
    print(f"time ratio incremental/full:      {inc['seconds'] / full['seconds']:.4f}")


if __name__ == "__main__":
    main()
