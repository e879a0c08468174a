"""The Redis key layout: the product's public output interface (schema version 1).

Every key starts with the configurable prefix `P` (`REDIS_KEY_PREFIX`, default `pas`).

| key | type | fields / members | writer | retention |
|---|---|---|---|---|
| `P:schema` | string | `"1"` — layout version | portfolio sink | permanent |
| `P:v1:portfolio:{cover_id}` | hash | `data` (JSON of the portfolio), `kind`, `guaranteed`, `cost`, `payout`, `profit`, `profit_pct`, `coverage`, `expected_profit`, `tier`, `size_at_profit`, `updated_ms` | portfolio sink | until the portfolio goes (market closed, filtered out) |
| `P:v1:ranking` | sorted set | cover ids, score = expected profit | portfolio sink | mirrors the portfolio hashes |
| `P:v1:opportunities` | sorted set | GUARANTEED (rule) cover ids with profit > 0, score = profit: the riskless arbitrage set | portfolio sink | mirrors the portfolio hashes |
| `P:v1:llm_opportunities` | sorted set | LLM (not guaranteed) cover ids with profit > 0, score = profit: bets on the LLM being right, never riskless | portfolio sink | mirrors the portfolio hashes |
| `P:v1:changes` | stream | `op` (`upsert`/`remove`), `id`, `data` (JSON; empty on remove), `reason` (on remove) | portfolio sink | capped at ~`STREAM_MAX_LEN` entries |
| `P:v1:alerts` | pub/sub channel | JSON `{"alert", "id", "data"}`: `tier1` / `profitable` when a guaranteed portfolio enters tier 1 / turns profitable; `llm_profitable` when an LLM portfolio turns profitable | portfolio sink | not stored |
| `P:v1:metrics:{group}:{process}` | hash | counters and gauges of group `poller`, `ws`, `llm`, `cache`, `portfolios`, `sink` for one process (`{process}` = host-pid) | metrics writer of that process, every second | 30 s TTL, refreshed while the process runs |
| `P:v1:tokens:shard:{i}` | set | YES tokens subscribed by WebSocket shard `i` | token registry | while the market is open |
| `P:v1:tokens:assign` | hash | token → shard | token registry | while the market is open |
| `P:v1:tokens:info` | hash | token → JSON {`market_id`, `no_token`} | token registry | while the market is open |
| `P:v1:tokens:overflow` | sorted set | tokens waiting for a free slot (score = arrival order) | token registry | until a slot frees |
| `P:v1:tokens:version` | string | counter, bumped on every registry change | token registry | permanent |
| `P:v1:tokens:seq` | string | arrival counter giving the overflow scores | token registry | permanent |
| `P:v1:llm:{key}` | string | cached LLM answer (JSON); `{key}` = hash of model, prompt version, target, candidate set | LLM client (Redis cache on) | the cache TTL |
| `P:v1:alerts:{sink}:alerted` | set | opportunity ids this alert sink announced that have not gone away since (de-duplication) | `polyalphascan alerts` | until the opportunity goes away |
| `P:v1:alerts:{sink}:log` | stream | one entry per alert delivered: `entry` (change stream id), `id`, `latency_ms` | `polyalphascan alerts` | capped at ~10,000 entries |
| `P:v1:history:open` | hash | opportunity id → JSON of its open life | history recorder | while the opportunity lives |
| `P:v1:history:lives` | hash | life id (`{id}@{first_ms}`) → JSON of an ended life | history recorder | `HISTORY_RETENTION_HOURS` |
| `P:v1:history:ended` | sorted set | life ids, score = end time (ms) | history recorder | `HISTORY_RETENTION_HOURS` |
| `P:v1:history:figures` | string | JSON: opportunities per hour by kind, lifetime and detection latency percentiles | history recorder, every 2 s | 60 s TTL |
| `P:v1:history:lease` | string | the process whose recorder is active (one in a cluster) | history recorder | 10 s TTL, renewed |

Consumer groups on `P:v1:changes`: `alerts:{sink}` (one per alert sink) and `history`.

Every key and channel name is built here and nowhere else.
"""

from __future__ import annotations

SCHEMA_VERSION = "1"


class RedisKeys:
    """The key and channel names under one prefix (see the table above)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.base = f"{prefix}:v{SCHEMA_VERSION}"
        self.schema = f"{prefix}:schema"
        self.ranking = f"{self.base}:ranking"
        self.opportunities = f"{self.base}:opportunities"
        self.llm_opportunities = f"{self.base}:llm_opportunities"
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
