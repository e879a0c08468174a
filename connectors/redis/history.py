"""The opportunity history recorder: each opportunity's life, from the change stream.

A background thread of the scanner process (started with the metrics writer, see
`flows.runtime`) reads the change stream through the consumer group `history` and applies each
entry to a `LifeBook` (pure: `polyalphascan.lives`). An opportunity's life starts at
its first profitable upsert and ends when an upsert makes it unprofitable (`repriced_away`) or
the sink removes it (`market_closed`, `filtered`, `crossed_book`). Open lives live in the hash
`history:open`; an ended life moves to `history:lives` (by life id) and `history:ended` (by
end time), kept `retention` seconds. Each batch is one MULTI with its XACK, so a restart
resumes from the group's pending entries against the committed state: no life counted twice.

In a cluster every process starts a recorder, but only the holder of `history:lease` (10 s,
renewed every round) reads; the others stand by and take over when it lapses. Every 2 s
the active one writes `history:figures` (JSON, 60 s TTL) and the `history` metric group.
Malformed entries are counted (`history.rejected_malformed`), logged and acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque

import orjson
import redis
from redis.exceptions import ResponseError

from connectors.redis import health
from connectors.redis.layout import RedisKeys
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.alert_policy import backoff
from polyalphascan.lives import Life, LifeBook, figures
from polyalphascan.opportunities import MalformedChange, parse_change

log = get_logger(__name__)
_limited = RateLimitedLog(log, interval=10.0)
CONSUMER = "recorder"
LEASE_MS = 10_000

# KEYS: lease   ARGV: token, ttl ms  -> 1 when this token holds the lease afterwards
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

# KEYS: ended zset, lives hash   ARGV: cutoff ms, limit -> number trimmed
_TRIM = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old == 0 then return 0 end
redis.call('HDEL', KEYS[2], unpack(old))
redis.call('ZREM', KEYS[1], unpack(old))
return #old
"""


class HistoryRecorder:
    """See the module docstring. `start()`, `stop()`, `thread_health()`."""

    def __init__(self, redis_url: str, prefix: str, metrics: MetricGroup, *, retention_s: float = 7 * 86_400,
                 window_s: float = 3600.0, batch: int = 500, block_ms: int = 200, figures_every: float = 2.0,
                 start_id: str = "0") -> None:
        self.keys = RedisKeys(prefix)
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.metrics = metrics
        self.retention_ms = int(retention_s * 1000)
        self.window_ms = int(window_s * 1000)
        self.batch = batch
        self.block_ms = block_ms
        self.figures_every = figures_every
        self.start_id = start_id
        self.token = uuid.uuid4().hex
        self._lease = self.client.register_script(_LEASE)
        self._trim = self.client.register_script(_TRIM)
        self._stop = threading.Event()
        self.book: LifeBook | None = None
        self.recent: deque[Life] = deque()  # ended lives inside the figures window, by end time
        self._thread = health.MonitoredThread("history-recorder", self._run, metrics, event="history_recorder_died")

    def start(self) -> "HistoryRecorder":
        self._thread.start()
        return self

    def thread_health(self) -> dict[str, object]:
        return self._thread.report()

    @property
    def active(self) -> bool:
        return self.book is not None

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        k = self.keys
        try:
            self.client.xgroup_create(k.changes, k.history_group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        lives = []
        for raw in self.client.hvals(k.history_open):
            try:
                lives.append(Life.from_json(raw))
            except (orjson.JSONDecodeError, TypeError, KeyError):
                self.metrics.inc("rejected_bad_life")
        self.book = LifeBook(lives)
        since = int(time.time() * 1000) - self.window_ms
        ids = self.client.zrangebyscore(k.history_ended, since, "+inf")
        self.recent.clear()
        for raw in (self.client.hmget(k.history_lives, ids) if ids else []):
            if raw:
                self.recent.append(Life.from_json(raw))

    def _hold_lease(self) -> bool:
        return bool(self._lease(keys=[self.keys.history_lease], args=[self.token, LEASE_MS]))

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        failures = 0
        last_figures = last_trim = 0.0
        while not self._stop.is_set():
            try:
                if not self._hold_lease():
                    self.book = None
                    self.metrics.set("recorder_active", 0)
                    self._stop.wait(1.0)
                    continue
                if self.book is None:
                    self._load()
                    self.metrics.set("recorder_active", 1)
                self.round()
                now = time.monotonic()
                if now - last_figures >= self.figures_every:
                    last_figures = now
                    self.write_figures()
                if now - last_trim >= 30:
                    last_trim = now
                    self.trim()
                failures = 0
            except redis.RedisError as exc:
                failures += 1
                self.metrics.inc("errors_redis")
                _limited.warning("redis", "history_redis_error", error=str(exc)[:200])
                self.book = None  # reload the committed state
                self._stop.wait(backoff(failures, 0.2, 5.0))

    def round(self, cursor_pending: bool = True) -> int:
        """Read and apply one batch (this consumer's pending entries first); returns entries handled."""
        assert self.book is not None
        k = self.keys
        handled = 0
        for cursor in (("0", ">") if cursor_pending else (">",)):
            resp = self.client.xreadgroup(k.history_group, CONSUMER, {k.changes: cursor}, count=self.batch,
                                          block=self.block_ms if cursor == ">" else None)
            entries = resp[0][1] if resp else []
            if entries:
                self._apply(entries)
                handled += len(entries)
                if cursor == "0":
                    return handled  # more pending may follow: next round reads them
        return handled

    def _apply(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        assert self.book is not None
        k, m = self.keys, self.metrics
        pipe = self.client.pipeline(transaction=True)
        touched: dict[str, Life | None] = {}
        ended: list[Life] = []
        ids = []
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            ids.append(eid)
            try:
                if not fields:
                    raise MalformedChange("trimmed")
                change = parse_change(eid, fields)
            except MalformedChange as exc:
                m.inc("rejected_malformed")
                _limited.warning(f"malformed:{exc.kind}", "history_entry_malformed", entry=eid, kind=exc.kind)
                continue
            step = self.book.step(change)
            if step.open is not None:
                touched[step.open.id] = step.open
                if step.open.updates == 1:
                    m.inc(f"started_{step.open.kind}")
                    if step.open.detect_ms is not None:
                        m.observe("detect_ms", step.open.detect_ms)
            if step.ended is not None:
                touched[step.ended.id] = None
                ended.append(step.ended)
        for cid, life in touched.items():
            if life is None:
                pipe.hdel(k.history_open, cid)
            else:
                pipe.hset(k.history_open, cid, life.to_json())
        for life in ended:
            pipe.hset(k.history_lives, life.life_id, life.to_json())
            pipe.zadd(k.history_ended, {life.life_id: life.end_ms or 0})
            m.inc(f"ended_{life.end_reason}")
            m.observe("lifetime_ms", life.lifetime_ms)
        pipe.xack(k.changes, k.history_group, *ids)
        pipe.execute()
        self.recent.extend(ended)

    def current_figures(self, now_ms: int | None = None) -> dict[str, object]:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        since = now_ms - self.window_ms
        while self.recent and (self.recent[0].end_ms or 0) < since:
            self.recent.popleft()
        book = self.book or LifeBook()
        return figures(self.recent, book.open.values(), now_ms, self.window_ms).to_dict()

    def write_figures(self) -> None:
        fig = self.current_figures()
        self.client.set(self.keys.history_figures, orjson.dumps(fig), ex=60)
        m = self.metrics
        m.set("open", fig["open"])
        for key in ("lifetime_s_p50", "lifetime_s_p90", "detect_ms_p50", "detect_ms_p90", "detect_ms_p99"):
            if fig[key] is not None:
                m.set(key, fig[key])

    def trim(self) -> int:
        cutoff = int(time.time() * 1000) - self.retention_ms
        total = 0
        while True:
            n = int(self._trim(keys=[self.keys.history_ended, self.keys.history_lives], args=[cutoff, 1000]))
            total += n
            if n < 1000:
                return total

    def stop(self) -> None:
        self._stop.set()
        if self._thread.alive:
            self._thread.join(timeout=5)
        try:  # hand the lease over at once
            if self.client.get(self.keys.history_lease) == self.token.encode():
                self.client.delete(self.keys.history_lease)
        except redis.RedisError:
            pass
        self.client.close()
