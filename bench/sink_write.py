"""Portfolio sink write cost: writer-thread CPU and Redis CPU per upsert, old path vs new.

Starts an embedded redis-server, builds `--covers` covering portfolios of 2-13 legs with
real-looking questions (60-120 characters, some with commas, quotes and non-ASCII text) and
explanations, and writes one upsert of every portfolio per pass, in rounds of `--round`
changes (one `write_now` each, as the writer thread does). Two writers run side by side in the
same process and the same Redis, each under its own key prefix:

- `old`: the write path before the script stopped decoding the portfolio JSON (the Lua script
  `cjson.decode`s all of `data`, the JSON reads enums through `.value`, the round goes through a
  redis-py pipeline and `pipe.evalsha`), kept in this file as the baseline;
- `new`: `connectors.redis.portfolio_sink.PortfolioWriter` as it is now.

Both first write every portfolio once (the warm-up: the hashes exist),
then alternate old/new update passes (ABAB, `--repeats` of each; every pass has newer
timestamps, so nothing is a replay). Per pass and per upsert it prints the writer-thread
Python CPU (`time.thread_time` around the writes, which excludes waiting on Redis) and the
Redis server CPU (`used_cpu_user + used_cpu_sys` deltas of `INFO cpu`), then the medians
and the ratios new/old. Quote building is outside the timed region. It asserts nothing.

    .venv/bin/python -m bench.sink_write [--covers 20000] [--round 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import orjson
import redis

from connectors.redis.layout import SCHEMA_VERSION, RedisKeys
from connectors.redis.portfolio_sink import CURVE_KEYS, PortfolioWriter
from connectors.redis.server import EmbeddedRedis
from operators.pricing import CURVE_SIZES
from polyalphascan.records import (CoverKind, CoverSpec, Leg, LegQuote, PortfolioChange, PortfolioQuote,
                                   PortfolioUpsert, Side)

#: the upsert script before this change: it decodes the whole portfolio JSON for its numbers
OLD_UPSERT = """
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


def old_portfolio_json(change: PortfolioUpsert) -> bytes:
    """The `data` field as it was built before: dicts, then one `orjson.dumps`."""
    q = change.quote
    legs = [
        {"market_id": lq.market_id, "side": lq.side.value, "token_id": lq.token_id, "ask": lq.ask,
         "ask_size": lq.ask_size, "question": leg.question, "event_id": leg.event_id, "shares": lq.shares,
         "limit": lq.limit, "vwap": lq.vwap, "fee": lq.fee, "tick": lq.tick, "min_size": lq.min_size,
         "neg_risk": lq.neg_risk}
        for lq, leg in zip(q.legs, change.spec.legs)
    ]
    return orjson.dumps({
        "id": q.cover_id, "kind": q.kind.value, "guaranteed": q.guaranteed, "legs": legs, "cost": q.cost,
        "payout": q.payout, "profit": q.profit, "profit_pct": q.profit_pct, "coverage": q.coverage,
        "loss_probability": q.loss_probability, "expected_profit": q.expected_profit, "tier": q.tier,
        "size_at_profit": q.size_at_profit, "net_profit": q.net_profit, "vwap_cost": q.vwap_cost, "fees": q.fees,
        "curve": dict(zip(CURVE_KEYS, q.curve)), "payout_date": q.payout_date, "annualised": q.annualised,
        "updated_ms": q.updated_ms, "explanation": change.spec.explanation,
    })


class OldWriter(PortfolioWriter):
    """`PortfolioWriter` with the write path before this change (script, JSON and pipeline)."""

    def __init__(self, redis_url: str, keys: RedisKeys, **kwargs: object) -> None:
        super().__init__(redis_url, keys, **kwargs)  # type: ignore[arg-type]
        self._old_upsert = self.client.register_script(OLD_UPSERT)
        self.client.script_load(OLD_UPSERT)

    def write_now(self, batch: dict[str, PortfolioChange]) -> list[int]:  # type: ignore[override]
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        maxlen = str(self.stream_max_len)
        upsert = pipe.evalsha
        ranking, opportunities, changes, alerts = k.ranking, k.opportunities, k.changes, k.alerts
        llm_opportunities, annualised = k.llm_opportunities, k.ranking_annualised
        for key, change in batch.items():
            assert isinstance(change, PortfolioUpsert)  # the bench writes upserts only
            upsert(self._old_upsert.sha, 7, k.portfolio(key), ranking, opportunities, changes, alerts,
                   llm_opportunities, annualised, key, old_portfolio_json(change), maxlen)
        pipe.set(k.schema, SCHEMA_VERSION)
        return [int(r) for r in pipe.execute()[:-1]]


WORDS = ("Will", "the", "Fed", "cut", "rates", "by", "June", "30", "2026", "Bitcoin", "reach", "$150,000",
         "before", "end", "of", "year", "Trump", "win", "Senate", "election", "in", "Pennsylvania", "Élysée",
         "\"Oppenheimer\"", "Best", "Picture", "Oscar", "GDP", "growth", "above", "3%", "Q3", "São", "Paulo",
         "mayor", "Ethereum", "ETF", "approved", "Champions", "League", "final", "Real", "Madrid", "Zürich")


def question(rng: random.Random) -> str:
    """A question of 60-120 characters."""
    n = rng.randint(60, 120)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < n:
        words.append(rng.choice(WORDS))
    return (" ".join(words))[:n - 1] + "?"


def make_specs(n: int, rng: random.Random) -> list[CoverSpec]:
    """`n` covers of 2-13 legs (most of 2-4), a quarter of them LLM covers."""
    specs = []
    for i in range(n):
        nlegs = rng.choice((2, 2, 2, 3, 3, 4, 5, 7, 9, 13))
        event = f"{rng.randint(10_000, 99_999)}"
        legs = tuple(Leg(f"{i}{j:02d}{rng.randint(100, 999)}", rng.choice((Side.YES, Side.NO)),
                         str(rng.getrandbits(250)), str(rng.getrandbits(250)), question(rng), event)
                     for j in range(nlegs))
        llm = rng.random() < 0.25
        kind = CoverKind.LLM if llm else rng.choice((CoverKind.TIMEFRAME, CoverKind.ALL_NO, CoverKind.THRESHOLD))
        explanation = " ".join(question(rng) for _ in range(rng.randint(2, 4)))
        specs.append(CoverSpec(kind, legs, guaranteed=not llm, cover_probability=0.97 if llm else 1.0,
                               explanation=explanation, payout_date="2026-12-31"))
    return specs


def make_quote(spec: CoverSpec, ts: int, rng: random.Random) -> PortfolioUpsert:
    """A quote shaped like `operators.pricing.evaluate` output (depth walk: order fields set
    when profitable)."""
    target = rng.uniform(0.9, 1.06)
    n = len(spec.legs)
    asks = [round(target / n + rng.uniform(-0.02, 0.02), 3) for _ in range(n)]
    cost = round(sum(asks), 10)
    profit = round(spec.payout - cost, 10)
    profitable = profit > 1e-9
    size = round(rng.uniform(5, 400), 2) if profitable else 0.0
    legs = tuple(LegQuote(leg.market_id, leg.side, leg.token_id, a, round(rng.uniform(5, 900), 2),
                          round(a - 0.01, 3), size, round(a + 0.01, 2) if profitable else None,
                          round(a + rng.uniform(0, 0.01), 10) if profitable else None,
                          round(rng.uniform(0, 0.2), 10) if profitable else 0.0,
                          rng.choice((0.01, 0.001)), 5.0, rng.random() < 0.5)
                 for leg, a in zip(spec.legs, asks))
    coverage = 1.0 if spec.guaranteed else asks[0] + (1 - asks[0]) * spec.cover_probability
    net = round(profit * size * 0.98, 10) if profitable else 0.0
    curve = tuple(round(rng.uniform(-5, 5), 10) if rng.random() < 0.8 else None for _ in CURVE_SIZES)
    q = PortfolioQuote(spec.id, spec.kind, spec.guaranteed, legs, cost, spec.payout, profit,
                       profit / cost * 100.0, coverage, 1 - coverage, coverage * spec.payout - cost,
                       1 if coverage > 0.99 else 2, size, ts, spec.explanation, spec.legs[0].question, net,
                       round(cost + 0.003, 10) if profitable else None, round(rng.uniform(0, 1), 10),
                       curve if rng.random() < 0.9 else (), spec.payout_date,
                       net / (cost * size) * 365 / 30 if profitable else None)
    return PortfolioUpsert(q, spec)


def rounds_for(specs: list[CoverSpec], ts: int, size: int, seed: int) -> list[dict[str, PortfolioChange]]:
    """One upsert of every cover at timestamp `ts`, cut into rounds of `size`."""
    rng = random.Random(seed)
    changes = [make_quote(s, ts, rng) for s in specs]
    return [{c.quote.cover_id: c for c in changes[i:i + size]} for i in range(0, len(changes), size)]


def redis_cpu(client: redis.Redis) -> float:
    """Seconds of CPU the server has used (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_pass(writer: PortfolioWriter, client: redis.Redis,
             rounds: list[dict[str, PortfolioChange]]) -> tuple[float, float]:
    """(writer CPU µs, Redis CPU µs) per upsert for writing `rounds`."""
    n = sum(len(r) for r in rounds)
    r0, t0 = redis_cpu(client), time.thread_time()
    for batch in rounds:
        writer.write_now(batch)
    t1, r1 = time.thread_time(), redis_cpu(client)
    return (t1 - t0) / n * 1e6, (r1 - r0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--covers", type=int, default=20_000)
    ap.add_argument("--round", type=int, default=200, help="changes per pipelined round")
    ap.add_argument("--repeats", type=int, default=3, help="update passes of each path (interleaved)")
    ap.add_argument("--stream-max-len", type=int, default=20_000,
                    help="change stream cap (below the writes of a run, so XADD trims as in production)")
    args = ap.parse_args()
    rng = random.Random(7)
    specs = make_specs(args.covers, rng)
    legs = [len(s.legs) for s in specs]
    print(f"{args.covers} covers, {sum(legs) / len(legs):.1f} legs on average, rounds of {args.round}")
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        writers = {"old": OldWriter(server.url, RedisKeys("old"), stream_max_len=args.stream_max_len),
                   "new": PortfolioWriter(server.url, RedisKeys("new"), stream_max_len=args.stream_max_len)}
        try:
            warm = rounds_for(specs, 1_764_000_000_000, args.round, 0)
            sizes = [len(old_portfolio_json(c)) for b in warm for c in b.values()]  # type: ignore[arg-type]
            print(f"portfolio JSON: {statistics.mean(sizes):.0f} bytes on average")
            for w in writers.values():
                run_pass(w, client, warm)
            del warm
            got: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
            for p in range(1, args.repeats + 1):
                rounds = rounds_for(specs, 1_764_000_000_000 + p * 1000, args.round, p)
                for name in ("old", "new") if p % 2 else ("new", "old"):
                    py, rd = run_pass(writers[name], client, rounds)
                    got[name].append((py, rd))
                    print(f"pass {p} {name}: writer {py:7.1f} µs/upsert   redis {rd:7.1f} µs/upsert")
            med = {n: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for n, v in got.items()}
            print(f"median old: writer {med['old'][0]:7.1f} µs   redis {med['old'][1]:7.1f} µs per upsert")
            print(f"median new: writer {med['new'][0]:7.1f} µs   redis {med['new'][1]:7.1f} µs per upsert")
            (old_py, old_rd), (new_py, new_rd) = med["old"], med["new"]
            print(f"ratio new/old: writer {new_py / old_py:.2f}   redis {new_rd / old_rd:.2f}")
        finally:
            for w in writers.values():
                w.close()
            client.close()


if __name__ == "__main__":
    main()
