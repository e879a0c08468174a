"""The demo: stand-ins + embedded Redis + the flow, printing live opportunities."""

from __future__ import annotations

import time

from connectors.redis_server import EmbeddedRedis
from polyalphascan.logs import get_logger
from polyalphascan.settings import Settings

log = get_logger(__name__)


def run_demo(settings: Settings, *, events: int, seed: int, duration: float) -> None:
    with EmbeddedRedis() as server:
        log.info("demo_redis_ready", url=server.url)
        log.warning("demo_flow_not_built", detail="the scanner flow is not built yet; Redis started and stopped")
        if duration:
            time.sleep(min(duration, 1.0))
