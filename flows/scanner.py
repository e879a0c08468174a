"""The polyalphascan dataflow: wiring only. Every step is one hop from here.

    Gamma ─► events (EventDelta) ─┬─► token_registry (Redis: which tokens the shards subscribe)
                                  ├─► group ─┬─► rule_covers (per event; retracts) ──┐
                                  │          └─► catalog ─► llm ─► pairs (retracts) ┤ covers
                                  └─► closed_markets ───────────────────────────┐  │
    CLOB WS ─► prices (PriceUpdate, one partition per shard) ─────────────────┐ │  │
                                                                               ▼ ▼  ▼
                                  join.shard (prices a batch at a time, covers by shard) ─► redis

Run it:
    python -m bytewax.run flows.scanner:flow               # settings from the environment/.env
    JOIN_SHARDS=8 python -m bytewax.run flows.scanner:flow -w 2   # 2 workers (say how many join shards)
    polyalphascan run [-w 2]                               # with start-up checks; sizes the join itself
"""

from __future__ import annotations

from collections.abc import Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.clob.source import PriceShardSource
from connectors.gamma.source import EventSource
from connectors.redis.portfolio_sink import PortfolioSink
from connectors.redis.token_registry import TokenRegistrySink
from operators.cover_lifecycle import LlmCoverDiff, RuleCoverDiff, implication_key, pair_covers
from operators.grouping import empty_group, event_group
from operators.guard import guarded
from operators.llm_step import LLMStepConfig, llm_implications
from operators.portfolio_join import portfolio_join
from operators.rule_covers import rule_covers
from polyalphascan.records import CoverSpec, DeltaKind, EventDelta, MarketClosed
from polyalphascan.scope import FlowScope
from polyalphascan.settings import Settings

CATALOG_KEY = "catalog"


def closed_markets(delta: EventDelta) -> Iterable[MarketClosed]:
    """The markets a delta closes (each YES token's portfolios are removed)."""
    if delta.kind is not DeltaKind.MARKET_CLOSED and not delta.closed_market_ids:
        return ()
    by_id = {m.id: m for m in delta.event.markets}
    return [MarketClosed(mid, by_id[mid].yes_token) for mid in delta.closed_market_ids if mid in by_id]


def join_shards(setting: int, workers: int) -> int:
    """`JOIN_SHARDS`, or when 0: one shard for one worker (every price batch is applied once),
    four per worker otherwise (Bytewax hashes keys to workers: more keys than workers even out)."""
    if setting > 0:
        return setting
    return 1 if workers <= 1 else 4 * workers


def build_flow(
    settings: Settings,
    redis_url: str,
    *,
    scope: FlowScope | None = None,
    event_source: EventSource | None = None,
    price_source: PriceShardSource | None = None,
    workers: int = 1,
) -> Dataflow:
    """The scanner dataflow; sources can be passed in (tests tune their timers). `scope` is
    what the flow owns (its stop signal, its metrics); a fresh one when not given. `workers`:
    this process's worker count (sizes the join when `JOIN_SHARDS` is 0)."""
    scope = scope or FlowScope()
    flow = Dataflow("polyalphascan")

    deltas = op.input("events", flow, event_source or EventSource(
        base_url=settings.gamma_api_url, tags=settings.polymarket_tag, poll_interval_s=settings.poll_interval_seconds,
        incremental=settings.enable_incremental_update, full_every=settings.full_reconcile_every,
        stop=scope.stop, metrics=scope.metrics.group("poller")))
    op.output("token_registry", deltas, TokenRegistrySink(
        redis_url, settings.redis_key_prefix, settings.ws_max_connections, settings.ws_tokens_per_connection,
        metrics=scope.metrics.group("ws")))

    # no record may end the flow: a step that raises on one drops it (counted under "steps")
    steps = scope.metrics.group("steps")
    group_of = guarded("group", lambda d: event_group(d.event), lambda d: empty_group(d.event),
                       lambda d: d.event.id, steps)  # an empty group retracts the event's covers
    groups = op.map("group", deltas, group_of)
    closed = op.flat_map("closed_markets", deltas,
                         guarded("closed_markets", closed_markets, lambda _d: [], lambda d: d.event.id, steps))

    by_event = op.key_on("by_event", groups, lambda g: g.event_id)
    rule_covers_of = guarded("rule_covers", rule_covers, lambda _g: [], lambda g: g.event_id, steps)
    rule_changes = op.map("rule_unkey", op.stateful(
        "rule_covers", by_event, lambda resume: RuleCoverDiff(resume, rule_covers_of)), lambda kv: kv[1])
    rule_split = op.branch("rule_split", rule_changes, lambda c: isinstance(c, CoverSpec))
    rule = rule_split.trues
    catalog = op.key_on("catalog", groups, lambda _g: CATALOG_KEY)
    llm_key = settings.openrouter_api_key
    found = llm_implications("llm", catalog, LLMStepConfig(
        base_url=settings.llm_base_url, api_key=llm_key.get_secret_value() if llm_key else None,
        model=settings.llm_model, max_concurrent=settings.llm_max_concurrent, batch_size=settings.llm_batch_size,
        candidates_per_target=settings.llm_candidates_per_target, timeout_s=settings.llm_timeout_seconds,
        max_tokens=settings.llm_max_tokens, max_implications_per_target=settings.llm_max_implications_per_target,
        max_attempts=settings.llm_max_attempts, cache_max_entries=settings.llm_cache_max_entries,
        redis_cache_url=redis_url if settings.enable_redis_cache else None,
        redis_key_prefix=settings.redis_key_prefix, cache_ttl_s=settings.cache_ttl_seconds,
    ), metrics=scope.metrics.group("llm"), cache_metrics=scope.metrics.group("cache"), steps=steps)
    by_implication = op.key_on("by_implication", found, implication_key)
    pair_covers_of = guarded("pairs", pair_covers(settings.llm_cover_probability, scope.metrics.group("llm")),
                             lambda _f: [], implication_key, steps)
    llm_changes = op.map("pairs_unkey", op.stateful(
        "pairs", by_implication, lambda resume: LlmCoverDiff(resume, pair_covers_of)),
        lambda kv: kv[1])
    llm_split = op.branch("llm_split", llm_changes, lambda c: isinstance(c, CoverSpec))
    covers = op.merge("covers", rule, llm_split.trues)
    retracted = op.merge("retracted", rule_split.falses, llm_split.falses)

    prices = op.input("prices", flow, price_source or PriceShardSource(
        settings.clob_ws_url, redis_url, key_prefix=settings.redis_key_prefix,
        max_connections=settings.ws_max_connections, tokens_per_connection=settings.ws_tokens_per_connection,
        queue_max=settings.price_queue_max_size, ping_interval=settings.ws_ping_interval_seconds,
        stall_timeout=settings.ws_stall_timeout_seconds, stop=scope.stop, metrics=scope.metrics.group("ws")))
    changes = portfolio_join(
        "join", prices, covers, closed, min_coverage=settings.min_coverage, max_cost=settings.max_cost,
        retracted=retracted, metrics=scope.metrics.group("portfolios"), steps=steps,
        shards=join_shards(settings.join_shards, workers), recoverable=settings.recovery_dir is not None,
    )
    op.output("redis", changes, PortfolioSink(redis_url, settings.redis_key_prefix, stream_max_len=settings.stream_max_len,
                                              metrics=scope.metrics.group("sink")))
    return flow


def _module_flow() -> Dataflow:
    """`flow` for `python -m bytewax.run flows.scanner:flow` (settings from the environment)."""
    from flows.runtime import start_runtime

    runtime = start_runtime()
    return build_flow(runtime.settings, runtime.redis_url, scope=runtime.scope)


def __getattr__(name: str) -> Dataflow:  # built lazily so importing this module has no side effects
    if name == "flow":
        return _module_flow()
    raise AttributeError(name)
