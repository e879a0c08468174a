"""Monitoring: the seed's performance JSON, read from Redis only, and a small HTTP server.

`GET /monitoring/performance` →
    {"pipeline": {"last_run", "duration", "events_processed", "portfolios_found",
                  "avg_llm_latency", "websocket_connections", "websocket_subscriptions"},
     "cache": {"hit_rate", "size", "evictions"}}
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import redis
from aiohttp import web

from connectors.redis.metrics_writer import read_metrics
from connectors.redis.layout import RedisKeys
from polyalphascan.http_thread import ThreadedHttpServer


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


class MonitoringServer(ThreadedHttpServer):
    """`GET /monitoring/performance` from a daemon thread: `start()`, `.url`, `stop()`."""

    name = "monitoring-http"

    def __init__(self, redis_url: str, prefix: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.redis_url = redis_url
        self.prefix = prefix
        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def _performance(self, _request: web.Request) -> web.Response:
        try:
            report = await asyncio.to_thread(performance_report, self._client, self.prefix)
        except redis.RedisError as exc:
            return web.json_response({"error": f"redis unavailable: {exc}"}, status=503)
        return web.json_response(report)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/monitoring/performance", self._performance)
        return app

    def stop(self) -> None:
        super().stop()
        self._client.close()
