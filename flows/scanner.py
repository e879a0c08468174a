"""The polyalphascan dataflow: wiring only. Every step is one hop from here.

    Gamma ─► events (EventDelta) ─┬─► token_registry (Redis: which tokens the shards subscribe)
                                  ├─► group ─┬─► rule_covers (per event; retracts) ──┐
                                  │          └─► catalog ─► llm ─► pairs (retracts) ┤ covers
                                  └─► closed_markets ───────────────────────────┐  │
    CLOB WS ─► prices (PriceUpdate, one partition per shard) ─────────────────┐ │  │
                                                                               ▼ ▼  ▼
                                  join.fanout (by token) ─► join.price (by cover) ─► redis

Run it:
    python -m bytewax.run flows.scanner:flow               # settings from the environment/.env
    python -m bytewax.run flows.scanner:flow -w 2          # 2 workers
    polyalphascan run                                      # the same, with start-up checks
"""

from __future__ import annotations

from collections.abc import Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.event_source import EventSource
from connectors.portfolio_sink import PortfolioSink
from connectors.price_source import PriceShardSource
from connectors.token_registry import TokenRegistrySink
from operators.async_llm import llm_implications
from operators.grouping import event_group
from operators.cover_lifecycle import LlmCoverDiff, RuleCoverDiff, implication_key
from operators.portfolio_join import portfolio_join
from polyalphascan.records import CoverSpec, DeltaKind, EventDelta, MarketClosed
from polyalphascan.settings import Settings

CATALOG_KEY = "catalog"


def closed_markets(delta: EventDelta) -> Iterable[MarketClosed]:
    """The markets a delta closes (each YES token's portfolios are removed)."""
    if delta.kind is not DeltaKind.MARKET_CLOSED and not delta.closed_market_ids:
        return ()
    by_id = {m.id: m for m in delta.event.markets}
    return [MarketClosed(mid, by_id[mid].yes_token) for mid in delta.closed_market_ids if mid in by_id]


def build_flow(
    settings: Settings,
    redis_url: str,
    *,
    event_source: EventSource | None = None,
    price_source: PriceShardSource | None = None,
) -> Dataflow:
    """The scanner dataflow; sources can be passed in (tests tune their timers)."""
    flow = Dataflow("polyalphascan")

    deltas = op.input("events", flow, event_source or EventSource(settings))
    op.output("token_registry", deltas, TokenRegistrySink(redis_url, settings))

    groups = op.map("group", deltas, lambda d: event_group(d.event))  # empty group: the event closed
    closed = op.flat_map("closed_markets", deltas, closed_markets)

    by_event = op.key_on("by_event", groups, lambda g: g.event_id)
    rule_changes = op.map("rule_unkey", op.stateful("rule_covers", by_event, RuleCoverDiff), lambda kv: kv[1])
    rule_split = op.branch("rule_split", rule_changes, lambda c: isinstance(c, CoverSpec))
    rule = rule_split.trues
    catalog = op.key_on("catalog", groups, lambda _g: CATALOG_KEY)
    found = llm_implications("llm", catalog, settings, redis_url=redis_url)
    by_implication = op.key_on("by_implication", found, implication_key)
    llm_changes = op.map("pairs_unkey", op.stateful(
        "pairs", by_implication, lambda resume: LlmCoverDiff(resume, settings.llm_cover_probability)),
        lambda kv: kv[1])
    llm_split = op.branch("llm_split", llm_changes, lambda c: isinstance(c, CoverSpec))
    covers = op.merge("covers", rule, llm_split.trues)
    retracted = op.merge("retracted", rule_split.falses, llm_split.falses)

    prices = op.input("prices", flow, price_source or PriceShardSource(settings, redis_url))
    changes = portfolio_join(
        "join", prices, covers, closed, min_coverage=settings.min_coverage, max_cost=settings.max_cost,
        retracted=retracted,
    )
    op.output("redis", changes, PortfolioSink(redis_url, settings.redis_key_prefix, stream_max_len=settings.stream_max_len))
    return flow


def _module_flow() -> Dataflow:
    """`flow` for `python -m bytewax.run flows.scanner:flow` (settings from the environment)."""
    from polyalphascan.runtime import prepare_process

    settings, redis_url = prepare_process()
    return build_flow(settings, redis_url)


def __getattr__(name: str) -> Dataflow:  # built lazily so importing this module has no side effects
    if name == "flow":
        return _module_flow()
    raise AttributeError(name)
