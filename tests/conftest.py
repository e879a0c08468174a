"""Shared fixtures: a real embedded redis-server for the whole session (never a mock)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from connectors.redis.server import EmbeddedRedis
from operators.llm_step import CatalogLogic


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read a developer's .env and start from the documented defaults."""
    for key in list(os.environ):
        if key.startswith(("LLM_", "WS_", "POLL_", "ENABLE_", "REDIS_", "CACHE_", "PRICE_", "OPENROUTER_",
                           "POLYMARKET_", "GAMMA_", "CLOB_", "MIN_COVERAGE", "MAX_COST", "MONITOR_",
                           "LOG_", "RECOVERY_", "SNAPSHOT_", "FULL_RECONCILE", "STREAM_MAX",
                           "HISTORY_", "ALERT_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture()
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture()
def logics() -> Iterator[list[CatalogLogic]]:
    """Logics a test made; each is closed (its runner stopped) when the test ends."""
    made: list[CatalogLogic] = []
    yield made
    for logic in made:
        logic.close()
