"""Alert delivery throughput and latency: N profitable changes written to the stream, three
sinks (webhook, Telegram, Discord stand-ins on loopback, answering at once), no rate limit:
alerts per second per sink and delivery latency (stream entry to the sink's 2xx) p50/p99.

    .venv/bin/python -m bench.alerts_delivery --n 2000            # one burst: throughput
    .venv/bin/python -m bench.alerts_delivery --n 300 --rate 50   # paced: latency at rest
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import redis
from aiohttp import web

from connectors.alerts.consumer import AlertService
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from polyalphascan.alert_settings import load_sinks
from polyalphascan.logs import configure_logging
from polyalphascan.metrics import MetricGroup
from polyalphascan.lives import percentile


async def main(n: int, rate: float) -> None:
    configure_logging("WARNING")
    counts = {"hook": 0, "phone": 0, "ops": 0}

    def handler(name: str, answer: web.Response):  # type: ignore[no-untyped-def]
        async def h(request: web.Request) -> web.Response:
            await request.read()
            counts[name] += 1
            return answer() if callable(answer) else answer
        return h

    app = web.Application()
    app.router.add_post("/hook", handler("hook", lambda: web.json_response({"ok": True})))
    app.router.add_post("/botT/sendMessage", handler("phone", lambda: web.json_response({"ok": True, "result": {}})))
    app.router.add_post("/discord", handler("ops", lambda: web.Response(status=204)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # noqa: SLF001
    fast = {"rate_per_second": 1000, "burst": 1000, "guaranteed_only": False}
    sinks = load_sinks(hook={"type": "webhook", "url": f"{base}/hook", **fast},
                       phone={"type": "telegram", "api_url": base, "bot_token": "T", "chat_id": "1", **fast},
                       ops={"type": "discord", "url": f"{base}/discord", **fast})
    with EmbeddedRedis() as server:
        keys = RedisKeys("pas")
        r = redis.Redis.from_url(server.url)
        service = AlertService(sinks, server.url, "pas", market_url="https://m", metrics=MetricGroup("alerts"),
                               block_ms=20)
        task = asyncio.ensure_future(service.run())
        while not (r.exists(keys.changes) and len(r.xinfo_groups(keys.changes)) == 3):
            await asyncio.sleep(0.01)
        legs = [{"market_id": "m1", "side": "NO", "token_id": "t1", "ask": 0.4, "question": "Will A?"},
                {"market_id": "m2", "side": "NO", "token_id": "t2", "ask": 0.55, "question": "Will B?"}]
        t0 = time.perf_counter()
        for i in range(n):
            data = {"id": f"c{i}", "kind": "all_no", "guaranteed": True, "legs": legs, "cost": 0.95, "payout": 1,
                    "profit": 0.05, "size_at_profit": 40, "updated_ms": int(time.time() * 1000)}
            r.xadd(keys.changes, {"op": "upsert", "id": f"c{i}", "data": orjson.dumps(data)})
            if rate:
                await asyncio.sleep(1 / rate)  # paced writes: latency at rest, not a burst's queue
            elif i % 50 == 0:
                await asyncio.sleep(0)
        while min(counts.values()) < n:
            await asyncio.sleep(0.01)
        wall = time.perf_counter() - t0
        service.stop()
        await task
        how = f"written at {rate:g}/s" if rate else "written as one burst"
        print(f"{n} alerts per sink in {wall:.2f} s ({how}), 3 sinks on one event loop")
        for name in counts:
            lat = [float(f[b"latency_ms"]) for _, f in r.xrange(keys.alerts_log(name))]
            print(f"  {name:<6} {n / wall:7.0f} alerts/s   delivery latency p50 {percentile(lat, 0.5):.0f} ms "
                  f"p99 {percentile(lat, 0.99):.0f} ms")
    await runner.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=0, help="changes written per second (0: one burst)")
    args = ap.parse_args()
    asyncio.run(main(args.n, args.rate))
