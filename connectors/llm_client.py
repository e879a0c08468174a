"""The LLM client: `openai.AsyncOpenAI` against an OpenAI-compatible endpoint (OpenRouter by
default), with our own failure handling and a result cache.

The SDK's own retries are off (`max_retries=0`): it gives up on long `Retry-After` values
and does not retry errors inside 200 bodies. Here every attempt has a timeout; a 429 waits
what `Retry-After` says (capped at `MAX_RETRY_AFTER_S`); 408/409/5xx, timeouts and
connection errors back off exponentially with jitter; a 200 carrying an error body, an
empty answer or unparseable JSON is retried too. Up to `LLM_MAX_ATTEMPTS` attempts, then
`LLMFailure` with its kind — the operator retries the group later, never caches a failure.

Cache: answers keyed by model, prompt version, target and candidate set; in Redis with
`CACHE_TTL_SECONDS` when `ENABLE_REDIS_CACHE=true`, otherwise a bounded in-process LRU.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import OrderedDict
from typing import Any

import openai
import orjson
import redis

from operators.llm_prompt import LLMAnswerError, build_messages, cache_key, parse_answer
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import metrics
from polyalphascan.settings import Settings

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)
_m = metrics("llm")
_c = metrics("cache")

MAX_RETRY_AFTER_S = 300.0


class LLMFailure(RuntimeError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class LLMCache:
    """Bounded in-process LRU, or Redis with a TTL."""

    def __init__(self, settings: Settings, redis_url: str | None = None) -> None:
        self.ttl = settings.cache_ttl_seconds
        self.max_entries = settings.llm_cache_max_entries
        self.prefix = f"{settings.redis_key_prefix}:v1:llm:"
        self.redis = (redis.Redis.from_url(redis_url, socket_timeout=2)
                      if settings.enable_redis_cache and redis_url else None)
        self._lru: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def _report(self) -> None:
        _c.set("hits", self.hits)
        _c.set("misses", self.misses)
        _c.set("evictions", self.evictions)
        _c.set("hit_rate", self.hits / (self.hits + self.misses) if self.hits + self.misses else 0.0)
        _c.set("size", len(self._lru) if self.redis is None else _c.get("size", 0))

    def get(self, key: str) -> dict[str, Any] | None:
        raw: bytes | None = None
        if self.redis is not None:
            try:
                raw = self.redis.get(self.prefix + key)
            except redis.RedisError:
                raw = None
        else:
            with self._lock:
                raw = self._lru.get(key)
                if raw is not None:
                    self._lru.move_to_end(key)
        with self._lock:
            if raw is None:
                self.misses += 1
            else:
                self.hits += 1
            self._report()
        return orjson.loads(raw) if raw is not None else None

    def put(self, key: str, answer: dict[str, Any]) -> None:
        raw = orjson.dumps(answer)
        if self.redis is not None:
            try:
                self.redis.set(self.prefix + key, raw, ex=self.ttl)
                _c.set("size", int(self.redis.dbsize()))
            except redis.RedisError as exc:
                _limited.warning("cache", "llm_cache_write_failed", error=str(exc))
            return
        with self._lock:
            self._lru[key] = raw
            self._lru.move_to_end(key)
            while len(self._lru) > self.max_entries:
                self._lru.popitem(last=False)
                self.evictions += 1
            self._report()


class ImplicationClient:
    def __init__(self, settings: Settings, cache: LLMCache, *, backoff_base: float = 1.0, backoff_max: float = 30.0) -> None:
        key = settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else "missing"
        self.settings = settings
        self.model = settings.llm_model
        self.cache = cache
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url, api_key=key, max_retries=0, timeout=settings.llm_timeout_seconds,
            default_headers={"HTTP-Referer": "https://github.com/polyalphascan/polyalphascan", "X-Title": "polyalphascan"},
        )

    async def _once(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        t0 = time.monotonic()
        resp = await asyncio.wait_for(
            self.client.chat.completions.create(model=self.model, messages=messages,  # type: ignore[arg-type]
                                                response_format={"type": "json_object"}, temperature=0),
            timeout=self.settings.llm_timeout_seconds,
        )
        _m.observe("latency_s", time.monotonic() - t0)
        usage = getattr(resp, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", None):
            _m.inc("tokens", usage.total_tokens)
        choices = getattr(resp, "choices", None)
        if not choices:
            err = (getattr(resp, "model_extra", None) or {}).get("error")
            raise LLMFailure("error_body", str(err)[:200])
        choice = choices[0]
        if getattr(choice, "finish_reason", None) == "error":
            raise LLMFailure("error_body", "finish_reason=error")
        content = choice.message.content if choice.message else None
        if not content:
            raise LLMFailure("empty_answer", "no content")
        try:
            return parse_answer(content)
        except LLMAnswerError as exc:
            raise LLMFailure("unparseable", str(exc)) from None

    async def ask(self, target_title: str, candidate_titles: list[str]) -> dict[str, Any]:
        """The model's answer (cached); raises `LLMFailure` after the attempts are spent."""
        key = cache_key(self.model, target_title, candidate_titles)
        cached = await asyncio.to_thread(self.cache.get, key) if self.cache.redis else self.cache.get(key)
        if cached is not None:
            return cached
        messages = build_messages(target_title, candidate_titles)
        delay = self.backoff_base
        last = LLMFailure("unknown", "no attempt")
        for attempt in range(1, self.settings.llm_max_attempts + 1):
            _m.inc("requests")
            wait = delay * (0.5 + random.random())
            try:
                answer = await self._once(messages)
                if self.cache.redis:
                    await asyncio.to_thread(self.cache.put, key, answer)
                else:
                    self.cache.put(key, answer)
                return answer
            except openai.RateLimitError as exc:
                _m.inc("rate_429")
                last = LLMFailure("rate_limited", str(exc)[:200])
                retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
                if retry_after:
                    try:
                        wait = min(float(retry_after), MAX_RETRY_AFTER_S)
                    except ValueError:
                        pass
            except openai.APIStatusError as exc:
                last = LLMFailure(f"http_{exc.status_code}", str(exc)[:200])
                if exc.status_code not in (408, 409) and exc.status_code < 500:
                    _m.inc(f"failures_{last.kind}")
                    raise last from None  # 400/401/402/403: retrying will not help
            except (openai.APITimeoutError, asyncio.TimeoutError):
                last = LLMFailure("timeout", f"attempt {attempt}")
            except openai.APIConnectionError as exc:
                last = LLMFailure("connection", str(exc)[:200])
            except LLMFailure as exc:
                last = exc
            _m.inc(f"errors_{last.kind}")
            if attempt < self.settings.llm_max_attempts:
                _m.inc("retries")
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max)
        _m.inc(f"failures_{last.kind}")
        raise last
