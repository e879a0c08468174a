"""The LLM client: `openai.AsyncOpenAI` against an OpenAI-compatible endpoint (OpenRouter by
default), with our own failure handling and a result cache.

The SDK's own retries are off (`max_retries=0`): it gives up on long `Retry-After` values
and does not retry errors inside 200 bodies. Here every attempt has a timeout; a 429 waits
what `Retry-After` says (capped at `MAX_RETRY_AFTER_S`); 408/409/5xx, timeouts and
connection errors back off exponentially with jitter; a 200 carrying an error body, an
empty answer or unparseable JSON is retried too; any other HTTP status (400/401/402/403...)
fails at once. Up to `max_attempts` attempts, then the last `LLMFailure` — the caller
retries the group later and never caches a failure.

Errors (all `LLMError`, see connectors/llm/protocol.py):

    LLMFailure              a request that produced no answer; `kind` names why
      LLMRateLimited        429 (kind "rate_limited"), `retry_after` seconds if the server said
      LLMHTTPError          any other HTTP error status (kind "http_<status>"), `status`
      LLMTimeout            an attempt ran out of time (kind "timeout")
      LLMConnectionError    no connection (kind "connection")
      LLMBadAnswer          a 200 without a usable answer (kind "error_body", "empty_answer"
                            or "unparseable")

`retryable` on each failure says whether another attempt can help; the retry loop decides
by it, never by message text. Metric group "llm" (`requests`, `retries`, `rate_429`,
`errors_<kind>`, `failures_<kind>`, `tokens`, `latency_s`) and group "cache" (`hits`,
`misses`, `evictions`, `hit_rate`, `size`) are handed in by the owner.

Requests carry `max_tokens` (setting LLM_MAX_TOKENS). A reply is read through the protocol's
bounds (connectors/llm/protocol.py): over `max_reply_bytes` it is refused unread
(`LLMBadAnswer` kind "reply_too_large", not retried: counted `rejected_reply_too_large` and
`failures_reply_too_large`); lists over the item cap keep the cap (`rejected_too_many_items`),
unusable items are dropped (`rejected_answer_item`, `rejected_answer_field`,
`rejected_duplicate_item`), items naming no candidate id are counted `rejected_unknown_id`
and `unmatched_titles` — all in group "llm". A verification round (`verify`) is one more
request through the same retry loop and cache (`verify_requests` counts them); its answer
is one boolean.

Cache: only the matched result — the items naming a candidate, under its exact title, texts
cut — never the raw reply; keyed by model, prompt version, target and candidate set
(`cache_key`); a verification round's verdict under `verify_cache_key`; in Redis under `RedisKeys(prefix).llm_cache(key)` with a TTL when a Redis URL
is given, otherwise an in-process LRU bounded in entries and in bytes (`max_bytes`: the
payload and key bytes; gauge `bytes`, evictions counted `evictions`; one entry over the byte
bound is not cached: `rejected_entry_too_large`). A cached entry that cannot be decoded is a
miss (`rejected_cache_entry`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import OrderedDict
from collections import Counter
from collections.abc import Callable
from typing import Any

import openai
import orjson
import redis

from connectors.llm.protocol import (
    MAX_REPLY_BYTES,
    LLMAnswerError,
    LLMError,
    LLMReplyTooLarge,
    build_messages,
    build_verify_messages,
    cache_key,
    item_cap,
    match_answer,
    prompt_title,
    read_answer,
    read_verdict,
    verify_cache_key,
)
from connectors.redis.layout import RedisKeys
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)

MAX_RETRY_AFTER_S = 300.0


# --------------------------------------------------------------------------- errors
class LLMFailure(LLMError):
    """A request that produced no answer. `kind` names the reason (it is part of metric keys)."""

    kind = "unknown"
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.kind}: {detail}")
        self.detail = detail


class LLMRateLimited(LLMFailure):
    kind = "rate_limited"

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class LLMHTTPError(LLMFailure):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.kind = f"http_{status}"
        super().__init__(detail)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status in (408, 409) or self.status >= 500


class LLMTimeout(LLMFailure):
    kind = "timeout"


class LLMConnectionError(LLMFailure):
    kind = "connection"


class LLMBadAnswer(LLMFailure):
    """HTTP 200 without a usable answer: `kind` is "error_body", "empty_answer", "unparseable"
    or "reply_too_large" (not retried: the same question gets the same oversized answer)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.retryable = kind != "reply_too_large"
        super().__init__(detail)


def _failure(exc: Exception, attempt: int) -> LLMFailure | None:
    """The typed failure for an exception of one attempt (None: not ours to handle)."""
    if isinstance(exc, LLMFailure):
        return exc
    if isinstance(exc, openai.RateLimitError):
        retry_after: float | None = None
        raw = exc.response.headers.get("retry-after") if exc.response is not None else None
        if raw:
            try:
                retry_after = float(raw)
            except ValueError:
                pass
        return LLMRateLimited(str(exc)[:200], retry_after)
    if isinstance(exc, openai.APIStatusError):
        return LLMHTTPError(exc.status_code, str(exc)[:200])
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError)):  # before APIConnectionError: a subclass
        return LLMTimeout(f"attempt {attempt}")
    if isinstance(exc, openai.APIConnectionError):
        return LLMConnectionError(str(exc)[:200])
    return None


# --------------------------------------------------------------------------- cache
class LLMCache:
    """Bounded in-process LRU, or Redis with a TTL when `redis_url` is given."""

    def __init__(self, metrics: MetricGroup, *, max_entries: int = 100_000, max_bytes: int = 64 << 20,
                 redis_url: str | None = None, redis_key_prefix: str = "pas", ttl_seconds: int = 3600) -> None:
        self.metrics = metrics
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.keys = RedisKeys(redis_key_prefix)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None
        self._lru: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def _report(self) -> None:
        c = self.metrics
        c.set("hits", self.hits)
        c.set("misses", self.misses)
        c.set("evictions", self.evictions)
        c.set("hit_rate", self.hits / (self.hits + self.misses) if self.hits + self.misses else 0.0)
        c.set("size", len(self._lru) if self.redis is None else c.get("size", 0))
        c.set("bytes", self.bytes)

    def get(self, key: str) -> dict[str, Any] | None:
        raw: bytes | None = None
        if self.redis is not None:
            try:
                raw = self.redis.get(self.keys.llm_cache(key))
            except redis.RedisError:
                raw = None
        else:
            with self._lock:
                raw = self._lru.get(key)
                if raw is not None:
                    self._lru.move_to_end(key)
        value: dict[str, Any] | None = None
        if raw is not None:
            try:
                decoded = orjson.loads(raw)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                value = decoded
            else:
                self.metrics.inc("rejected_cache_entry")
                _limited.warning("cache_entry", "llm_cache_entry_unreadable", cache_key=key)
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            self._report()
        return value

    def put(self, key: str, answer: dict[str, Any]) -> None:
        """Cache `answer` (the matched result). An entry over `max_bytes` is not cached (counted)."""
        raw = orjson.dumps(answer)
        if len(raw) + len(key) > self.max_bytes:
            self.metrics.inc("rejected_entry_too_large")
            _limited.warning("cache_size", "llm_cache_entry_too_large", cache_key=key, bytes=len(raw))
            return
        if self.redis is not None:
            try:
                self.redis.set(self.keys.llm_cache(key), raw, ex=self.ttl)
                self.metrics.set("size", int(self.redis.dbsize()))
            except redis.RedisError as exc:
                _limited.warning("cache", "llm_cache_write_failed", error=str(exc))
            return
        with self._lock:
            old = self._lru.pop(key, None)
            if old is not None:
                self.bytes -= len(old) + len(key)
            self._lru[key] = raw
            self.bytes += len(raw) + len(key)
            while len(self._lru) > self.max_entries or self.bytes > self.max_bytes:
                k, v = self._lru.popitem(last=False)
                self.bytes -= len(v) + len(k)
                self.evictions += 1
            self._report()

    def close(self) -> None:
        if self.redis is not None:
            self.redis.close()


# --------------------------------------------------------------------------- client
class ImplicationClient:
    """Asks the model the two questions of the protocol: `ask` (which candidates imply, or are
    implied by, a target) and `verify` (one round of the joint-outcome check of a claim).
    Both are coroutines, cached, and share one retry loop."""

    def __init__(self, *, base_url: str, api_key: str | None, model: str, cache: LLMCache,
                 metrics: MetricGroup, timeout_s: float = 60.0, max_attempts: int = 6,
                 backoff_base: float = 1.0, backoff_max: float = 30.0, max_tokens: int | None = 2048,
                 max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.max_reply_bytes = max_reply_bytes
        self.cache = cache
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "missing", max_retries=0, timeout=timeout_s,
            default_headers={"HTTP-Referer": "https://github.com/polyalphascan/polyalphascan", "X-Title": "polyalphascan"},
        )

    async def _once(self, messages: list[dict[str, str]], read: Callable[[str], Any]) -> Any:
        t0 = time.monotonic()
        extra: dict[str, Any] = {} if self.max_tokens is None else {"max_tokens": self.max_tokens}
        resp = await asyncio.wait_for(
            self.client.chat.completions.create(model=self.model, messages=messages,  # type: ignore[arg-type]
                                                response_format={"type": "json_object"}, temperature=0, **extra),
            timeout=self.timeout_s,
        )
        self.metrics.observe("latency_s", time.monotonic() - t0)
        usage = getattr(resp, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", None):
            self.metrics.inc("tokens", usage.total_tokens)
        choices = getattr(resp, "choices", None)
        if not choices:
            err = (getattr(resp, "model_extra", None) or {}).get("error")
            raise LLMBadAnswer("error_body", str(err)[:200])
        choice = choices[0]
        if getattr(choice, "finish_reason", None) == "error":
            raise LLMBadAnswer("error_body", "finish_reason=error")
        content = choice.message.content if choice.message else None
        if not content:
            raise LLMBadAnswer("empty_answer", "no content")
        return read(content)

    def matched(self, content: str, by_id: dict[str, str], cap: int) -> dict[str, Any]:
        """The matched result of one discovery reply (see `match_answer`), its rejections
        counted in the metric group; raises `LLMBadAnswer` for a reply that is too large or not
        a JSON object."""
        rejected: Counter[str] = Counter()
        answer = self._read(lambda: read_answer(content, max_bytes=self.max_reply_bytes, max_items=cap,
                                                rejected=rejected), content)
        result, unmatched = match_answer(answer, by_id, max_items=cap, rejected=rejected)
        for kind, n in rejected.items():
            self.metrics.inc(f"rejected_{kind}", n)
        if rejected:
            _limited.warning("answer_rejections", "llm_answer_items_rejected", **{k: v for k, v in rejected.items()})
        if unmatched:
            self.metrics.inc("unmatched_titles", unmatched)
        return result

    def _read(self, read: Callable[[], Any], content: str) -> Any:
        try:
            return read()
        except LLMReplyTooLarge as exc:
            self.metrics.inc("rejected_reply_too_large")
            _limited.warning("reply_too_large", "llm_reply_too_large", chars=len(content), error=str(exc))
            raise LLMBadAnswer("reply_too_large", str(exc)) from None
        except LLMAnswerError as exc:
            raise LLMBadAnswer("unparseable", str(exc)) from None

    async def _cached(self, key: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.cache.get, key) if self.cache.redis else self.cache.get(key)

    async def _store(self, key: str, value: dict[str, Any]) -> None:
        if self.cache.redis:
            await asyncio.to_thread(self.cache.put, key, value)
        else:
            self.cache.put(key, value)

    async def ask(self, target_title: str, candidate_titles: list[str]) -> dict[str, Any]:
        """The model's matched answer (cached): `{"implied_by": [...], "implies": [...]}` holding
        only items that name a candidate by its id, under the title it was given here. Raises
        `LLMFailure` after the attempts are spent, or at once when another attempt cannot help."""
        key = cache_key(self.model, target_title, candidate_titles)
        cached = await self._cached(key)
        if cached is not None:
            return cached
        shown: dict[str, str] = {}  # the title the prompt shows -> the caller's title
        for t in candidate_titles:
            shown.setdefault(prompt_title(t), t)
        by_id = {str(i): title for i, title in enumerate(shown.values(), 1)}
        cap = item_cap(len(shown))
        answer = await self._request(build_messages(target_title, list(shown)),
                                     lambda content: self.matched(content, by_id, cap))
        await self._store(key, answer)
        return answer

    async def verify(self, premise_title: str, conclusion_title: str, round_no: int) -> bool:
        """Round `round_no` of the joint-outcome check of premise ⇒ conclusion (cached): True
        when the model agrees that the premise cannot be YES while the conclusion is NO
        (`read_verdict`). Raises `LLMFailure` like `ask`."""
        key = verify_cache_key(self.model, premise_title, conclusion_title, round_no)
        cached = await self._cached(key)
        if cached is not None and isinstance(cached.get("agree"), bool):
            return bool(cached["agree"])
        self.metrics.inc("verify_requests")  # asked of the model (not answered from the cache)
        agree = await self._request(
            build_verify_messages(premise_title, conclusion_title, round_no),
            lambda content: self._read(lambda: read_verdict(content, round_no, max_bytes=self.max_reply_bytes),
                                       content))
        await self._store(key, {"agree": agree})
        return bool(agree)

    async def _request(self, messages: list[dict[str, str]], read: Callable[[str], Any]) -> Any:
        """`read(reply content)` of the first attempt that gives a usable answer."""
        m = self.metrics
        delay = self.backoff_base
        last: LLMFailure = LLMFailure("no attempt")
        for attempt in range(1, self.max_attempts + 1):
            m.inc("requests")
            wait = delay * (0.5 + random.random())
            try:
                return await self._once(messages, read)
            except Exception as exc:  # noqa: BLE001 - typed below; anything else propagates
                failure = _failure(exc, attempt)
                if failure is None:
                    raise
                last = failure
            if isinstance(last, LLMRateLimited):
                m.inc("rate_429")
                if last.retry_after is not None:
                    wait = min(last.retry_after, MAX_RETRY_AFTER_S)
            if not last.retryable:
                m.inc(f"failures_{last.kind}")
                raise last from None
            m.inc(f"errors_{last.kind}")
            if attempt < self.max_attempts:
                m.inc("retries")
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max)
        m.inc(f"failures_{last.kind}")
        raise last

    async def aclose(self) -> None:
        """Close the HTTP connections (on the loop the requests ran on) and the cache."""
        await self.client.close()
        await asyncio.to_thread(self.cache.close)
