"""The portfolio sink: live portfolios, ranking, change stream, alerts.

`PortfolioSink` is a Bytewax `DynamicSink`. `write_batch` never talks to Redis itself: it
serializes each upsert (while the writer's backlog is small, `PACK_AHEAD_MAX`), hands the
batch to a per-partition write-behind writer (`connectors.redis.writer`) and returns at once,
so a slow or absent Redis never stalls the dataflow. The writer coalesces
per portfolio (the newest change wins), writes each round as one Lua script call per chunk
of `ROUND_CHUNK` changes, each sent as soon as it is packed (Redis runs a chunk while the next
is packed, and answers once per chunk), and on a Redis error keeps
everything it could not write and retries with backoff until Redis is back (the pending set
is bounded by the number of live portfolios; `sink.pending` reports it). A portfolio that
cannot be written (orjson refuses an integer above 2^64, say) is dropped and counted as
`sink.rejected_unwritable`; one Redis refuses (a key of another type under the prefix) is
dropped and counted as `sink.rejected_refused`; the others are written and the thread keeps
running (`sink.portfolio_writer_alive` is 1 while it does). Each change is applied by the
script as a unit that checks what is stored, so a replayed change (at-least-once delivery
after recovery) is a no-op: identical or older data writes nothing, a removal of an absent
portfolio writes nothing.
"""

from __future__ import annotations

import time
from operator import attrgetter
from typing import NamedTuple

import hiredis
import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis.layout import SCHEMA_VERSION, RedisKeys
from connectors.redis.writer import WriteBehind
from operators.pricing import CURVE_SIZES
from polyalphascan.logs import RateLimitedLog, get_logger
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import PortfolioChange, PortfolioQuote, PortfolioRemoved, PortfolioUpsert

_refusals = RateLimitedLog(get_logger(__name__))

#: `curve` keys in the JSON: the share-set counts as text ("10", "100", "1000")
CURVE_KEYS = tuple(f"{c:g}" for c in CURVE_SIZES)

# One script call writes a whole chunk of a round (`ROUND_CHUNK` changes at most): Redis then
# answers once per chunk, not once per change, so the writer thread wakes (and takes the GIL
# back from the dataflow) a few times per round instead of once per few changes.
# KEYS: ranking, opportunities, stream, alerts channel, llm opportunities, annualised ranking,
#       then the hash of each change.
# ARGV: maxlen, then 4 per change: op ('u' upsert, 'r' removal), id, data (the portfolio JSON)
#       or the removal's reason, values (upserts: a JSON array of the quote's values the script
#       reads, `SCRIPT_FIELDS`, written by the same `orjson.dumps` as data, so it decodes to the
#       numbers a decode of data would give; the script never decodes data itself, 1-3 KB of
#       questions and explanation).
# Returns one reply per change: 0 nothing written (identical or older data, an absent
# portfolio removed), else 1 + the alerts published; or the text of the error Redis raised on it.
# A guaranteed portfolio's profit is riskless: it goes to `opportunities` and raises the
# `tier1` / `profitable` alerts. An LLM portfolio (not guaranteed) is a bet on the LLM being
# right: it goes to `llm_opportunities` and raises only `llm_profitable`, never the others.
_ROUND = """
local RANKING, OPPORTUNITIES, STREAM, ALERTS, LLM_OPPORTUNITIES, ANNUALISED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local maxlen = ARGV[1]

local function alert(name, id, data)
  redis.call('PUBLISH', ALERTS, '{"alert":"' .. name .. '","id":"' .. id .. '","data":' .. data .. '}')
end

local function upsert(hash, id, data, values)
  local cur = redis.call('HMGET', hash, 'updated_ms', 'tier', 'net_profit')
  local v = cjson.decode(values)
  local kind, guaranteed, updated_ms, annualised = v[1], v[2], v[3], v[4]
  local expected_profit, tier, net_profit = v[10], v[11], v[13]
  if cur[1] then
    local seen = tonumber(cur[1])
    if seen > updated_ms then return 0 end
    -- data carries updated_ms: only a write of the same instant can be a replay of this one
    if seen == updated_ms and redis.call('HGET', hash, 'data') == data then return 0 end
  end
  -- the sorted sets hold a portfolio exactly while its last write was profitable
  local was_profitable = cur[3] and tonumber(cur[3]) > 1e-9
  redis.call('HSET', hash, 'data', data, 'updated_ms', string.format('%d', updated_ms),
    'expected_profit', expected_profit, 'profit', v[7], 'tier', tier, 'kind', kind,
    'guaranteed', guaranteed and 1 or 0, 'cost', v[5], 'payout', v[6], 'profit_pct', v[8],
    'coverage', v[9], 'size_at_profit', v[12], 'net_profit', net_profit,
    'annualised', annualised == cjson.null and '' or annualised)
  redis.call('ZADD', RANKING, expected_profit, id)
  -- an opportunity is a basket that makes money net of fees at a size every leg can order
  local profitable = net_profit > 1e-9
  local opportunities = guaranteed and OPPORTUNITIES or LLM_OPPORTUNITIES
  if profitable then redis.call('ZADD', opportunities, net_profit, id)
  elseif was_profitable then redis.call('ZREM', opportunities, id) end
  if profitable and annualised ~= cjson.null then redis.call('ZADD', ANNUALISED, annualised, id)
  elseif was_profitable then redis.call('ZREM', ANNUALISED, id) end
  redis.call('XADD', STREAM, 'MAXLEN', '~', maxlen, '*', 'op', 'upsert', 'id', id, 'data', data)
  local alerts = 0
  local turned_profitable = profitable and not was_profitable
  if not guaranteed then
    if turned_profitable then
      alert('llm_profitable', id, data)
      alerts = alerts + 1
    end
    return 1 + alerts
  end
  if tier == 1 and (not cur[2] or tonumber(cur[2]) ~= 1) then
    alert('tier1', id, data)
    alerts = alerts + 1
  end
  if turned_profitable then
    alert('profitable', id, data)
    alerts = alerts + 1
  end
  return 1 + alerts
end

local function remove(hash, id, reason)
  if redis.call('EXISTS', hash) == 0 then return 0 end
  redis.call('DEL', hash)
  redis.call('ZREM', ANNUALISED, id)
  redis.call('ZREM', RANKING, id)
  redis.call('ZREM', OPPORTUNITIES, id)
  redis.call('ZREM', LLM_OPPORTUNITIES, id)
  redis.call('XADD', STREAM, 'MAXLEN', '~', maxlen, '*', 'op', 'remove', 'id', id, 'data', '', 'reason', reason)
  return 1
end

local out = {}
for i = 1, #KEYS - 6 do
  local a = 2 + (i - 1) * 4
  local ok, r
  if ARGV[a] == 'u' then
    ok, r = pcall(upsert, KEYS[6 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  else
    ok, r = pcall(remove, KEYS[6 + i], ARGV[a + 1], ARGV[a + 2])
  end
  -- a change Redis refuses (a key of another type, values it cannot read) is answered with
  -- the error's text: the others in the chunk are written all the same
  if ok then out[i] = r else out[i] = type(r) == 'table' and tostring(r.err) or tostring(r) end
end
return out
"""
#: a change's result when Redis refused it (`rejected_refused` in the sink's metrics)
REFUSED = -1
#: changes per script call. Each chunk is sent as soon as it is packed, so Redis runs it while
#: the next is packed: a small chunk starts Redis sooner (a round at 7,000 updates/s is ~50
#: changes); one call runs without pause (~40-50 µs a change), so a chunk holds other clients
#: back for ~2-3 ms at most
ROUND_CHUNK = 50


def change_key(change: PortfolioChange) -> str:
    return change.quote.cover_id if isinstance(change, PortfolioUpsert) else change.cover_id


def portfolio_json(change: PortfolioUpsert) -> bytes:
    """The `data` field: the priced portfolio plus the legs' questions and the explanation."""
    q = change.quote
    legs = [
        {
            "market_id": lq.market_id,
            "side": lq.side,  # an enum: orjson writes its value
            "token_id": lq.token_id,
            "ask": lq.ask,
            "ask_size": lq.ask_size,
            "question": leg.question,
            "event_id": leg.event_id,
            # the order to place (issue 16)
            "shares": lq.shares,
            "limit": lq.limit,
            "vwap": lq.vwap,
            "fee": lq.fee,
            "tick": lq.tick,
            "min_size": lq.min_size,
            "neg_risk": lq.neg_risk,
        }
        for lq, leg in zip(q.legs, change.spec.legs)
    ]
    return orjson.dumps(
        {
            "id": q.cover_id,
            "kind": q.kind,
            "guaranteed": q.guaranteed,
            "legs": legs,
            "cost": q.cost,
            "payout": q.payout,
            "profit": q.profit,
            "profit_pct": q.profit_pct,
            "coverage": q.coverage,
            "loss_probability": q.loss_probability,
            "expected_profit": q.expected_profit,
            "tier": q.tier,
            "size_at_profit": q.size_at_profit,
            "net_profit": q.net_profit,
            "vwap_cost": q.vwap_cost,
            "fees": q.fees,
            "curve": dict(zip(CURVE_KEYS, q.curve)),
            "payout_date": q.payout_date,
            "annualised": q.annualised,
            "updated_ms": q.updated_ms,
            "explanation": change.spec.explanation,
        }
    )


#: the quote's values the upsert script reads (its `values` argument), in that order
SCRIPT_FIELDS = ("kind", "guaranteed", "updated_ms", "annualised", "cost", "payout", "profit", "profit_pct",
                 "coverage", "expected_profit", "tier", "size_at_profit", "net_profit")
_script_values = attrgetter(*SCRIPT_FIELDS)


def script_values(q: PortfolioQuote) -> bytes:
    """The upsert script's `values`: the JSON array of the quote's `SCRIPT_FIELDS` (an enum as its
    value, as `portfolio_json` writes it)."""
    return orjson.dumps(_script_values(q))


class PackedUpsert(NamedTuple):
    """An upsert as the script takes it, serialized on the worker when it is submitted: the
    writer thread then only frames and sends it. (Serializing a round on the writer thread
    fought the worker for the GIL: at 7,000 updates/s packing 50 changes stretched to 3-4 ms of
    wall time, all of it in the latency. The CPU is the same on either thread, as the GIL
    runs one at a time.) For restarts the writer remembers `change`, whose quote the join
    holds anyway, not the 1-3 KB of text."""

    data: bytes  # `portfolio_json`
    values: bytes  # `script_values`
    change: PortfolioUpsert


#: what the writer holds and sends per portfolio: upserts serialized on the worker, removals,
#: and upserts the writer serializes itself when it sends them (those remembered for a restart,
#: and those submitted while the backlog is over `PACK_AHEAD_MAX`)
WriterChange = PackedUpsert | PortfolioRemoved | PortfolioUpsert

#: the writer's backlog up to which upserts are serialized on the worker; past it (the first
#: registration of every portfolio, a Redis outage) they wait as quotes, which the join holds
#: anyway, and the writer serializes them when it sends them: the backlog's text never costs
#: more than a few MB, and a change superseded while waiting is never serialized
PACK_AHEAD_MAX = 1000


def pack_change(change: PortfolioChange | PackedUpsert) -> PackedUpsert | PortfolioRemoved:
    """An upsert serialized for the script (raises what orjson raises on a value it cannot
    write); a removal, or an upsert already packed, as it is."""
    if isinstance(change, PortfolioUpsert):
        return PackedUpsert(portfolio_json(change), script_values(change.quote), change)
    return change


def _remembered(packed: WriterChange) -> WriterChange:
    """What the writer keeps of a live portfolio to write again after a Redis restart."""
    return packed.change if isinstance(packed, PackedUpsert) else packed


def _updated_ms(change: WriterChange) -> int:
    """The quote's timestamp (0 for a removal)."""
    upsert = _remembered(change)
    return upsert.quote.updated_ms if isinstance(upsert, PortfolioUpsert) else 0


class PortfolioWriter:
    """The portfolio layout written behind the worker: a `WriteBehind` whose batches are one
    pipelined round of the Lua scripts (upserts are remembered and rewritten after a Redis
    restart; removals forget them)."""

    def __init__(
        self,
        redis_url: str,
        keys: RedisKeys,
        *,
        stream_max_len: int = 100_000,
        max_batch: int = 2000,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        metrics: MetricGroup | None = None,
    ) -> None:
        """`metrics`: the `sink` group to record in (a private one when not given)."""
        self.keys = keys
        self.metrics = metrics if metrics is not None else MetricGroup("sink")
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.stream_max_len = stream_max_len
        self._round = self.client.register_script(_ROUND)
        k = keys
        self._shared_keys = (k.ranking, k.opportunities, k.changes, k.alerts, k.llm_opportunities,
                             k.ranking_annualised)
        self._schema_set = hiredis.pack_command(("SET", k.schema, str(SCHEMA_VERSION)))
        self.behind: WriteBehind[WriterChange] = WriteBehind(
            self.client, self._write_round, live=lambda c: not isinstance(c, PortfolioRemoved), remember=_remembered,
            metrics=self.metrics,
            name="portfolio-writer", max_batch=max_batch, backoff_initial=backoff_initial, backoff_max=backoff_max,
            close_grace=10.0,
        )

    # called on the Bytewax worker: never blocks on Redis
    def submit(self, changes: list[PortfolioChange]) -> None:
        """Serialize each change (`pack_change`) and hand them to the writer; while the
        writer's backlog is over `PACK_AHEAD_MAX`, hand them over as they are. A change that
        cannot be serialized (orjson refuses an integer above 2^64, say) is dropped, counted as
        `rejected_unwritable` and logged, here or on the writer thread; the others go on."""
        if self.behind.backlog >= PACK_AHEAD_MAX:
            self.behind.submit([(change_key(change), change) for change in changes])
            return
        items: list[tuple[str, WriterChange]] = []
        for change in changes:
            key = change_key(change)
            try:
                items.append((key, pack_change(change)))
            except Exception as exc:  # noqa: BLE001 - one bad portfolio must not cost the batch
                self.behind.reject(key, exc)
        self.behind.submit(items)

    @property
    def pending(self) -> int:
        return self.behind.pending

    def thread_health(self) -> dict[str, object]:
        """The writer thread's health (`portfolio_writer_alive` gauge in the `sink` group)."""
        return self.behind.thread_health()

    def write_now(self, batch: dict[str, WriterChange]) -> list[int]:
        """One pipelined round for the batch (upserts serialized as they are sent); returns
        each change's result."""
        return self._write(batch)[0]

    def _write(self, batch: dict[str, WriterChange]) -> tuple[list[int], list[float]]:
        """One pipelined round: each change's result and the time (epoch ms) its chunk's reply
        was read, i.e. when it was in Redis. The script is called by its SHA without asking
        Redis whether it has it (that would be a second round trip per batch); when Redis lost
        it (a restart without persistence), the batch is written once more after loading it
        (every write is idempotent)."""
        try:
            return self._pipeline(batch)
        except redis.exceptions.NoScriptError:
            self.client.script_load(_ROUND)
            return self._pipeline(batch)

    def _pipeline(self, batch: dict[str, WriterChange]) -> tuple[list[int], list[float]]:
        """The batch streamed on one pooled connection (`_stream`), retried (reconnecting) as
        redis-py retries a pipeline."""
        items = list(batch.items())
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            replies, landed = conn.retry.call_with_retry(lambda: self._stream(conn, items),
                                                         lambda _error: conn.disconnect())
        finally:
            pool.release(conn)
        results = [r for chunk in replies for r in chunk]  # type: ignore[attr-defined]
        out: list[int] = []
        for (key, _change), r in zip(items, results):
            if isinstance(r, int):
                out.append(r)
            else:  # refused by Redis: never retried (it would be refused again), counted
                out.append(REFUSED)
                self._refused(key, r)
        return out, [t for chunk, t in zip(replies, landed) for _ in chunk]  # type: ignore[arg-type]

    def _stream(self, conn: redis.connection.AbstractConnection,
                items: list[tuple[str, WriterChange]]) -> tuple[list[object], list[float]]:
        """Send each chunk as soon as it is packed, so Redis runs one chunk while the next is
        being packed (before, the whole round was packed first and Redis idled meanwhile: the
        writer's capacity was 1 / (pack + Redis time) per change, now about 1 / Redis time);
        the SET of the schema version rides with the last chunk; then every reply is read.
        Sends are few on purpose: each one gives the GIL to the worker, and the writer waits
        up to the switch interval to get it back. Returns each chunk's reply and
        when it was read (epoch ms); raises the first error reply once every reply is read, so
        the connection stays in step. A failure while sending (packing a change raised, the
        socket broke) disconnects: replies of chunks already sent are never read on this
        connection."""
        pack, sha = hiredis.pack_command, self._round.sha
        shared, portfolio = self._shared_keys, self.keys.portfolio
        maxlen = str(self.stream_max_len)
        head = ("EVALSHA", sha)
        chunks = 0
        try:
            for start in range(0, len(items), ROUND_CHUNK):
                chunk = items[start:start + ROUND_CHUNK]
                hashes: list[str] = []
                args: list[str | bytes] = [maxlen]
                for key, change in chunk:
                    hashes.append(portfolio(key))
                    if isinstance(change, PortfolioUpsert):  # not serialized on the worker
                        change = pack_change(change)
                    if isinstance(change, PackedUpsert):
                        args += ("u", key, change.data, change.values)
                    else:
                        args += ("r", key, change.reason, "")
                command = pack((*head, str(len(shared) + len(chunk)), *shared, *hashes, *args))
                if start + ROUND_CHUNK >= len(items):
                    command += self._schema_set  # one send less: each send gives the GIL away
                conn.send_packed_command([command], check_health=chunks == 0)
                chunks += 1
            if not chunks:
                conn.send_packed_command([self._schema_set], check_health=True)
        except BaseException:
            conn.disconnect()
            raise
        replies: list[object] = []
        landed: list[float] = []
        error: redis.exceptions.ResponseError | None = None
        for _ in range(chunks + 1):
            try:
                replies.append(conn.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
                error = error or exc
            landed.append(time.time() * 1000)
        if error is not None:
            raise error
        return replies[:-1], landed[:-1]

    def _refused(self, key: str, error: object) -> None:
        self.metrics.inc("rejected_refused")
        _refusals.warning("refused", "portfolio_write_refused", portfolio=key,
                          error=(error.decode(errors="replace") if isinstance(error, bytes) else str(error))[:200])

    def _write_round(self, batch: dict[str, WriterChange]) -> None:
        """The writer thread's flush: one round, then its counters."""
        results, landed = self._write(batch)
        m = self.metrics
        m.observe_many("latency_ms", [  # exchange timestamp of the newest leg price -> in Redis
            at - ts for change, at in zip(batch.values(), landed) if (ts := _updated_ms(change))])
        written = sum(1 for r in results if r > 0)
        m.inc("written", written)
        m.inc("noop", sum(1 for r in results if r == 0))
        m.inc("alerts", sum(r - 1 for r in results if r > 1))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted is written (or the timeout passes)."""
        return self.behind.flush(timeout)

    def close(self, timeout: float = 15.0) -> None:
        self.behind.close(timeout)
        self.client.close()


class _PortfolioPartition(StatelessSinkPartition[PortfolioChange]):
    def __init__(self, writer: PortfolioWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[PortfolioChange]) -> None:
        self.writer.submit(items)

    def close(self) -> None:
        self.writer.close()


class PortfolioSink(DynamicSink[PortfolioChange]):
    """The portfolio layout under `key_prefix`; each partition has its own writer thread,
    all recording in `metrics` (the `sink` group; a private one when not given)."""

    def __init__(self, redis_url: str, key_prefix: str, *, stream_max_len: int = 100_000, max_batch: int = 2000,
                 metrics: MetricGroup | None = None) -> None:
        self.redis_url = redis_url
        self.keys = RedisKeys(key_prefix)
        self.stream_max_len = stream_max_len
        self.max_batch = max_batch
        self.metrics = metrics if metrics is not None else MetricGroup("sink")

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PortfolioPartition:
        return _PortfolioPartition(PortfolioWriter(self.redis_url, self.keys, stream_max_len=self.stream_max_len,
                                                   max_batch=self.max_batch, metrics=self.metrics))
