"""The Redis key layout: the product's public output interface (schema version 1).

Every key starts with the configurable prefix `P` (`REDIS_KEY_PREFIX`, default `pas`).

| key | type | fields / members | writer | retention |
|---|---|---|---|---|
| `P:schema` | string | `"1"` — layout version | portfolio sink | permanent |
| `P:v1:portfolio:{cover_id}` | hash | `data` (JSON of the portfolio), `kind`, `guaranteed`, `cost`, `payout`, `profit`, `profit_pct`, `coverage`, `expected_profit`, `tier`, `size_at_profit`, `updated_ms` | portfolio sink | until the portfolio goes (market closed, filtered out) |
| `P:v1:ranking` | sorted set | cover ids, score = expected profit | portfolio sink | mirrors the portfolio hashes |
| `P:v1:opportunities` | sorted set | cover ids with profit > 0, score = profit | portfolio sink | mirrors the portfolio hashes |
| `P:v1:changes` | stream | `op` (`upsert`/`remove`), `id`, `data` (JSON; empty on remove), `reason` (on remove) | portfolio sink | capped at ~`STREAM_MAX_LEN` entries |
| `P:v1:alerts` | pub/sub channel | JSON `{"alert", "id", "data"}` with alert `tier1` or `profitable` on entering tier 1 or turning profitable | portfolio sink | not stored |
| `P:v1:metrics:{group}:{process}` | hash | counters and gauges of group `poller`, `ws`, `llm`, `cache`, `portfolios`, `sink` for one process (`{process}` = host-pid) | metrics writer of that process, every second | 30 s TTL, refreshed while the process runs |
"""

from __future__ import annotations

SCHEMA_VERSION = "1"


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.base = f"{prefix}:v{SCHEMA_VERSION}"
        self.schema = f"{prefix}:schema"
        self.ranking = f"{self.base}:ranking"
        self.opportunities = f"{self.base}:opportunities"
        self.changes = f"{self.base}:changes"
        self.alerts = f"{self.base}:alerts"

    def portfolio(self, cover_id: str) -> str:
        return f"{self.base}:portfolio:{cover_id}"

    def metrics(self, group: str, process: str) -> str:
        return f"{self.base}:metrics:{group}:{process}"

    def metrics_pattern(self, group: str) -> str:
        return f"{self.base}:metrics:{group}:*"
