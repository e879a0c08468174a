"""The CLOB stand-in's sustained update rate: to one client and to 20 clients.

A plain websockets + orjson client subscribes to all YES tokens (one connection, or split
over 20); the server's price walk runs flat out; we count price levels received for
subscribed tokens over a fixed window.

    .venv/bin/python -m bench.clob_rate [--events 2700] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import websockets

from bench.clob_process import ClobProcess


async def client(url: str, tokens: list[str], seconds: float, counts: list[int]) -> None:
    async with websockets.connect(url, max_size=2**24, ping_interval=None, compression=None) as ws:
        await ws.send(orjson.dumps({"type": "market", "assets_ids": tokens, "initial_dump": False}).decode())
        subscribed = set(tokens)
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            data = orjson.loads(frame)
            for msg in data if isinstance(data, list) else [data]:
                for ch in msg.get("price_changes", ()):
                    if ch["asset_id"] in subscribed:
                        n += 1
        counts.append(n)


async def measure(url: str, tokens: list[str], n_clients: int, seconds: float) -> float:
    per = [tokens[i::n_clients][:500] for i in range(n_clients)] if n_clients > 1 else [tokens[:500]]
    counts: list[int] = []
    await asyncio.gather(*(client(url, t, seconds, counts) for t in per))
    return sum(counts) / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2700)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=200_000)
    a = ap.parse_args()
    server = ClobProcess(a.events, a.rate)
    try:
        tokens = [y for _m, y, _n in server.yes_tokens]
        server.cmd("resume")
        one = asyncio.run(measure(server.url, tokens, 1, a.seconds))
        twenty = asyncio.run(measure(server.url, tokens, 20, a.seconds))
        server.cmd("pause")
    finally:
        server.close()
    print(f"universe {a.events} events, {len(tokens)} YES tokens; walk asked for {a.rate:,.0f} moves/s")
    print(f"1 client  (500 tokens):            {one:>10,.0f} updates/s")
    print(f"20 clients ({min(len(tokens), 10000)} tokens, <=500 each): {twenty:>10,.0f} updates/s")


if __name__ == "__main__":
    main()
