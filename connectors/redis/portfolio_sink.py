"""The portfolio sink: live portfolios, ranking, change stream, alerts.

`PortfolioSink` is a Bytewax `DynamicSink`. `write_batch` never talks to Redis itself: it
hands the batch to a per-partition write-behind writer (`connectors.redis.writer`) and
returns at once, so a slow or absent Redis never stalls the dataflow. The writer coalesces
per portfolio (the newest change wins), writes with one pipeline per round, and on a Redis
error keeps everything it could not write and retries with backoff until Redis is back (the
pending set is bounded by the number of live portfolios; `sink.pending` reports it). A
portfolio that cannot be written (orjson refuses an integer above 2^64, say) is dropped and
counted as `sink.rejected_unwritable`; the others are written and the thread keeps running
(`sink.portfolio_writer_alive` is 1 while it does). Each write is one Lua script, so a
replayed change (at-least-once delivery after recovery) is a no-op: identical or older
data writes nothing, a removal of an absent portfolio writes nothing.
"""

from __future__ import annotations

import time

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis.layout import SCHEMA_VERSION, RedisKeys
from connectors.redis.writer import WriteBehind
from operators.pricing import CURVE_SIZES
from polyalphascan.records import PortfolioChange, PortfolioUpsert

#: `curve` keys in the JSON: the share-set counts as text ("10", "100", "1000")
CURVE_KEYS = tuple(f"{c:g}" for c in CURVE_SIZES)
from polyalphascan.metrics import MetricGroup

# KEYS: hash, ranking, opportunities, stream, alerts channel, llm opportunities, annualised ranking
# ARGV: id, data (the portfolio JSON: the script reads its numbers, so the writer thread
#       formats nothing twice and Redis does that work on its own core), maxlen
# A guaranteed portfolio's profit is riskless: it goes to `opportunities` and raises the
# `tier1` / `profitable` alerts. An LLM portfolio (not guaranteed) is a bet on the LLM being
# right: it goes to `llm_opportunities` and raises only `llm_profitable`, never the others.
_UPSERT = """
local cur = redis.call('HMGET', KEYS[1], 'data', 'updated_ms', 'tier', 'net_profit')
if cur[1] == ARGV[2] then return 0 end
local d = cjson.decode(ARGV[2])
if cur[2] and tonumber(cur[2]) > d.updated_ms then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'updated_ms', string.format('%d', d.updated_ms),
  'expected_profit', d.expected_profit, 'profit', d.profit, 'tier', d.tier, 'kind', d.kind,
  'guaranteed', d.guaranteed and 1 or 0, 'cost', d.cost, 'payout', d.payout, 'profit_pct', d.profit_pct,
  'coverage', d.coverage, 'size_at_profit', d.size_at_profit, 'net_profit', d.net_profit,
  'annualised', d.annualised == cjson.null and '' or d.annualised)
redis.call('ZADD', KEYS[2], d.expected_profit, ARGV[1])
-- an opportunity is a basket that makes money net of fees at a size every leg can order
local profitable = d.net_profit > 1e-9
local opportunities = d.guaranteed and KEYS[3] or KEYS[6]
if profitable then redis.call('ZADD', opportunities, d.net_profit, ARGV[1]) else redis.call('ZREM', opportunities, ARGV[1]) end
if profitable and d.annualised ~= cjson.null then redis.call('ZADD', KEYS[7], d.annualised, ARGV[1])
else redis.call('ZREM', KEYS[7], ARGV[1]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'op', 'upsert', 'id', ARGV[1], 'data', ARGV[2])
local alerts = 0
local turned_profitable = profitable and (not cur[4] or tonumber(cur[4]) <= 1e-9)
if not d.guaranteed then
  if turned_profitable then
    redis.call('PUBLISH', KEYS[5], '{"alert":"llm_profitable","id":"' .. ARGV[1] .. '","data":' .. ARGV[2] .. '}')
    alerts = alerts + 1
  end
  return 1 + alerts
end
if d.tier == 1 and (not cur[3] or tonumber(cur[3]) ~= 1) then
  redis.call('PUBLISH', KEYS[5], '{"alert":"tier1","id":"' .. ARGV[1] .. '","data":' .. ARGV[2] .. '}')
  alerts = alerts + 1
end
if turned_profitable then
  redis.call('PUBLISH', KEYS[5], '{"alert":"profitable","id":"' .. ARGV[1] .. '","data":' .. ARGV[2] .. '}')
  alerts = alerts + 1
end
return 1 + alerts
"""

# KEYS: hash, ranking, opportunities, stream, llm opportunities, annualised ranking   ARGV: id, reason, maxlen
_REMOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'op', 'remove', 'id', ARGV[1], 'data', '', 'reason', ARGV[2])
return 1
"""


def change_key(change: PortfolioChange) -> str:
    return change.quote.cover_id if isinstance(change, PortfolioUpsert) else change.cover_id


def portfolio_json(change: PortfolioUpsert) -> bytes:
    """The `data` field: the priced portfolio plus the legs' questions and the explanation."""
    q = change.quote
    legs = [
        {
            "market_id": lq.market_id,
            "side": lq.side.value,
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
            "kind": q.kind.value,
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
        self._upsert = self.client.register_script(_UPSERT)
        self._remove = self.client.register_script(_REMOVE)
        self.behind: WriteBehind[PortfolioChange] = WriteBehind(
            self.client, self._write_round, live=lambda c: isinstance(c, PortfolioUpsert), metrics=self.metrics,
            name="portfolio-writer", max_batch=max_batch, backoff_initial=backoff_initial, backoff_max=backoff_max,
            close_grace=10.0,
        )

    # called on the Bytewax worker: never blocks on Redis
    def submit(self, changes: list[PortfolioChange]) -> None:
        self.behind.submit((change_key(c), c) for c in changes)

    @property
    def pending(self) -> int:
        return self.behind.pending

    def thread_health(self) -> dict[str, object]:
        """The writer thread's health (`portfolio_writer_alive` gauge in the `sink` group)."""
        return self.behind.thread_health()

    def write_now(self, batch: dict[str, PortfolioChange]) -> list[int]:
        """One pipelined round trip for the batch; returns each script's result. The upsert
        script is called by its SHA without asking Redis whether it has it (that would be a
        second round trip per batch); when Redis lost it (a restart without persistence), the
        batch is written once more after loading it (every write is idempotent)."""
        try:
            return self._pipeline(batch)
        except redis.exceptions.NoScriptError:
            self.client.script_load(_UPSERT)
            return self._pipeline(batch)

    def _pipeline(self, batch: dict[str, PortfolioChange]) -> list[int]:
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        maxlen = str(self.stream_max_len)
        upsert = pipe.evalsha  # the hot path: no per-call Script wrapper
        ranking, opportunities, changes, alerts = k.ranking, k.opportunities, k.changes, k.alerts
        llm_opportunities, annualised = k.llm_opportunities, k.ranking_annualised
        for key, change in batch.items():
            if isinstance(change, PortfolioUpsert):
                upsert(self._upsert.sha, 7, k.portfolio(key), ranking, opportunities, changes, alerts,
                       llm_opportunities, annualised, key, portfolio_json(change), maxlen)
            else:
                self._remove(
                    keys=[k.portfolio(key), k.ranking, k.opportunities, k.changes, llm_opportunities, annualised],
                    args=[key, change.reason, maxlen],
                    client=pipe,
                )
        pipe.set(k.schema, SCHEMA_VERSION)
        return [int(r) for r in pipe.execute()[:-1]]

    def _write_round(self, batch: dict[str, PortfolioChange]) -> None:
        """The writer thread's flush: one round, then its counters."""
        results = self.write_now(batch)
        m = self.metrics
        now_ms = time.time() * 1000
        for change in batch.values():  # exchange timestamp of the newest leg price -> in Redis
            if isinstance(change, PortfolioUpsert) and change.quote.updated_ms:
                m.observe("latency_ms", now_ms - change.quote.updated_ms)
        written = sum(1 for r in results if r > 0)
        m.inc("written", written)
        m.inc("noop", len(results) - written)
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
