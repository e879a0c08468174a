"""Monitoring: the seed's performance JSON, read from Redis only, and a small HTTP server.

`GET /monitoring/performance` →
    {"pipeline": {"last_run", "duration", "events_processed", "portfolios_found",
                  "avg_llm_latency", "websocket_connections", "websocket_subscriptions"},
     "cache": {"hit_rate", "size", "evictions"}}
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from typing import Any

import redis
from aiohttp import web

from connectors.portfolio_sink import read_metrics
from connectors.redis_layout import RedisKeys


def performance_report(client: redis.Redis, prefix: str) -> dict[str, Any]:
    keys = RedisKeys(prefix)
    poller = read_metrics(client, keys, "poller")
    llm = read_metrics(client, keys, "llm")
    ws = read_metrics(client, keys, "ws")
    cache = read_metrics(client, keys, "cache")
    last_ts = poller.get("last_poll_ts")
    lat_n = llm.get("latency_s_count", 0.0)
    hits, misses = cache.get("hits", 0.0), cache.get("misses", 0.0)
    return {
        "pipeline": {
            "last_run": datetime.fromtimestamp(last_ts, timezone.utc).isoformat() if last_ts else None,
            "duration": round(poller.get("last_poll_duration_s", 0.0), 4),
            "events_processed": int(poller.get("events_processed", 0)),
            "portfolios_found": int(client.zcard(keys.ranking)),
            "avg_llm_latency": round(llm.get("latency_s_sum", 0.0) / lat_n, 4) if lat_n else 0.0,
            "websocket_connections": int(ws.get("connections", 0)),
            "websocket_subscriptions": int(ws.get("subscriptions", 0)),
        },
        "cache": {
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
            "size": int(cache.get("size", 0)),
            "evictions": int(cache.get("evictions", 0)),
        },
    }


class MonitoringServer:
    """aiohttp server in a daemon thread: `start()`, `.url`, `stop()`."""

    def __init__(self, redis_url: str, prefix: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="monitoring-http", daemon=True)
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def _performance(self, _request: web.Request) -> web.Response:
        try:
            report = await asyncio.to_thread(performance_report, self._client, self.prefix)
        except redis.RedisError as exc:
            return web.json_response({"error": f"redis unavailable: {exc}"}, status=503)
        return web.json_response(report)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/monitoring/performance", self._performance)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    def start(self) -> "MonitoringServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._client.close()

    def __enter__(self) -> "MonitoringServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
