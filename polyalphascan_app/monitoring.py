"""Monitoring: the seed's performance JSON, read from Redis only, and a small HTTP server.

`GET /monitoring/performance` →
    {"pipeline": {"last_run", "duration", "events_processed", "portfolios_found",
                  "avg_llm_latency", "websocket_connections", "websocket_subscriptions"},
     "cache": {"hit_rate", "size", "evictions"},
     "errors": {group: {counter: total}},   every rejection and error counter, summed over processes
     "health": {group: {gauge: 0 | 1}}}      background threads' `*_alive` gauges (0 = died)
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


#: The metric groups a flow writes; their `rejected_*`, `errors_*`, `failures_*` counters (and
#: the few older names of input the scanner refused) make the `errors` section, so an operator
#: sees an attack or a schema change at a glance.
GROUPS = ("poller", "ws", "llm", "cache", "sink", "portfolios", "steps", "history", "alerts")
ERROR_PREFIXES = ("rejected_", "errors_", "failures_")
ERROR_NAMES = frozenset({"malformed_frame", "malformed_message", "price_out_of_range", "unknown_token",
                         "unknown_event_type", "unmatched_titles", "decoded_tolerantly", "crossed_book"})


def _errors(groups: dict[str, dict[str, float]]) -> dict[str, Any]:
    errors = {g: {k: int(v) for k, v in sorted(m.items()) if v and (k.startswith(ERROR_PREFIXES) or k in ERROR_NAMES)}
              for g, m in groups.items()}
    return {g: e for g, e in errors.items() if e}


def _health(client: redis.Redis, keys: RedisKeys) -> dict[str, Any]:
    """Each `*_alive` gauge at its lowest over the live processes: one dead thread shows as 0
    even when another process's thread of that name runs."""
    health: dict[str, dict[str, int]] = {}
    for group in GROUPS:
        for key in client.scan_iter(match=keys.metrics_pattern(group), count=100):
            for field, raw in client.hgetall(key).items():
                name = field.decode() if isinstance(field, bytes) else str(field)
                if not name.endswith("_alive"):
                    continue
                try:
                    value = int(float(raw))
                except (TypeError, ValueError):
                    continue
                gauges = health.setdefault(group, {})
                gauges[name] = min(value, gauges.get(name, value))
    return {g: dict(sorted(h.items())) for g, h in health.items()}


def performance_report(client: redis.Redis, prefix: str) -> dict[str, Any]:
    keys = RedisKeys(prefix)
    groups = {g: read_metrics(client, keys, g) for g in GROUPS}
    errors, health = _errors(groups), _health(client, keys)
    poller, llm, ws, cache = groups["poller"], groups["llm"], groups["ws"], groups["cache"]
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
        "coverage": _coverage(ws),
        "errors": errors,
        "health": health,
        **_history_and_alerts(client, keys, groups["alerts"]),
    }


def _history_and_alerts(client: redis.Redis, keys: RedisKeys, alerts: dict[str, float]) -> dict[str, Any]:
    """The history recorder's live figures (null while none runs) and the alert
    process's counters (`delivered_S`, `retries_S`, `delivery_latency_ms_S_avg`/`_p95`, ...)."""
    import orjson

    raw = client.get(keys.history_figures)
    try:
        history = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        history = None
    return {"history": history, "alerts": {k: round(v, 3) for k, v in sorted(alerts.items())}}


def _coverage(ws: dict[str, float]) -> dict[str, Any]:
    """Tokens subscribed vs tokens that received their `book`, per shard and in total (%)."""
    shards: dict[str, float] = {}
    total_sub = total_booked = 0
    for name, value in ws.items():
        if name.startswith("shard") and name.endswith("_booked"):
            sid = name[5:-7]
            sub = int(ws.get(f"shard{sid}_tokens", 0))
            booked = int(value)
            total_sub += sub
            total_booked += booked
            shards[sid] = round(100.0 * booked / sub, 1) if sub else 0.0
    return {"total_pct": round(100.0 * total_booked / total_sub, 1) if total_sub else 0.0,
            "tokens_subscribed": total_sub, "tokens_booked": total_booked, "shards": dict(sorted(shards.items()))}


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
