"""Each branch of the sink's Lua script (connectors/redis/portfolio_sink.py `_ROUND`: its
`upsert` and `remove`, the loop over a chunk) against the real redis-server, plus the writer's
coalescing.

mutmut does not mutate Lua inside a Python string, so these tests stand in for it: every
guard and every write of the scripts has a test that fails when it is flipped or dropped
(older timestamp rejected, equal timestamp with new data written, identical data a no-op,
the opportunity set following profit both ways, alerts only on transitions, removals).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import orjson
import pytest
import redis

from connectors.redis.portfolio_sink import (REFUSED, ROUND_CHUNK, PackedUpsert, PortfolioWriter, change_key,
                                             pack_change, portfolio_json)
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from polyalphascan.logs import RateLimitedLog
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import (
    CoverKind,
    CoverSpec,
    Leg,
    LegQuote,
    PortfolioChange,
    PortfolioQuote,
    PortfolioRemoved,
    PortfolioUpsert,
    Side,
)
from tests.waiting import wait_for

KEYS = RedisKeys("lua")
LEGS = (Leg("m1", Side.YES, "y1", "n1", "Q1?", "e1"), Leg("m2", Side.NO, "y2", "n2", "Q2?", "e2"))
SPEC = CoverSpec(CoverKind.TIMEFRAME, LEGS, guaranteed=True, cover_probability=1.0,
                 explanation="one implies the other")
LLM_SPEC = CoverSpec(CoverKind.LLM, LEGS, guaranteed=False, cover_probability=0.98, explanation="an LLM says so")
CID = SPEC.id


#: the order fields of a leg quote built without a walk (as `LegQuote` defaults them)
UNFILLED = {"shares": 0.0, "limit": None, "vwap": None, "fee": 0.0, "tick": 0.01, "min_size": 0.0, "neg_risk": False}


def upsert(cost: float, ts: int, *, tier: int = 1, size: float = 5.0, spec: CoverSpec = SPEC,
           guaranteed: bool = True) -> PortfolioUpsert:
    profit = round(1.0 - cost, 10)
    q = PortfolioQuote(spec.id, spec.kind, guaranteed,
                       (LegQuote("m1", Side.YES, "y1", 0.4, size, 0.39), LegQuote("m2", Side.NO, "n2", cost - 0.4, 9.0, None)),
                       cost, 1.0, profit, profit / cost * 100, 0.99 if tier == 1 else 0.91, 0.01, 0.99 - cost, tier,
                       size if profit > 1e-9 else 0.0, ts,
                       net_profit=round(profit * size, 10) if profit > 1e-9 else 0.0)
    return PortfolioUpsert(q, spec)


@pytest.fixture()
def writer(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> Iterator[PortfolioWriter]:
    w = PortfolioWriter(redis_server.url, KEYS, stream_max_len=100)
    yield w
    w.close()


class Alerts:
    """The alerts published on the channel, read as they arrive."""

    def __init__(self, client: redis.Redis) -> None:
        self.ps = client.pubsub()
        self.ps.subscribe(KEYS.alerts)
        assert self.ps.get_message(timeout=2)["type"] == "subscribe"

    def read(self, expect: int) -> list[dict]:
        """The next `expect` alerts (waiting up to 2 s each), and a short look for any extra."""
        got = []
        while len(got) < expect and (msg := self.ps.get_message(timeout=2)) is not None:
            got.append(orjson.loads(msg["data"]))
        while (msg := self.ps.get_message(timeout=0.05)) is not None:
            got.append(orjson.loads(msg["data"]))
        return got


@pytest.fixture()
def alerts(redis_client: redis.Redis) -> Iterator[Alerts]:
    a = Alerts(redis_client)
    yield a
    a.ps.close()


def write(w: PortfolioWriter, change) -> int:  # noqa: ANN001
    (r,) = w.write_now({change_key(change): change})
    return r


def record(client: redis.Redis) -> dict[str, bytes]:
    return {k.decode(): v for k, v in client.hgetall(KEYS.portfolio(CID)).items()}


def stream(client: redis.Redis) -> list[dict[str, bytes]]:
    return [{k.decode(): v for k, v in f.items()} for _id, f in client.xrange(KEYS.changes)]


def test_upsert_writes_every_field_and_the_stream_entry(writer: PortfolioWriter, redis_client: redis.Redis,
                                                        alerts: Alerts) -> None:
    ch = upsert(0.9, 1_764_000_000_123)
    assert write(writer, ch) == 3  # written + tier-1 alert + profitable alert
    rec = record(redis_client)
    data = orjson.loads(rec["data"])
    assert rec["data"] == portfolio_json(ch)
    assert data == {
        "id": CID, "kind": "timeframe", "guaranteed": True,
        "legs": [{"market_id": "m1", "side": "YES", "token_id": "y1", "ask": 0.4, "ask_size": 5.0, "question": "Q1?",
                  "event_id": "e1", **UNFILLED},
                 {"market_id": "m2", "side": "NO", "token_id": "n2", "ask": pytest.approx(0.5), "ask_size": 9.0,
                  "question": "Q2?", "event_id": "e2", **UNFILLED}],
        "net_profit": pytest.approx(0.5), "vwap_cost": None, "fees": 0.0, "curve": {}, "payout_date": None,
        "annualised": None,
        "cost": 0.9, "payout": 1.0, "profit": pytest.approx(0.1), "profit_pct": pytest.approx(0.1 / 0.9 * 100),
        "coverage": 0.99, "loss_probability": 0.01, "expected_profit": pytest.approx(0.09), "tier": 1,
        "size_at_profit": 5.0, "updated_ms": 1_764_000_000_123, "explanation": "one implies the other",
    }
    assert rec["updated_ms"] == b"1764000000123"  # a whole number, never 1.764e+12
    assert (rec["kind"], rec["guaranteed"], rec["tier"]) == (b"timeframe", b"1", b"1")
    for name in ("cost", "payout", "profit", "profit_pct", "coverage", "expected_profit", "size_at_profit", "net_profit"):
        assert float(rec[name]) == pytest.approx(data[name], abs=1e-12), name
    assert redis_client.zscore(KEYS.ranking, CID) == pytest.approx(0.09)
    assert redis_client.zscore(KEYS.opportunities, CID) == pytest.approx(0.5)  # net: 0.1 × 5 share-sets
    (entry,) = stream(redis_client)
    assert entry == {"op": b"upsert", "id": CID.encode(), "data": rec["data"]}
    got = alerts.read(2)
    assert [(a["alert"], a["id"]) for a in got] == [("tier1", CID), ("profitable", CID)]
    assert all(a["data"] == data for a in got)
    assert redis_client.get(KEYS.schema) == b"2"
    g = upsert(0.9, 5, spec=LLM_SPEC, guaranteed=False, tier=2)
    write(writer, g)
    assert redis_client.hget(KEYS.portfolio(g.quote.cover_id), "guaranteed") == b"0"


def test_timestamps_older_rejected_equal_and_newer_written(writer: PortfolioWriter, redis_client: redis.Redis) -> None:
    assert write(writer, upsert(0.95, 1000, tier=2, size=5)) == 2  # profitable: one alert
    before = (record(redis_client), redis_client.xlen(KEYS.changes))
    assert write(writer, upsert(0.80, 999, tier=2)) == 0  # older: nothing
    assert (record(redis_client), redis_client.xlen(KEYS.changes)) == before
    assert write(writer, upsert(0.95, 1000, tier=2, size=5)) == 0  # identical: nothing
    assert redis_client.xlen(KEYS.changes) == before[1]
    # the same timestamp, other numbers (a size change in the same millisecond): written
    assert write(writer, upsert(0.95, 1000, tier=2, size=3)) == 1
    assert orjson.loads(record(redis_client)["data"])["size_at_profit"] == 3.0
    assert redis_client.xlen(KEYS.changes) == before[1] + 1
    assert write(writer, upsert(0.93, 1001, tier=2, size=3)) == 1  # newer
    assert float(record(redis_client)["cost"]) == 0.93 and record(redis_client)["updated_ms"] == b"1001"
    assert redis_client.xlen(KEYS.changes) == before[1] + 2


def test_opportunities_follow_profit_both_ways(writer: PortfolioWriter, redis_client: redis.Redis) -> None:
    write(writer, upsert(0.95, 1, tier=2))  # score: the net $ profit at the size, 0.05 × 5
    assert redis_client.zscore(KEYS.opportunities, CID) == pytest.approx(0.25)
    write(writer, upsert(1.0, 2, tier=2))  # exactly break-even: no opportunity
    assert redis_client.zscore(KEYS.opportunities, CID) is None
    assert redis_client.zscore(KEYS.ranking, CID) == pytest.approx(0.99 - 1.0)  # still ranked
    write(writer, upsert(0.98, 3, tier=2))
    assert redis_client.zscore(KEYS.opportunities, CID) == pytest.approx(0.10)
    write(writer, upsert(1.07, 4, tier=2))  # turns unprofitable
    assert redis_client.zscore(KEYS.opportunities, CID) is None
    assert redis_client.zscore(KEYS.ranking, CID) == pytest.approx(0.99 - 1.07)


def test_alerts_only_on_transitions_into_tier_1_and_into_profit(writer: PortfolioWriter, alerts: Alerts) -> None:
    steps = [  # (cost, tier) -> the alerts it must raise, the script's result
        ((1.02, 2), [], 1),
        ((1.01, 1), ["tier1"], 2),  # tier 2 -> 1
        ((1.03, 1), [], 1),  # still tier 1
        ((1.00, 1), [], 1),  # break-even is not profit
        ((0.97, 1), ["profitable"], 2),  # from exactly zero profit into profit
        ((0.96, 1), [], 1),  # still profitable
        ((0.96, 2), [], 1),  # tier 1 -> 2
        ((1.04, 2), [], 1),  # profit lost
        ((0.90, 1), ["tier1", "profitable"], 3),  # both at once
    ]
    for ts, ((cost, tier), want, result) in enumerate(steps, start=1):
        assert write(writer, upsert(cost, ts, tier=tier)) == result, (cost, tier)
        assert [a["alert"] for a in alerts.read(len(want))] == want, (cost, tier)


def test_removal_of_a_live_and_of_an_absent_portfolio(writer: PortfolioWriter, redis_client: redis.Redis) -> None:
    other = upsert(0.9, 1, spec=LLM_SPEC, guaranteed=False, tier=2)
    write(writer, upsert(0.9, 1))
    write(writer, other)
    n = redis_client.xlen(KEYS.changes)
    assert write(writer, PortfolioRemoved(CID, "market_closed")) == 1
    assert not redis_client.exists(KEYS.portfolio(CID))
    assert redis_client.zscore(KEYS.ranking, CID) is None and redis_client.zscore(KEYS.opportunities, CID) is None
    last = stream(redis_client)[-1]
    assert last == {"op": b"remove", "id": CID.encode(), "data": b"", "reason": b"market_closed"}
    # the other portfolio is untouched
    assert redis_client.exists(KEYS.portfolio(other.quote.cover_id))
    assert redis_client.zscore(KEYS.llm_opportunities, other.quote.cover_id) == pytest.approx(0.5)
    # removing it again (a replay) writes nothing
    assert write(writer, PortfolioRemoved(CID, "market_closed")) == 0
    assert redis_client.xlen(KEYS.changes) == n + 1
    # re-registered after a removal: written again even with an older timestamp (nothing to compare with)
    assert write(writer, upsert(0.92, 0)) == 3
    assert orjson.loads(record(redis_client)["data"])["cost"] == 0.92


def test_the_change_stream_is_capped(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    w = PortfolioWriter(redis_server.url, KEYS, stream_max_len=100)
    try:
        for ts in range(1, 1001):
            w.write_now({CID: upsert(0.9 + (ts % 2) * 0.01, ts)})
    finally:
        w.close()
    # MAXLEN ~ trims whole stream nodes (100 entries each): never below the cap, never far above
    assert 100 <= redis_client.xlen(KEYS.changes) <= 300


def test_writer_coalesces_newest_wins_and_forgets_removed_portfolios(redis_server: EmbeddedRedis,
                                                                     redis_client: redis.Redis) -> None:
    server = EmbeddedRedis().start()  # a private server that is stopped, so nothing is taken while we look
    server.stop()
    w = PortfolioWriter(server.url, KEYS, backoff_initial=0.05, backoff_max=0.1)
    try:
        other = upsert(0.9, 1, spec=LLM_SPEC, guaranteed=False, tier=2)
        w.submit([upsert(0.9, 1), other])
        w.submit([upsert(0.8, 2)])
        w.submit([PortfolioRemoved(other.quote.cover_id, "filtered")])
        pending, live = w.behind.snapshot()
        # in-flight batches come back to the pending map; the newest change of each portfolio wins
        deadline = time.monotonic() + 5
        while len(pending) != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            pending, _ = w.behind.snapshot()
        assert orjson.loads(pending[CID].data)["cost"] == 0.8  # kept serialized, as submitted
        assert pending[other.quote.cover_id] == PortfolioRemoved(other.quote.cover_id, "filtered")
        assert set(live) == {CID} and live[CID].quote.cost == 0.8  # the quote, not its text
        # a change that arrived while a batch was out is not overwritten by the batch coming back
        w.behind._putback({CID: pack_change(upsert(0.7, 0))})
        assert orjson.loads(w.behind.snapshot()[0][CID].data)["cost"] == 0.8
    finally:
        w.close(timeout=0.5)


def test_sink_partition_flushes_on_close_and_metrics_writer_writes_at_stop(redis_server: EmbeddedRedis,
                                                                           redis_client: redis.Redis) -> None:
    from connectors.redis.portfolio_sink import PortfolioSink
    from connectors.redis.metrics_writer import MetricsWriter, read_metrics
    from polyalphascan.metrics import MetricsRegistry

    part = PortfolioSink(redis_server.url, "lua", stream_max_len=100).build("sink", 0, 1)
    part.write_batch([upsert(0.9, 1), upsert(0.8, 2)])  # coalesced: the newer one is written
    part.close()  # returns once the writer has written everything
    assert float(redis_client.hget(KEYS.portfolio(CID), "cost")) == 0.8
    assert part.writer.pending == 0 and not part.writer.behind.alive
    registry = MetricsRegistry()
    g = registry.group("luatest")
    g.set("answer", 42)
    g.set("shape", {"a": 1})  # not a number: stored as JSON, skipped when summed
    mw = MetricsWriter(redis_server.url, "lua", registry, interval=60, ttl=7).start()
    mw.stop()  # the final write happens at stop, whatever the interval
    key = KEYS.metrics("luatest", mw.process)
    assert redis_client.hget(key, "shape") == b'{"a":1}' and 0 < redis_client.ttl(key) <= 7
    assert read_metrics(redis_client, KEYS, "luatest") == {"answer": 42.0}



def test_llm_portfolios_are_kept_apart_from_the_riskless_arbitrage_set(writer: PortfolioWriter,
                                                                       redis_client: redis.Redis,
                                                                       alerts: Alerts) -> None:
    """An LLM cover is a bet on the LLM being right: never in `opportunities`, never a tier1 or
    profitable alert; its own sorted set and its own alert kind."""
    lid = LLM_SPEC.id
    assert write(writer, upsert(0.9, 1, spec=LLM_SPEC, guaranteed=False, tier=1)) == 2  # written + llm alert
    assert redis_client.zscore(KEYS.opportunities, lid) is None
    assert redis_client.zscore(KEYS.llm_opportunities, lid) == pytest.approx(0.5)
    assert [(a["alert"], a["id"]) for a in alerts.read(1)] == [("llm_profitable", lid)]
    assert write(writer, upsert(0.92, 2, spec=LLM_SPEC, guaranteed=False, tier=1)) == 1  # still profitable
    assert write(writer, upsert(1.02, 3, spec=LLM_SPEC, guaranteed=False)) == 1  # turns unprofitable
    assert redis_client.zscore(KEYS.llm_opportunities, lid) is None
    assert write(writer, upsert(0.95, 4, spec=LLM_SPEC, guaranteed=False)) == 2  # profitable again: alert
    assert [a["alert"] for a in alerts.read(1)] == ["llm_profitable"]
    # a guaranteed portfolio beside it goes to the riskless set only
    assert write(writer, upsert(0.9, 5)) == 3
    assert redis_client.zscore(KEYS.opportunities, CID) == pytest.approx(0.5)
    assert redis_client.zscore(KEYS.llm_opportunities, CID) is None
    assert [a["alert"] for a in alerts.read(2)] == ["tier1", "profitable"]
    writer.write_now({lid: PortfolioRemoved(lid, "market_closed")})
    assert redis_client.zscore(KEYS.llm_opportunities, lid) is None and not redis_client.exists(KEYS.portfolio(lid))


#: the upsert script as it was when it decoded the whole portfolio JSON: the reference the script
#: that reads only the `values` argument must match write for write
DECODING_UPSERT = """
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

#: numbers whose text and rendering are the awkward ones: tiny, huge, not exact in binary, negative zero
ODD_NUMBERS = (0.1 + 0.2, 1e-5, 1e-7, 1e16, 1e22, 123456789.123456789, -0.0, 0.0, 2.5e-10, 1 / 3, 7.0, 1e-300)
QUESTIONS = ('Will "X" win, or not?', "Élysée: 100% sure? ✓", "a\\b\nc", "plain?", "%s %d %%", "")


def random_upsert(rng: random.Random, cover: int, ts: int) -> PortfolioUpsert:
    """A quote of cover `cover` (one of a few specs) with random, sometimes odd, numbers and None values."""
    def num() -> float:
        return rng.choice(ODD_NUMBERS) if rng.random() < 0.3 else round(rng.uniform(-2, 2), rng.randint(1, 12))

    guaranteed = cover % 3 != 0
    legs = tuple(Leg(f"m{cover}-{j}", rng.choice((Side.YES, Side.NO)), f"y{cover}{j}", f"n{cover}{j}",
                     QUESTIONS[(cover + j) % len(QUESTIONS)], f"e{cover}") for j in range(2 + cover % 4))
    spec = CoverSpec(CoverKind.TIMEFRAME if guaranteed else CoverKind.LLM, legs, guaranteed=guaranteed,
                     cover_probability=1.0 if guaranteed else 0.97, explanation=QUESTIONS[cover % len(QUESTIONS)])
    net = rng.choice((0.0, 1e-10, 1e-9, num(), abs(num()) + 1e-6))
    lqs = tuple(LegQuote(leg.market_id, leg.side, leg.token_id, num(), rng.choice((None, num())), None,
                         num(), rng.choice((None, num())), rng.choice((None, num())), num(), 0.01, 5.0,
                         rng.random() < 0.5) for leg in legs)
    q = PortfolioQuote(spec.id, spec.kind, guaranteed, lqs, num(), rng.choice((1.0, 2.0, num())), num(), num(),
                       num(), num(), num(), rng.choice((1, 2, 3)), num(), ts, net_profit=net,
                       vwap_cost=rng.choice((None, num())), fees=num(),
                       curve=tuple(rng.choice((None, num())) for _ in range(rng.choice((0, 3)))),
                       payout_date=rng.choice((None, "2026-12-31")), annualised=rng.choice((None, num())))
    return PortfolioUpsert(q, spec)


def layout(client: redis.Redis, keys: RedisKeys) -> dict[str, object]:
    """Everything the sink wrote under `keys`: hashes, sorted sets with scores, stream entries."""
    base = keys.portfolio("")
    hashes = {k.decode().removeprefix(base): client.hgetall(k) for k in client.scan_iter(f"{base}*")}
    zsets = {name: client.zrange(getattr(keys, name), 0, -1, withscores=True)
             for name in ("ranking", "opportunities", "llm_opportunities", "ranking_annualised")}
    return {"hashes": hashes, "zsets": zsets, "stream": [f for _id, f in client.xrange(keys.changes)]}


#: the removal script as it was when each change was its own script call: the reference
DECODING_REMOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'op', 'remove', 'id', ARGV[1], 'data', '', 'reason', ARGV[2])
return 1
"""


def test_the_script_writes_what_the_decoding_script_wrote(writer: PortfolioWriter, redis_client: redis.Redis,
                                                          alerts: Alerts) -> None:
    """Random quotes (odd floats, None values, unicode, quotes and `%` in the text), replays, older
    timestamps and removals, written by the writer and by the script that decoded `data`: the same
    hashes (field for field, byte for byte), scores, stream entries, alerts and results."""
    ref_keys = RedisKeys("ref")
    ref, ref_remove = redis_client.script_load(DECODING_UPSERT), redis_client.script_load(DECODING_REMOVE)
    ref_alerts = redis_client.pubsub()
    ref_alerts.subscribe(ref_keys.alerts)
    assert ref_alerts.get_message(timeout=2)["type"] == "subscribe"
    rng = random.Random(11)
    got, want, last = [], [], {}
    for step in range(400):
        cover = rng.randrange(12)
        if step % 37 == 36 and cover in last:
            change: PortfolioChange = PortfolioRemoved(change_key(last.pop(cover)), "filtered")
            want.append(redis_client.evalsha(ref_remove, 6, ref_keys.portfolio(change.cover_id),
                                             ref_keys.ranking, ref_keys.opportunities, ref_keys.changes,
                                             ref_keys.llm_opportunities, ref_keys.ranking_annualised,
                                             change.cover_id, change.reason, "100"))
        else:  # newer, the same (a replay) or older
            replay = cover in last and rng.random() < 0.15
            change = last[cover] if replay else random_upsert(rng, cover, 1000 + step - rng.choice((0, 0, 0, 50)))
            last[cover] = change
            key = change_key(change)
            want.append(redis_client.evalsha(ref, 7, ref_keys.portfolio(key), ref_keys.ranking, ref_keys.opportunities,
                                             ref_keys.changes, ref_keys.alerts, ref_keys.llm_opportunities,
                                             ref_keys.ranking_annualised, key, portfolio_json(change), "100"))
        got.extend(writer.write_now({change_key(change): change}))
    assert got == want and sum(r > 1 for r in got) > 10 and got.count(0) > 10
    assert layout(redis_client, KEYS) == layout(redis_client, ref_keys)
    ref_got = []
    while (msg := ref_alerts.get_message(timeout=0.2)) is not None:
        ref_got.append(msg["data"])
    ref_alerts.close()
    assert [orjson.dumps(a) for a in alerts.read(len(ref_got))] == [orjson.dumps(orjson.loads(d)) for d in ref_got]


class Recorder:
    """A logger that keeps its warnings."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **kw: object) -> None:
        self.warnings.append((event, kw))


def test_a_change_redis_refuses_is_counted_and_the_rest_of_its_round_is_written(
        writer: PortfolioWriter, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key of another type (or anything else Redis raises on) costs that change only: the
    others of its chunk are written, the refused one is answered -1, counted, never retried."""
    import connectors.redis.portfolio_sink as sink
    log = Recorder()
    monkeypatch.setattr(sink, "_refusals", RateLimitedLog(log))
    other = upsert(0.9, 1, spec=LLM_SPEC, guaranteed=False, tier=2)
    redis_client.set(KEYS.portfolio(CID), "not a hash")
    assert writer.write_now({CID: upsert(0.9, 1), other.quote.cover_id: other}) == [REFUSED, 2]  # + llm alert
    assert writer.metrics.get("rejected_refused") == 1
    ((event, fields),) = log.warnings
    assert event == "portfolio_write_refused" and fields["portfolio"] == CID
    assert str(fields["error"]).startswith("WRONGTYPE Operation against a key")
    assert float(redis_client.hget(KEYS.portfolio(other.quote.cover_id), "cost")) == 0.9  # written
    assert redis_client.zscore(KEYS.ranking, CID) is None  # nothing of the refused one
    writer._write_round({CID: PortfolioRemoved(CID, "filtered"), other.quote.cover_id: pack_change(other)})  # noqa: SLF001
    assert writer.metrics.get("rejected_refused") == 1  # a removal of a plain key: it goes
    assert (writer.metrics.get("written"), writer.metrics.get("noop")) == (1, 1)
    redis_client.delete(KEYS.portfolio(CID))
    assert writer.write_now({CID: upsert(0.9, 2), other.quote.cover_id: other}) == [3, 0]
    assert writer.write_now({CID: PortfolioRemoved(CID, "filtered")}) == [1]


def test_a_round_of_several_chunks_writes_what_one_change_a_round_writes(
        redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    """`ROUND_CHUNK` changes per script call: a round of 2.5 chunks (upserts and removals mixed)
    gives the results and the layout of the same changes written one per round."""
    rng = random.Random(5)
    many, one = RedisKeys("chunks-many"), RedisKeys("chunks-one")
    chunked = PortfolioWriter(redis_server.url, many, stream_max_len=10_000)
    single = PortfolioWriter(redis_server.url, one, stream_max_len=10_000)
    try:
        first = [random_upsert(rng, c, 1000) for c in range(ROUND_CHUNK * 5 // 2)]
        later = [PortfolioRemoved(change_key(ch), "filtered") if i % 3 == 0 else random_upsert(rng, i, 2000)
                 for i, ch in enumerate(first)]
        for changes in (first, later):
            batch = {change_key(ch): ch for ch in changes}
            got = chunked.write_now(batch)
            want = [r for ch in batch.values() for r in single.write_now({change_key(ch): ch})]
            assert got == want and len(got) == len(batch) > 2 * ROUND_CHUNK
        assert layout(redis_client, many) == layout(redis_client, one)
        assert len(layout(redis_client, many)["stream"]) > 2 * ROUND_CHUNK  # type: ignore[arg-type]
    finally:
        chunked.close()
        single.close()


def test_the_script_is_loaded_again_when_redis_lost_it(writer: PortfolioWriter,
                                                            redis_client: redis.Redis) -> None:
    write(writer, upsert(0.9, 1))
    redis_client.script_flush()
    assert writer.write_now({CID: PortfolioRemoved(CID, "filtered")}) == [1]
    redis_client.script_flush()
    assert writer.write_now({CID: upsert(0.9, 2), "absent": PortfolioRemoved("absent", "filtered")}) == [3, 0]


def test_a_change_that_cannot_be_framed_after_chunks_were_sent_leaves_the_connection_in_step(
        writer: PortfolioWriter, redis_client: redis.Redis) -> None:
    """Chunks go to Redis as they are framed: when a later change cannot be framed (a value
    hiredis does not take), chunks already sent have replies nobody reads. The round raises,
    and the next round on the same writer reads its own replies, not those."""
    rng = random.Random(11)
    sent = [random_upsert(rng, c, 1000) for c in range(ROUND_CHUNK + 3)]
    poisoned = PackedUpsert(None, b"[]", upsert(0.9, 1))  # type: ignore[arg-type]
    batch = {**{change_key(ch): ch for ch in sent}, CID: poisoned}
    with pytest.raises(TypeError):
        writer.write_now(batch)
    fresh = [random_upsert(rng, 1000 + c, 5000) for c in range(3)]
    assert writer.write_now({CID: upsert(0.9, 1), **{change_key(ch): ch for ch in fresh}})[0] == 3
    again = writer.write_now({CID: upsert(0.9, 1)})
    assert again == [0]  # identical data: a no-op, answered for this change
    assert writer.write_now({change_key(ch): ch for ch in fresh}) == [0, 0, 0]


def test_each_change_lands_when_its_chunk_is_answered(writer: PortfolioWriter) -> None:
    """A round of 2.5 chunks: one landing time per change, shared by the changes of a chunk,
    in chunk order (the latency metric's end point)."""
    rng = random.Random(3)
    changes = [random_upsert(rng, c, 1000) for c in range(ROUND_CHUNK * 5 // 2)]
    before = time.time() * 1000
    results, landed = writer._write({change_key(ch): pack_change(ch) for ch in changes})  # noqa: SLF001
    assert len(results) == len(landed) == len(changes)
    assert landed == sorted(landed)
    assert all(t == landed[i // ROUND_CHUNK * ROUND_CHUNK] for i, t in enumerate(landed))
    assert before <= landed[0] < landed[ROUND_CHUNK] < landed[2 * ROUND_CHUNK] <= time.time() * 1000


def test_past_the_pack_ahead_backlog_upserts_wait_as_quotes_and_are_written_all_the_same(
        redis_server: EmbeddedRedis, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upserts are serialized on the worker while the writer's backlog is under
    `PACK_AHEAD_MAX`; past it they wait as quotes and the writer serializes them when it sends
    them: same records, same latency samples."""
    import connectors.redis.portfolio_sink as sink
    monkeypatch.setattr(sink, "PACK_AHEAD_MAX", 2)
    server = EmbeddedRedis().start()
    server.stop()  # nothing is written: the backlog stays
    w = PortfolioWriter(server.url, KEYS, backoff_initial=0.05, backoff_max=0.1)
    try:
        first = [upsert(0.9, 1), upsert(0.9, 1, spec=LLM_SPEC, guaranteed=False, tier=2)]
        w.submit(first)
        wait_for(lambda: len(w.behind.snapshot()[0]) == 2, what="the first two back in the backlog")
        later = random_upsert(random.Random(2), 7, 5)
        w.submit([later])
        pending, live = w.behind.snapshot()
        assert {k: type(v) for k, v in pending.items()} == {CID: PackedUpsert, LLM_SPEC.id: PackedUpsert,
                                                           change_key(later): PortfolioUpsert}
        assert all(isinstance(v, PortfolioUpsert) for v in live.values())  # the quotes are remembered
    finally:
        w.close(timeout=0.5)
    m = MetricGroup("sink")
    live_writer = PortfolioWriter(redis_server.url, KEYS, metrics=m)
    try:
        now = int(time.time() * 1000)
        waiting = upsert(0.9, now - 1000)
        live_writer._write_round({CID: waiting})  # noqa: SLF001 - as the writer thread gets it
        assert m.get("written") == 1 and m.get("latency_ms_count") == 1 and m.get("latency_ms_sum") >= 1000
        assert record(redis_client)["data"] == portfolio_json(waiting)
    finally:
        live_writer.close()


def test_a_round_of_exactly_two_chunks_and_an_empty_round_are_answered_with_the_schema_set(
        writer: PortfolioWriter, redis_client: redis.Redis) -> None:
    """The schema `SET` rides with the last chunk, also when the round fills its chunks
    exactly; an empty round sends it alone. Every reply is read: nothing is left for the next
    round."""
    rng = random.Random(8)
    changes = [random_upsert(rng, c, 1000) for c in range(2 * ROUND_CHUNK)]
    redis_client.delete(KEYS.schema)
    assert len(writer.write_now({change_key(ch): ch for ch in changes})) == 2 * ROUND_CHUNK
    assert redis_client.get(KEYS.schema) is not None
    redis_client.delete(KEYS.schema)
    assert writer.write_now({}) == []
    assert redis_client.get(KEYS.schema) is not None
    assert write(writer, upsert(0.9, 1)) == 3  # the connection is in step
