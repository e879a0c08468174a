"""`polyalphascan alerts`: deliver opportunities to Telegram, Discord and webhooks.

A long-lived process of its own (the scanner never waits on a phone): it reads the change
stream through one consumer group per sink (`connectors.alerts.consumer`), writes its counters
to Redis like the scanner does (metric group `alerts`, shown by `/monitoring/performance`),
and stops cleanly on SIGTERM / Ctrl-C (each sink finishes or leaves pending its current entry).
"""

from __future__ import annotations

import asyncio
import signal

from connectors.alerts.consumer import AlertService
from connectors.redis.metrics_writer import MetricsWriter
from polyalphascan.alert_settings import SinkSettings
from polyalphascan.logs import get_logger
from polyalphascan.metrics import MetricsRegistry
from polyalphascan.settings import Settings

log = get_logger(__name__)


def market_url(settings: Settings) -> str:
    return settings.alert_market_url or f"{settings.gamma_api_url}/markets"


def run_alerts(settings: Settings, redis_url: str, sinks: list[SinkSettings]) -> None:
    registry = MetricsRegistry()
    writer = MetricsWriter(redis_url, settings.redis_key_prefix, registry).start()
    service = AlertService(sinks, redis_url, settings.redis_key_prefix, market_url=market_url(settings),
                           metrics=registry.group("alerts"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    try:
        asyncio.run(main())
    finally:
        writer.stop()
        log.info("alerts_stopped")
