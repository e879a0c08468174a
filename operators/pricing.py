"""Portfolio numbers (pure): a `CoverSpec` plus the latest YES-token prices → `PortfolioQuote`.

Executable prices: the ask of each position you buy. The scanner subscribes YES tokens
only, so a NO leg's ask is derived from the YES book: NO ask = 1 − YES best bid, with the
YES bid size as its size.

The seed's numbers: cost = Σ asks; profit = payout − cost; profit % = profit / cost · 100;
for a probabilistic pair coverage = p_t + (1 − p_t)·q with p_t the target leg's ask and q
the cover probability; loss probability = (1 − p_t)(1 − q); expected profit =
coverage · payout − cost. Guaranteed covers (rules) have coverage 1 and loss 0. Tiers by
coverage: ≥ 0.95 → 1, ≥ 0.90 → 2, ≥ 0.85 → 3, else 4; an LLM cover is tier 2 at best. Filters: coverage below
`min_coverage` (tier 4 with the default 0.85) and cost per dollar of guaranteed payout
above `max_cost` (for pairs that is the cost itself; for an ALL_NO basket paying N−1 it is
cost/(N−1)). Size at a profit = the smallest top-of-book size among the legs when the
portfolio is profitable, else 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from polyalphascan.records import CoverSpec, LegQuote, PortfolioQuote, PriceUpdate, Side

TIERS = ((0.95, 1), (0.90, 2), (0.85, 3))
#: Tier 1 is for guaranteed covers only: an LLM cover's coverage rests on the LLM being right,
#: so however high it is, it never sits next to a riskless arbitrage.
LLM_BEST_TIER = 2
EPS = 1e-9

REASON_OK = "ok"
REASON_NO_PRICE = "no_price"
REASON_LOW_COVERAGE = "low_coverage"
REASON_TOO_EXPENSIVE = "too_expensive"
REASON_CROSSED = "crossed_book"


def tier_of(coverage: float) -> int:
    for bound, tier in TIERS:
        if coverage >= bound - EPS:
            return tier
    return 4


def evaluate(
    spec: CoverSpec, yes_quotes: Mapping[str, PriceUpdate], *, min_coverage: float, max_cost: float
) -> tuple[PortfolioQuote | None, str]:
    """The quote and why it is missing: ok | no_price | crossed_book | low_coverage |
    too_expensive. A crossed top of book (bid above ask: a stale or half-applied update, never
    a resting book) prices nothing: it would show a profit no order can take."""
    legs: list[LegQuote] = []
    cost = 0.0
    size = float("inf")
    updated = 0
    for leg in spec.legs:
        q = yes_quotes.get(leg.yes_token)
        if q is None:
            return None, REASON_NO_PRICE
        if q.best_bid is not None and q.best_ask is not None and q.best_bid > q.best_ask + EPS:
            return None, REASON_CROSSED
        if leg.side is Side.YES:
            if q.best_ask is None:
                return None, REASON_NO_PRICE
            ask = q.best_ask
            avail = q.ask_size
            bid = q.best_bid
        else:
            if q.best_bid is None:
                return None, REASON_NO_PRICE
            ask = round(1.0 - q.best_bid, 10)
            avail = q.bid_size
            bid = round(1.0 - q.best_ask, 10) if q.best_ask is not None else None
        legs.append(LegQuote(leg.market_id, leg.side, leg.token_id, ask, avail, bid))
        cost += ask
        size = min(size, avail if avail is not None else 0.0)
        ts = q.exchange_ts_ms or q.recv_ts_ms
        if ts > updated:
            updated = ts
    cost = round(cost, 10)
    payout = spec.payout
    if spec.guaranteed:
        coverage, loss = 1.0, 0.0
    else:
        p_t = legs[0].ask
        qv = spec.cover_probability
        coverage = p_t + (1.0 - p_t) * qv
        loss = (1.0 - p_t) * (1.0 - qv)
    tier = tier_of(coverage) if spec.guaranteed else max(LLM_BEST_TIER, tier_of(coverage))
    if coverage < min_coverage - EPS or tier == 4:
        return None, REASON_LOW_COVERAGE
    if payout <= 0 or cost / payout > max_cost + EPS:
        return None, REASON_TOO_EXPENSIVE
    profit = round(payout - cost, 10)
    quote = PortfolioQuote(
        cover_id=spec.id,
        kind=spec.kind,
        guaranteed=spec.guaranteed,
        legs=tuple(legs),
        cost=cost,
        payout=payout,
        profit=profit,
        profit_pct=profit / cost * 100.0 if cost > 0 else 0.0,
        coverage=coverage,
        loss_probability=loss,
        expected_profit=coverage * payout - cost,
        tier=tier,
        size_at_profit=size if profit > EPS and size != float("inf") else 0.0,
        updated_ms=updated,
        explanation=spec.explanation,
        question=spec.legs[0].question if spec.legs else "",
    )
    return quote, REASON_OK


def price_cover(
    spec: CoverSpec, yes_quotes: Mapping[str, PriceUpdate], *, min_coverage: float, max_cost: float
) -> PortfolioQuote | None:
    """The priced portfolio, or None when a price is missing or it is filtered out."""
    return evaluate(spec, yes_quotes, min_coverage=min_coverage, max_cost=max_cost)[0]


def quote_changed(old: PortfolioQuote, new: PortfolioQuote) -> bool:
    """True when anything a consumer acts on changed (prices, sizes, numbers); not the timestamp."""
    if old.cost != new.cost or old.tier != new.tier or old.size_at_profit != new.size_at_profit:
        return True
    if old.coverage != new.coverage or old.payout != new.payout:
        return True
    return any(a.ask != b.ask or a.ask_size != b.ask_size for a, b in zip(old.legs, new.legs))
