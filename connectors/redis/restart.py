"""Notice that a Redis server restarted (its `run_id` changed): a server without persistence
comes back empty, so writers that own derived state in Redis rewrite it."""

from __future__ import annotations

import time

import redis


class RestartWatch:
    def __init__(self, client: redis.Redis, every: float = 2.0) -> None:
        self.client = client
        self.every = every
        self._run_id: str | None = None
        self._last = 0.0

    def restarted(self, *, force: bool = False) -> bool:
        """True once after each restart; checks at most every `every` s unless forced."""
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return False
        self._last = now
        try:
            run_id = str(self.client.info("server").get("run_id"))
        except redis.RedisError:
            return False
        changed = self._run_id is not None and run_id != self._run_id
        self._run_id = run_id
        return changed
