"""The HTTP client of one alert sink (httpx): rate limit, retries with backoff, Retry-After.

Exceptions (all `AlertError`):
- `SinkRefused`: the sink answered a permanent refusal (a 4xx other than 408/429: a wrong
  token, a deleted webhook, a message it will never take); retrying the same request is useless.
- `SinkUnavailable`: `max_attempts` attempts all failed transiently (connection errors,
  timeouts, 5xx, 429); the caller backs off and tries again later (nothing is dropped).

A 429 (or 503) blocks the sink's token bucket for the wait the server asked for (`Retry-After`
header, Telegram `parameters.retry_after`, Discord JSON `retry_after`); Discord's
`X-RateLimit-Remaining: 0` pauses it for `X-RateLimit-Reset-After` before the next send. The
endpoint URL holds the secret (bot token, webhook token): it is never logged nor put in an
exception message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from connectors.alerts.protocol import Answer, HttpRequest, SinkKind, classify
from polyalphascan.logs import get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.alert_policy import TokenBucket, backoff

log = get_logger(__name__)


class AlertError(Exception):
    """Base of the alert client's errors."""


class SinkRefused(AlertError):
    """A permanent refusal: the request must not be retried as is."""


class SinkUnavailable(AlertError):
    """Every attempt failed transiently; try again later."""


@dataclass(frozen=True, slots=True)
class Delivery:
    attempts: int
    status: int


class SinkClient:
    """Sends requests to one sink, one at a time, paced by a token bucket."""

    def __init__(self, name: str, kind: SinkKind, *, rate: float, burst: int, max_attempts: int = 5,
                 timeout: float = 10.0, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 metrics: MetricGroup | None = None, http: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.kind = kind
        self.bucket = TokenBucket(rate, burst)
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.metrics = metrics if metrics is not None else MetricGroup("alerts")
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                               headers={"User-Agent": "polyalphascan-alerts"})
        self._sleep = sleep
        self._clock = clock

    async def _paced(self) -> None:
        while True:
            wait = self.bucket.wait(self._clock())
            if wait <= 0:
                return
            await self._sleep(wait)

    async def send(self, request: HttpRequest) -> Delivery:
        """Deliver `request`; raise `SinkRefused` or `SinkUnavailable` (see the module docstring)."""
        m, n = self.metrics, self.name
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            await self._paced()
            try:
                resp = await self._http.request(request.method, request.url, content=request.body(),
                                                headers={"Content-Type": "application/json", **request.headers})
                answer = classify(self.kind, resp.status_code, dict(resp.headers), resp.content, now=time.time())
                status = resp.status_code
            except httpx.HTTPError as exc:  # connection refused, timeout, protocol error
                answer, status = Answer("retry", detail=type(exc).__name__), 0
            if answer.pause:
                self.bucket.block_until(self._clock() + answer.pause)
            if answer.outcome == "delivered":
                return Delivery(attempt, status)
            if answer.outcome == "refused":
                m.inc(f"failures_refused_{n}")
                raise SinkRefused(f"sink {n}: refused ({answer.detail[:200]})")
            last = answer.detail[:200]
            m.inc(f"retries_{n}")
            if answer.retry_after is not None:
                m.inc(f"rate_limited_{n}")
                self.bucket.block_until(self._clock() + answer.retry_after)
                log.warning("alert_sink_rate_limited", sink=n, retry_after=answer.retry_after, attempt=attempt)
            elif attempt < self.max_attempts:
                await self._sleep(backoff(attempt, self.backoff_initial, self.backoff_max))
        m.inc(f"failures_unavailable_{n}")
        raise SinkUnavailable(f"sink {n}: {self.max_attempts} attempts failed (last: {last})")

    async def aclose(self) -> None:
        await self._http.aclose()
