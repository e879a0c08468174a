"""Join + Redis sink: latency and work per price update with 1,000 and 100,000 portfolios.

Each run registers N two-leg portfolios over N/5 YES tokens (every token is held by ~10
portfolios at both sizes), gives every token a first price, waits until all N portfolios are
in Redis, then sends price updates at a fixed rate (default 2,000/s) stamped with their send
time. It prints p50/p99 latency from the update being sent to the re-priced portfolio landing
in Redis, and the work per update (CPU time and re-pricings), side by side for both sizes.
Goals: p99 <= 50 ms at 2,000 updates/s; work per update flat (within 1.5x) from 1k to 100k.

With `--depth-compare` it runs the same load (`--portfolios`, default 1,000) twice in one
process, side by side: updates carrying only the top of book, priced from the top of book
(`depth=False`: the pricing before issue 16, size = the smallest top size), and updates
carrying `BOOK_DEPTH` levels per side, priced by the depth walk (the profitable size net of
fees, VWAP, the 10/100/1,000 curve, the order per leg). About half the baskets of this load
are profitable at the top (a real book has few), so the walk runs deep often: a harsh case. Goal: CPU per update
with depth within 1.3x of top of book.

With `--processes 2` it instead runs the same load (`--portfolios`, default 1,000) in one
process and then in a cluster of two (`cluster_main`, one worker each, the updates split
between them), side by side: the scale-out of the keyed join and its sink.

    .venv/bin/python -m bench.portfolio_latency [--rate 2000] [--seconds 10] [--fanout 10]
    .venv/bin/python -m bench.portfolio_latency --processes 2 [--portfolios 1000]
    .venv/bin/python -m bench.portfolio_latency --depth-compare [--portfolios 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.testing import TestingSource, cluster_main, run_main

from connectors.clob.protocol import BOOK_DEPTH
from connectors.redis.portfolio_sink import PortfolioSink
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis, free_port
from operators.portfolio_join import portfolio_join
from polyalphascan.metrics import MetricGroup
from flows.runtime import tune_gc
from polyalphascan.records import CoverKind, CoverSpec, Leg, PriceUpdate, Side


EPOCH_MS = 100
JOIN_SHARDS = 1  # what JOIN_SHARDS=0 (the default) gives one worker


def covers_for(n: int, fanout: int = 10) -> tuple[list[CoverSpec], list[str]]:
    """n two-leg portfolios over 2n/fanout tokens: each token is held by ~fanout portfolios."""
    tokens = [f"t{i}" for i in range(max(2, 2 * n // fanout))]
    rng = random.Random(n)
    out: dict[str, CoverSpec] = {}
    while len(out) < n:
        a, b = rng.sample(range(len(tokens)), 2)
        legs = (Leg(f"m{a}", Side.YES, tokens[a], f"n{a}", f"Q{a}?"), Leg(f"m{b}", Side.NO, tokens[b], f"n{b}", f"Q{b}?"))
        spec = CoverSpec(CoverKind.TIMEFRAME, legs, True, 1.0)
        out[spec.id] = spec
    return list(out.values()), tokens


class Ticks(DynamicSource):
    def __init__(self, tokens: list[str], rate: float, seconds: float, ready: threading.Event, depth: int = 0) -> None:
        self.tokens, self.rate, self.seconds, self.ready = tokens, rate, seconds, ready
        self.depth = depth
        self.sent = 0

    def build(self, step_id, worker_index, worker_count):  # noqa: ANN001, ANN201
        outer = self
        rng = random.Random(1 + worker_index)
        mine = outer.tokens[worker_index::worker_count]  # each worker sends its share of the load
        rate = outer.rate / worker_count

        depth = outer.depth

        def book(bid: float) -> PriceUpdate:
            if not depth:
                return PriceUpdate("", bid, round(bid + 0.02, 2), 100.0, 100.0)
            bids: list[float] = []
            asks: list[float] = []
            for k in range(depth):  # a book one tick per level, sizes like real ones (tens to hundreds)
                bids += (round(bid - k / 100, 2), float(rng.randint(10, 300)))
                asks += (round(bid + 0.02 + k / 100, 2), float(rng.randint(10, 300)))
            return PriceUpdate("", bids[0], asks[0], bids[1], asks[1], 0, 0, -1, False, tuple(bids), tuple(asks), 0.01)

        # books made ahead (both modes alike), so generating them is not part of the CPU measured
        pool = [book(rng.randint(20, 70) / 100) for _ in range(512)]

        def quote(tok: str) -> PriceUpdate:
            now = int(time.time() * 1000)
            return pool[rng.randrange(512)]._replace(token_id=tok, exchange_ts_ms=now, recv_ts_ms=now)

        class Part(StatelessSourcePartition):
            def __init__(self) -> None:
                self.initial = [quote(t) for t in mine]
                self.start = 0.0
                self.due = 0.0

            def next_batch(self):  # noqa: ANN202
                if self.initial:
                    out, self.initial = self.initial[:2000], self.initial[2000:]
                    return out
                if not outer.ready.is_set():
                    return []
                now = time.monotonic()
                if not self.start:
                    self.start = self.due = now
                if now - self.start > outer.seconds:
                    raise StopIteration
                out = []
                while self.due <= now:
                    out.append(quote(rng.choice(mine)))
                    self.due += 1.0 / rate
                outer.sent += len(out)
                return out

            def next_awake(self):  # noqa: ANN202
                return datetime.now(timezone.utc) + timedelta(milliseconds=2)

        return Part()


def run(n: int, rate: float, seconds: float, redis_url: str, fanout: int = 10,
        cluster: tuple[list[str], int] | None = None, depth: int = 0) -> dict[str, Any]:
    """One measurement in this process; with `cluster` (addresses, process id) this process is
    one member of a cluster running the same flow (the caller has flushed Redis)."""
    client = redis.Redis.from_url(redis_url)
    if cluster is None:
        client.flushall()
    sink_metrics = MetricGroup("sink", window=200_000)  # keep every latency sample of the run
    join_metrics = MetricGroup("portfolios")
    covers, tokens = covers_for(n, fanout)
    ready = threading.Event()
    ticks = Ticks(tokens, rate, seconds, ready, depth)
    marks: dict[str, float] = {}
    keys = RedisKeys("lat")

    def watch() -> None:
        deadline = time.monotonic() + 300
        while client.zcard(keys.ranking) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        sink_metrics.reset()
        join_metrics.reset()
        marks["cpu0"], marks["wall0"] = time.process_time(), time.monotonic()
        ready.set()

    flow = Dataflow("latency")
    prices = op.input("prices", flow, ticks)
    cover_stream = op.input("covers", flow, TestingSource(covers, batch_size=1000))
    closed = op.filter("no_closures", cover_stream, lambda _c: False)
    changes = portfolio_join("join", prices, cover_stream, op.map("as_closed", closed, lambda c: c),
                             min_coverage=0.0, max_cost=100.0, metrics=join_metrics, depth=depth > 0,
                             shards=JOIN_SHARDS if cluster is None else 4 * len(cluster[0]),  # as JOIN_SHARDS=0
                             recoverable=False)  # production without RECOVERY_DIR
    op.output("redis", changes, PortfolioSink(redis_url, "lat", metrics=sink_metrics))
    threading.Thread(target=watch, daemon=True).start()
    if cluster is None:
        run_main(flow, epoch_interval=timedelta(milliseconds=EPOCH_MS))
    else:
        cluster_main(flow, cluster[0], cluster[1], epoch_interval=timedelta(milliseconds=EPOCH_MS))
    cpu = time.process_time() - marks["cpu0"]
    snap = sink_metrics.snapshot()
    lat = sorted(sink_metrics._samples.get("latency_ms", []))  # noqa: SLF001
    repriced = join_metrics.get("repriced")
    client.close()
    return {
        "updates": ticks.sent,
        "latencies": lat,
        "cpu": cpu,
        "repriced": repriced,
        "written": snap.get("written", 0),
    }


def summary(parts: list[dict[str, Any]]) -> dict[str, float]:
    """Figures over one run's processes: latency percentiles of all writes, work per update."""
    lat = sorted(x for p in parts for x in p["latencies"])
    updates = sum(p["updates"] for p in parts)
    return {
        "updates": updates,
        "p50": lat[len(lat) // 2] if lat else float("nan"),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan"),
        "cpu_us_per_update": sum(p["cpu"] for p in parts) / max(updates, 1) * 1e6,
        "repriced_per_update": sum(p["repriced"] for p in parts) / max(updates, 1),
    }


def run_cluster(processes: int, n: int, rate: float, seconds: float, redis_url: str, fanout: int) -> dict[str, float]:
    """The same measurement with the flow spread over `processes` local processes."""
    redis.Redis.from_url(redis_url).flushall()
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    with tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"proc{i}.json") for i in range(processes)]
        children = [subprocess.Popen([sys.executable, "-m", "bench.portfolio_latency", "--member", str(i),
                                      "--addresses", addresses, "--out", outs[i], "--redis", redis_url,
                                      "--portfolios", str(n), "--rate", str(rate), "--seconds", str(seconds),
                                      "--fanout", str(fanout)])
                    for i in range(processes)]
        for child in children:
            if child.wait(600) != 0:
                raise SystemExit(f"cluster member exited with {child.returncode}")
        parts = []
        for out in outs:
            with open(out) as fh:
                parts.append(json.load(fh))
    return summary(parts)


def print_rows(title: str, rows: list[tuple[str, dict[str, float]]]) -> None:
    print(title)
    print(f"{'run':>18}{'updates':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/upd':>12}{'reprices/upd':>14}")
    for name, r in rows:
        print(f"{name:>18}{r['updates']:>9,.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['cpu_us_per_update']:>12.0f}"
              f"{r['repriced_per_update']:>14.2f}")


def main() -> None:
    tune_gc()
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--fanout", type=int, default=10, help="portfolios holding each token")
    ap.add_argument("--processes", type=int, default=0, help="compare 1 process with this many")
    ap.add_argument("--portfolios", type=int, default=1000, help="with --processes: how many")
    ap.add_argument("--depth-compare", action="store_true", help="top of book vs depth-aware pricing")
    ap.add_argument("--member", type=int, help=argparse.SUPPRESS)  # a cluster member (internal)
    ap.add_argument("--addresses", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--redis", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.member is not None:
        part = run(a.portfolios, a.rate, a.seconds, a.redis, a.fanout, cluster=(a.addresses.split(";"), a.member))
        with open(a.out, "w") as fh:
            json.dump(part, fh)
        return
    head = (f"price updates at {a.rate:,.0f}/s for {a.seconds:g} s, ~{a.fanout} portfolios per token; "
            "latency = update sent -> portfolio in Redis")
    if a.depth_compare:
        with EmbeddedRedis() as rs:
            top = summary([run(a.portfolios, a.rate, a.seconds, rs.url, a.fanout)])
            deep = summary([run(a.portfolios, a.rate, a.seconds, rs.url, a.fanout, depth=BOOK_DEPTH)])
        print_rows(f"{head}; {a.portfolios:,} portfolios",
                   [("top of book", top), (f"depth {BOOK_DEPTH} levels", deep)])
        print(f"depth / top of book: CPU per update {deep['cpu_us_per_update'] / top['cpu_us_per_update']:.2f}x "
              f"(goal <= 1.3x), p99 {deep['p99'] / top['p99']:.2f}x")
        return
    if a.processes:
        with EmbeddedRedis() as rs:
            one = summary([run(a.portfolios, a.rate, a.seconds, rs.url, a.fanout)])
            many = run_cluster(a.processes, a.portfolios, a.rate, a.seconds, rs.url, a.fanout)
        print_rows(f"{head}; {a.portfolios:,} portfolios",
                   [("1 process", one), (f"{a.processes} processes", many)])
        print(f"{a.processes} processes / 1: p99 {many['p99'] / one['p99']:.2f}x, "
              f"CPU per update {many['cpu_us_per_update'] / one['cpu_us_per_update']:.2f}x")
        return
    with EmbeddedRedis() as rs:
        small = summary([run(1_000, a.rate, a.seconds, rs.url, a.fanout)])
        large = summary([run(100_000, a.rate, a.seconds, rs.url, a.fanout)])
    print_rows(head, [("1,000 portfolios", small), ("100,000 portfolios", large)])
    print(f"work per update 100k/1k: CPU {large['cpu_us_per_update'] / small['cpu_us_per_update']:.2f}x, "
          f"reprices {large['repriced_per_update'] / small['repriced_per_update']:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
