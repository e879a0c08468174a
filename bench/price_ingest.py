"""Price ingest: 10,000 tokens over 20 shards, the CLOB stand-in (own process) at full rate.

In one run: updates/s through the Bytewax price source (PriceShardSource → a counting
sink) and the raw limit (plain websockets + orjson clients on the same shards), and their
ratio (goal: the source delivers >= 25 % of the raw rate), plus the largest coalescing
queue depth seen (bounded by the shard's tokens).

    .venv/bin/python -m bench.price_ingest [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from datetime import timedelta

import bytewax.operators as op
import redis
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from bench.clob_process import ClobProcess
from bench.clob_rate import measure
from connectors.clob.source import PriceShardSource
from connectors.redis.server import EmbeddedRedis
from connectors.redis.token_registry import TokenRegistry
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import Market


class Count(DynamicSink):
    def __init__(self) -> None:
        self.n = 0
        self.first = 0.0

    def build(self, step_id, worker_index, worker_count):  # noqa: ANN001, ANN201
        outer = self

        class Part(StatelessSinkPartition):
            def write_batch(self, items):  # noqa: ANN001, ANN202
                if outer.first == 0.0:
                    outer.first = time.monotonic()
                outer.n += len(items)

        return Part()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=200_000)
    a = ap.parse_args()
    server = ClobProcess(2700, a.rate)
    try:
        tokens = server.yes_tokens[:10_000]
        with EmbeddedRedis() as rs:
            reg = TokenRegistry(redis.Redis.from_url(rs.url), "bench", 20, 500)
            reg.add_markets(Market(id=m, event_id="", question="", slug="", condition_id="", yes_token=y, no_token=n)
                            for m, y, n in tokens)
            sink = Count()
            flow = Dataflow("ingest")
            stop = threading.Event()
            source = PriceShardSource(server.url, rs.url, key_prefix="bench", max_connections=20,
                                      tokens_per_connection=500, queue_max=10_000, ping_interval=10.0,
                                      stall_timeout=30.0, stop=stop, metrics=MetricGroup("ws"), stagger=0.05)
            prices = op.input("prices", flow, source)
            op.output("count", prices, sink)
            warm = 3.0
            server.cmd("resume")
            marks: dict[str, float] = {}

            def timing() -> None:
                time.sleep(warm)
                marks["n0"], marks["t0"] = sink.n, time.monotonic()
                time.sleep(a.seconds)
                marks["n1"], marks["t1"] = sink.n, time.monotonic()
                marks["parsed"] = sum(c.updates for c in source.clients.values())
                stop.set()

            threading.Thread(target=timing, daemon=True).start()
            run_main(flow, epoch_interval=timedelta(milliseconds=500))
            source_rate = (marks["n1"] - marks["n0"]) / (marks["t1"] - marks["t0"])
            depth = max(c.max_depth for c in source.clients.values())
            coalesced = sum(c.coalesced for c in source.clients.values())
            raw_rate = asyncio.run(measure(server.url, [y for _m, y, _n in tokens], 20, a.seconds))
        server.cmd("pause")
    finally:
        server.close()
    print(f"10,000 YES tokens over 20 shards of 500; stand-in walk asked for {a.rate:,.0f} moves/s")
    print(f"Bytewax price source: {source_rate:>10,.0f} updates/s delivered to the flow "
          f"({coalesced:,} coalesced, max queue depth {depth} tokens)")
    print(f"raw websockets+orjson: {raw_rate:>9,.0f} updates/s")
    print(f"ratio source/raw: {source_rate / raw_rate:.2f} (goal >= 0.25)")


if __name__ == "__main__":
    main()
