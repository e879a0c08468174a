"""Bounded-parallel LLM calls: 150 target groups against the OpenAI-compatible stand-in at a
fixed latency, with concurrency 1, 5 and 10 in one run, through the real operator path
(AsyncRunner + ImplicationClient + openai SDK).

Prints wall times, the speed-up over serial and each run's ratio to the ideal
ceil(150 / C) x latency (goal: >= 0.9 of ideal at C = 5 and 10).

    .venv/bin/python -m bench.llm_parallel [--groups 150] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import math
import time

from connectors.llm.client import ImplicationClient, LLMCache
from connectors.llm.runner import AsyncRunner
from polyalphascan.metrics import MetricGroup
from standins.llm_server import LLMFaults, LLMServer
from standins.universe import Universe


def run(server: LLMServer, targets: list[tuple[str, list[str]]], concurrency: int) -> tuple[float, int]:
    server.reset_stats()
    client = ImplicationClient(base_url=server.url, api_key="standin-placeholder-key", model="standin/bench",
                               cache=LLMCache(MetricGroup("cache")),  # fresh cache: every call is real
                               metrics=MetricGroup("llm"))
    runner = AsyncRunner(concurrency)  # one runner per run, stopped at its end
    try:
        t0 = time.perf_counter()
        futures = [runner.submit(lambda t=t, c=c: client.ask(t, c)) for t, c in targets]
        for f in futures:
            f.result(timeout=600)
        return time.perf_counter() - t0, server.stats.peak_in_flight
    finally:
        runner.stop(cleanup=client.aclose)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=150)
    ap.add_argument("--latency", type=float, default=0.2)
    a = ap.parse_args()
    universe = Universe(seed=3, n_events=a.groups + 10)
    titles = [e["title"] for e in universe.gamma_events()]
    targets = [(titles[i], titles[i + 1 : i + 11]) for i in range(a.groups)]
    with LLMServer(universe, faults=LLMFaults(latency_s=a.latency)) as server:
        results = {c: run(server, targets, c) for c in (1, 5, 10)}
    serial = results[1][0]
    print(f"{a.groups} groups, stand-in latency {a.latency * 1000:.0f} ms")
    print(f"{'C':>3}{'wall s':>9}{'ideal s':>9}{'ideal/wall':>12}{'speed-up':>10}{'peak':>6}")
    for c, (wall, peak) in results.items():
        ideal = math.ceil(a.groups / c) * a.latency
        print(f"{c:>3}{wall:>9.2f}{ideal:>9.2f}{ideal / wall:>12.3f}{serial / wall:>9.1f}x{peak:>6}")


if __name__ == "__main__":
    main()
