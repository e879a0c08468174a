"""HTTP access to Gamma: an httpx client with retries that honour Retry-After, a client-side
pace, and typed errors. No Bytewax, no change detection.

Errors (all `GammaError`, the root shared with `GammaParseError`):

* `GammaHTTPError(status)`: a definitive answer that retrying cannot change (404, 422);
* `GammaUnavailable`: a 503 whose body names the keyset endpoint (it is switched off there);
* `GammaGaveUp(last_status)`: every attempt failed (429, 5xx, transport errors, unparseable
  bodies); `last_status` is the last HTTP status seen, None when the last failure had none;
* `GammaStopped`: the flow is stopping, the request was abandoned.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import orjson

from connectors.gamma.protocol import GammaError, decode_body
from polyalphascan.metrics import MetricGroup


class GammaHTTPError(GammaError):
    """Gamma answered with a status that retrying will not change (404 not found, 422 refused)."""

    def __init__(self, path: str, status: int, body: str = "") -> None:
        super().__init__(f"{path}: HTTP {status} {body[:120]}")
        self.path = path
        self.status = status


class GammaUnavailable(GammaHTTPError):
    """The endpoint is switched off on this deployment (Gamma answers 503 naming "keyset")."""

    def __init__(self, path: str, body: str = "") -> None:
        super().__init__(path, 503, body)


class GammaGaveUp(GammaError):
    """Every attempt failed; `last_status` is the last HTTP status seen (None: transport
    error or unparseable body)."""

    def __init__(self, path: str, attempts: int, last_error: str, last_status: int | None) -> None:
        super().__init__(f"{path}: gave up after {attempts} attempts ({last_error})")
        self.path = path
        self.attempts = attempts
        self.last_status = last_status


class GammaStopped(GammaError):
    """The flow is stopping: the request was not (re)tried."""


class GammaClient:
    """GET JSON from Gamma with retries on 429/5xx/transport errors/unparseable bodies, waiting
    Retry-After when given (else exponential backoff), and at most one request per
    `min_interval` seconds. Counts failures in `metrics` (`errors_http_<status>`,
    `errors_bad_body`, `errors_transport`, `retries`). `stop` abandons retries."""

    def __init__(self, base_url: str, *, stop: threading.Event, metrics: MetricGroup, timeout: float = 10.0,
                 max_attempts: int = 5, min_interval: float = 0.025, backoff_base: float = 0.5,
                 backoff_max: float = 8.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                 headers={"User-Agent": "polyalphascan/0.1"})
        self.stop = stop
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.min_interval = min_interval  # Gamma allows 500 req / 10 s on /events => 20 ms; keep under it
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._last = 0.0

    def _pace(self) -> None:
        wait = self._last + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last = time.monotonic()

    def get_json(self, path: str, params: list[tuple[str, Any]]) -> Any:
        """The decoded JSON body of a 200. Raises GammaHTTPError (404/422), GammaUnavailable,
        GammaGaveUp or GammaStopped."""
        m = self.metrics
        delay = self.backoff_base
        last_error = ""
        last_status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            if self.stop.is_set():
                raise GammaStopped(f"{path}: stopping")
            self._pace()
            wait = delay
            try:
                resp = self.http.get(path, params=params)
                if resp.status_code == 200:
                    body, tolerant = decode_body(resp.content)
                    if tolerant:
                        m.inc("decoded_tolerantly")
                    return body
                if resp.status_code == 503 and b"keyset" in resp.content:
                    raise GammaUnavailable(path, resp.text)
                if resp.status_code in (404, 422):
                    raise GammaHTTPError(path, resp.status_code, resp.text)
                last_error, last_status = f"HTTP {resp.status_code}", resp.status_code
                m.inc(f"errors_http_{resp.status_code}")
                retry_after = resp.headers.get("Retry-After")
                if retry_after is not None:
                    try:
                        wait = max(0.0, float(retry_after))
                    except ValueError:
                        wait = delay
            except orjson.JSONDecodeError:
                last_error, last_status = "unparseable body", None
                m.inc("errors_bad_body")
            except httpx.HTTPError as exc:
                last_error, last_status = f"{type(exc).__name__}: {exc}", None
                m.inc("errors_transport")
            if attempt < self.max_attempts:
                m.inc("retries")
                self.stop.wait(min(wait, self.backoff_max * 4))
                delay = min(delay * 2, self.backoff_max)
        raise GammaGaveUp(path, self.max_attempts, last_error, last_status)

    def close(self) -> None:
        self.http.close()
