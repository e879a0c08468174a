"""The Redis key layout: the product's public output interface (schema version 2).

Every key starts with the configurable prefix `P` (`REDIS_KEY_PREFIX`, default `pas`).

| key | type | fields / members | writer | retention |
|---|---|---|---|---|
| `P:schema` | string | `"2"` — layout version (2: depth, fees, size, lock-up; keys moved from `v1` to `v2`) | portfolio sink | permanent |
| `P:v2:portfolio:{cover_id}` | hash | `data` (JSON of the portfolio), `kind`, `guaranteed`, `cost`, `payout`, `profit`, `profit_pct`, `coverage`, `expected_profit`, `tier`, `size_at_profit`, `updated_ms` | portfolio sink | until the portfolio goes (market closed, filtered out) |
| `P:v2:ranking` | sorted set | cover ids, score = expected profit | portfolio sink | mirrors the portfolio hashes |
| `P:v2:opportunities` | sorted set | GUARANTEED (rule) cover ids with net profit > 0 (net of fees, at a size every leg can order), score = net $ profit at that size: the riskless arbitrage set | portfolio sink | mirrors the portfolio hashes |
| `P:v2:llm_opportunities` | sorted set | LLM (not guaranteed) cover ids with net profit > 0, score = net $ profit: bets on the LLM being right, never riskless | portfolio sink | mirrors the portfolio hashes |
| `P:v2:ranking:annualised` | sorted set | the ids of both opportunity sets that have a payout date, score = annualised return | portfolio sink | mirrors the portfolio hashes |
| `P:v2:changes` | stream | `op` (`upsert`/`remove`), `id`, `data` (JSON; empty on remove), `reason` (on remove) | portfolio sink | capped at ~`STREAM_MAX_LEN` entries |
| `P:v2:alerts` | pub/sub channel | JSON `{"alert", "id", "data"}`: `tier1` / `profitable` when a guaranteed portfolio enters tier 1 / turns profitable; `llm_profitable` when an LLM portfolio turns profitable | portfolio sink | not stored |
| `P:v2:metrics:{group}:{process}` | hash | counters and gauges of group `poller`, `ws`, `llm`, `cache`, `portfolios`, `sink` for one process (`{process}` = host-pid) | metrics writer of that process, every second | 30 s TTL, refreshed while the process runs |
| `P:v2:tokens:shard:{i}` | set | YES tokens subscribed by WebSocket shard `i` | token registry | while the market is open |
| `P:v2:tokens:assign` | hash | token → shard | token registry | while the market is open |
| `P:v2:tokens:info` | hash | token → JSON {`market_id`, `no_token`} | token registry | while the market is open |
| `P:v2:tokens:overflow` | sorted set | tokens waiting for a free slot (score = arrival order) | token registry | until a slot frees |
| `P:v2:tokens:version` | string | counter, bumped on every registry change | token registry | permanent |
| `P:v2:tokens:seq` | string | arrival counter giving the overflow scores | token registry | permanent |
| `P:v2:llm:{key}` | string | cached LLM answer (JSON); `{key}` = hash of model, prompt version, target, candidate set (discovery) or of model, premise, conclusion, round (a verification verdict) | LLM client (Redis cache on) | the cache TTL |
| `P:v2:alerts:{sink}:alerted` | set | opportunity ids this alert sink announced that have not gone away since (de-duplication) | `polyalphascan alerts` | until the opportunity goes away |
| `P:v2:alerts:{sink}:log` | stream | one entry per alert delivered: `entry` (change stream id), `id`, `latency_ms` | `polyalphascan alerts` | capped at ~10,000 entries |
| `P:v2:history:open` | hash | opportunity id → JSON of its open life | history recorder | while the opportunity lives |
| `P:v2:history:lives` | hash | life id (`{id}@{first_ms}`) → JSON of an ended life | history recorder | `HISTORY_RETENTION_HOURS` |
| `P:v2:history:ended` | sorted set | life ids, score = end time (ms) | history recorder | `HISTORY_RETENTION_HOURS` |
| `P:v2:history:figures` | string | JSON: opportunities per hour by kind, lifetime and detection latency percentiles | history recorder, every 2 s | 60 s TTL |
| `P:v2:history:lease` | string | the process whose recorder is active (one in a cluster) | history recorder | 10 s TTL, renewed |

Consumer groups on `P:v2:changes`: `alerts:{sink}` (one per alert sink) and `history`.

Every key and channel name is built here and nowhere else.
"""

from __future__ import annotations

SCHEMA_VERSION = "2"


class RedisKeys:
    """The key and channel names under one prefix (see the table above)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.base = f"{prefix}:v{SCHEMA_VERSION}"
        self.schema = f"{prefix}:schema"
        self.ranking = f"{self.base}:ranking"
        self.opportunities = f"{self.base}:opportunities"
        self.llm_opportunities = f"{self.base}:llm_opportunities"
        self.ranking_annualised = f"{self.base}:ranking:annualised"
        self.changes = f"{self.base}:changes"
        self.alerts = f"{self.base}:alerts"
        # token registry
        tokens = f"{self.base}:tokens"
        #: `tokens_shard(i)` is this plus `i`; the registry's Lua scripts append the shard number
        self.tokens_shard_prefix = f"{tokens}:shard:"
        self.tokens_assign = f"{tokens}:assign"
        self.tokens_info = f"{tokens}:info"
        self.tokens_overflow = f"{tokens}:overflow"
        self.tokens_version = f"{tokens}:version"
        self.tokens_seq = f"{tokens}:seq"
        # LLM answer cache
        self.llm_cache_prefix = f"{self.base}:llm:"

    def portfolio(self, cover_id: str) -> str:
        return f"{self.base}:portfolio:{cover_id}"

    def tokens_shard(self, shard: int) -> str:
        return f"{self.tokens_shard_prefix}{shard}"

    def llm_cache(self, key: str) -> str:
        return f"{self.llm_cache_prefix}{key}"

    def metrics(self, group: str, process: str) -> str:
        return f"{self.base}:metrics:{group}:{process}"

    def metrics_pattern(self, group: str) -> str:
        return f"{self.base}:metrics:{group}:*"

    # --- alert delivery and opportunity history (consumers of the change stream) -----------
    def alerts_group(self, sink: str) -> str:
        return f"alerts:{sink}"

    def alerts_alerted(self, sink: str) -> str:
        return f"{self.base}:alerts:{sink}:alerted"

    def alerts_log(self, sink: str) -> str:
        return f"{self.base}:alerts:{sink}:log"

    history_group = "history"

    @property
    def history_open(self) -> str:
        return f"{self.base}:history:open"

    @property
    def history_lives(self) -> str:
        return f"{self.base}:history:lives"

    @property
    def history_ended(self) -> str:
        return f"{self.base}:history:ended"

    @property
    def history_figures(self) -> str:
        return f"{self.base}:history:figures"

    @property
    def history_lease(self) -> str:
        return f"{self.base}:history:lease"
