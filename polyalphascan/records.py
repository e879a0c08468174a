"""Typed records that flow between the dataflow's steps (the shared contract).

Sources produce `Event`/`EventDelta` (Gamma poller) and `PriceUpdate` (CLOB shards);
grouping turns an `Event` into a `Group`; implication steps produce `CoverSpec`s
(an unpriced covering portfolio: legs + guarantee); pricing turns a `CoverSpec` plus
leg prices into a `PortfolioQuote`. Records are slotted dataclasses (frozen where they are
not rebuilt on the hot path) or, for `PriceUpdate`, a NamedTuple: cheap to create,
picklable (Bytewax snapshots and inter-process exchange).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


class Side(str, Enum):
    YES = "YES"
    NO = "NO"

    @property
    def other(self) -> "Side":
        return Side.NO if self is Side.YES else Side.YES


# --------------------------------------------------------------------------- execution terms (issue 16)
@dataclass(frozen=True, slots=True)
class MarketTerms:
    """What trading one market costs and allows, read from its Gamma record: the price tick
    (`orderPriceMinTickSize`; the live `tick_size_change` overrides it per token), the minimum
    order in shares (`orderMinSize`), the taker fee (`feesEnabled`, `feeSchedule.rate` /
    `.exponent`; see `operators.pricing` for the formula), the neg-risk flag and the date the
    market resolves (its `endDate`, ISO-8601 as Gamma sent it). Kept for the record:
    `feeType`, `takerBaseFee` / `makerBaseFee` (bps) and `negRiskFeeBips` (a fee on neg-risk
    conversions, which the scanner does not do). The default is a fee-free market on a 0.01
    tick with no minimum order."""

    tick: float = 0.01
    min_size: float = 0.0
    fees_enabled: bool = False
    fee_rate: float = 0.0  # taker fee rate of the formula (0 = fee-free)
    fee_exponent: float = 1.0
    fee_type: str = ""
    taker_base_fee_bps: float = 0.0
    maker_base_fee_bps: float = 0.0
    neg_risk_fee_bps: float = 0.0
    neg_risk: bool = False
    end_date: str | None = None


FREE_TERMS = MarketTerms()


# --------------------------------------------------------------------------- Gamma side
@dataclass(frozen=True, slots=True)
class Market:
    """One binary market of an event, parsed from a Gamma market object."""

    id: str
    event_id: str
    question: str
    slug: str
    condition_id: str
    yes_token: str  # asset id of outcome index 0 (clobTokenIds for v1, positionIds for v2)
    no_token: str  # asset id of outcome index 1
    group_item_title: str = ""  # bracket label inside a multi-market event ("June 30", "$100k", "Alice")
    group_item_threshold: str | None = None
    description: str = ""
    end_date: str | None = None  # ISO-8601 as Gamma sent it
    created_at: str | None = None
    active: bool = True
    closed: bool = False
    neg_risk: bool = False
    neg_risk_other: bool = False  # the catch-all "Other" outcome of an augmented neg-risk event
    neg_risk_market_id: str = ""  # the neg-risk group whose outcomes are mutually exclusive
    liquidity: float = 0.0
    volume: float = 0.0
    yes_price: float | None = None  # Gamma outcomePrices snapshot (not live)
    no_price: float | None = None
    version: str = "v1"
    terms: MarketTerms = FREE_TERMS  # tick, minimum order, fees, resolution date (issue 16)


@dataclass(frozen=True, slots=True)
class Event:
    """One Gamma event with its markets (open and closed)."""

    id: str
    slug: str
    title: str
    description: str = ""
    end_date: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    neg_risk: bool = False
    neg_risk_augmented: bool = False  # outcomes may still be added: the listed ones are not exhaustive
    active: bool = True
    closed: bool = False
    tags: tuple[str, ...] = ()
    markets: tuple[Market, ...] = ()

    @property
    def open_markets(self) -> tuple[Market, ...]:
        return tuple(m for m in self.markets if m.active and not m.closed)


class DeltaKind(str, Enum):
    NEW = "new"  # event not seen before
    CHANGED = "changed"  # event seen before, content changed (new markets, edited title, ...)
    MARKET_CLOSED = "market_closed"  # one or more markets closed/resolved (event may still be open)


@dataclass(frozen=True, slots=True)
class EventDelta:
    """What the event poller emits: each change once."""

    kind: DeltaKind
    event: Event  # the event's full current state
    changed_fields: tuple[str, ...] = ()  # for CHANGED: e.g. ("title", "markets")
    new_market_ids: tuple[str, ...] = ()
    closed_market_ids: tuple[str, ...] = ()


# --------------------------------------------------------------------------- CLOB side
class PriceUpdate(NamedTuple):
    """Top of book (and the first levels) for one token after a change. Prices are in [0, 1];
    None = empty side. `bids` / `asks`: the best `BOOK_DEPTH` levels of each side as one flat
    tuple of floats, best first (price, size, price, size, ...): plain floats pickle cheaply.
    `tick`: the token's live tick size (0.0 = not announced; Gamma's then applies).

    A NamedTuple, not a dataclass: it is the hottest record (every book change makes one, the
    join forwards it to every portfolio holding the token), and as a plain tuple (`tuple(u)`)
    it crosses between processes at a fifth of a dataclass's pickling cost."""

    token_id: str
    best_bid: float | None
    best_ask: float | None
    bid_size: float | None = None
    ask_size: float | None = None
    exchange_ts_ms: int = 0  # server timestamp (epoch ms)
    recv_ts_ms: int = 0  # local receive time (epoch ms)
    shard: int = -1
    derived: bool = False  # True when computed from the complementary token's book
    bids: tuple[float, ...] = ()  # best first: p0, s0, p1, s1, ...
    asks: tuple[float, ...] = ()
    tick: float = 0.0


# --------------------------------------------------------------------------- groups
class PartitionType(str, Enum):
    TIMEFRAME = "timeframe"  # markets differ by date ("by March 31", "by June 30")
    THRESHOLD = "threshold"  # markets differ by a number ("above $100k")
    CANDIDATE = "candidate"  # mutually exclusive outcomes (entities)
    SINGLE = "single"  # one market


@dataclass(frozen=True, slots=True)
class GroupMarket:
    market_id: str
    question: str
    label: str  # bracket label (groupItemTitle)
    yes_token: str
    no_token: str
    resolution_date: str | None = None  # ISO date "YYYY-MM-DD"
    threshold: float | None = None  # for THRESHOLD groups
    direction: str | None = None  # "above" | "below" for THRESHOLD groups
    cumulative: bool = False  # YES means "at or beyond my bar / by my date": a rung of a ladder
    basis: str = ""  # where the date or bar and its direction were read (the proof of a rung)
    terms: MarketTerms = FREE_TERMS  # tick, minimum order, fees, resolution date (issue 16)


@dataclass(frozen=True, slots=True)
class Group:
    event_id: str
    title: str
    partition_type: PartitionType
    markets: tuple[GroupMarket, ...]
    mutually_exclusive: bool = False  # the venue says at most one market resolves YES (negRisk)
    end_date: str | None = None
    neg_risk: bool = False
    placeholders_dropped: int = 0  # placeholder outcomes ("Person A") left out, active or not
    exhaustive: bool = False  # exactly one of `markets` resolves YES (ALL_YES holds)
    facts: str = ""  # the venue facts the group's covers rest on, for their explanation


# --------------------------------------------------------------------------- covers
class CoverKind(str, Enum):
    TIMEFRAME = "timeframe"  # YES later date + NO earlier date, same ladder
    THRESHOLD = "threshold"  # YES lower bar + NO higher bar ("above"; mirrored for "below")
    ALL_YES = "all_yes"  # every YES of a mutually exclusive, exhaustive event
    ALL_NO = "all_no"  # every NO of a mutually exclusive event (pays >= N-1)
    LLM = "llm"  # cross-event implication found by the LLM (probabilistic)


@dataclass(frozen=True, slots=True)
class Leg:
    """One position of a covering portfolio: buy `side` of `market_id`."""

    market_id: str
    side: Side
    yes_token: str
    no_token: str
    question: str = ""
    event_id: str = ""
    terms: MarketTerms = FREE_TERMS  # tick, minimum order, fees, resolution date (issue 16)

    @property
    def token_id(self) -> str:
        """The token you buy for this leg."""
        return self.yes_token if self.side is Side.YES else self.no_token


def cover_id(kind: CoverKind, legs: tuple[Leg, ...]) -> str:
    """Stable id of a covering portfolio: independent of leg order and of process."""
    parts = sorted(f"{leg.market_id}:{leg.side.value}" for leg in legs)
    digest = hashlib.sha1(("|".join(parts)).encode()).hexdigest()[:16]
    return f"{kind.value}-{digest}"


@dataclass(frozen=True, slots=True)
class CoverSpec:
    """An unpriced covering portfolio: at least `payout` dollars are paid whatever happens
    (when `guaranteed`), or with probability `cover_probability` of the cover firing."""

    kind: CoverKind
    legs: tuple[Leg, ...]  # for pairs: legs[0] = target position, legs[1] = cover position
    guaranteed: bool
    cover_probability: float  # P(cover leg pays | target leg loses); 1.0 when guaranteed
    payout: float = 1.0  # guaranteed minimum payout ($); N-1 for ALL_NO
    explanation: str = ""
    id: str = field(default="")
    #: ISO date the last leg resolves (when the payout is realised); None when a leg has no
    #: end date. Derived from the legs' terms (issue 16), computed once here, not per pricing.
    payout_date: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", cover_id(self.kind, self.legs))
        ends = [leg.terms.end_date for leg in self.legs]
        if ends and all(ends):
            object.__setattr__(self, "payout_date", max(e[:10] for e in ends if e))

    @property
    def token_ids(self) -> tuple[str, ...]:
        """Every token whose price matters (both tokens of every leg's market)."""
        out: list[str] = []
        for leg in self.legs:
            out.extend((leg.yes_token, leg.no_token))
        return tuple(dict.fromkeys(out))

    @property
    def market_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(leg.market_id for leg in self.legs))


# --------------------------------------------------------------------------- priced
@dataclass(slots=True)  # not frozen: built on every re-pricing, and frozen __init__ costs 2x
class LegQuote:
    market_id: str
    side: Side
    token_id: str
    ask: float  # executable price of the position bought
    ask_size: float | None  # shares available at that price
    bid: float | None = None
    # execution-ready order for the basket at `PortfolioQuote.size_at_profit` (issue 16)
    shares: float = 0.0  # shares to buy (equal on every leg)
    limit: float | None = None  # worst price the walk takes, rounded up to the tick
    vwap: float | None = None  # average price of those shares
    fee: float = 0.0  # taker fee on those shares ($)
    tick: float = 0.01
    min_size: float = 0.0
    neg_risk: bool = False


@dataclass(slots=True)  # not frozen: built on every re-pricing; never mutated after
class PortfolioQuote:
    """A priced covering portfolio (what the Redis sinks write)."""

    cover_id: str
    kind: CoverKind
    guaranteed: bool
    legs: tuple[LegQuote, ...]
    cost: float  # sum of leg asks ($ per share-set)
    payout: float  # guaranteed minimum payout
    profit: float  # payout - cost
    profit_pct: float  # profit / cost * 100
    coverage: float
    loss_probability: float
    expected_profit: float  # coverage * payout - cost (seed: coverage - cost for pairs)
    tier: int  # 1..4 (4 = below minimum coverage)
    size_at_profit: float  # the most share-sets buyable at a profit net of fees (0: none, or below a minimum order)
    updated_ms: int  # epoch ms of the newest leg price
    explanation: str = ""
    question: str = ""  # human summary: target question
    # depth, fees and lock-up (issue 16); see `operators.pricing`
    net_profit: float = 0.0  # $ profit net of fees when buying `size_at_profit` share-sets
    vwap_cost: float | None = None  # average cost of one share-set at that size, fees excluded
    fees: float = 0.0  # $ taker fees at that size
    curve: tuple[float | None, ...] = ()  # net $ profit at CURVE_SIZES share-sets (None: the book is not that deep)
    payout_date: str | None = None  # ISO date the last leg resolves (when the payout is realised)
    annualised: float | None = None  # net return at that size per year of lock-up (simple)

    @property
    def profitable(self) -> bool:
        return self.profit > 1e-9


# --------------------------------------------------------------------------- implications
@dataclass(frozen=True, slots=True)
class GroupImplication:
    """`premise` event YES makes `conclusion` event YES certain (premise ⇒ conclusion).

    Found by the LLM for a target group: an `implied_by` answer gives other ⇒ target, an
    `implies` answer target ⇒ other. Pair expansion turns it into covers: YES on the
    conclusion + NO on the premise (contrapositive: conclusion NO forces premise NO).
    """

    premise_event_id: str
    conclusion_event_id: str
    direction: str  # "implied_by" | "implies": which list of the target's answer it came from
    target_event_id: str
    explanation: str = ""
    counterexample: str = ""
    model: str = ""
    prompt_version: str = ""
    #: the share of verification rounds that agreed (operators/verification.py); 1.0 when unverified
    confidence: float = 1.0


# --------------------------------------------------------------------------- portfolio changes
@dataclass(frozen=True, slots=True)
class MarketClosed:
    """A market closed or resolved: every portfolio holding it goes."""

    market_id: str
    yes_token: str


@dataclass(frozen=True, slots=True)
class PortfolioUpsert:
    quote: PortfolioQuote
    spec: CoverSpec


@dataclass(frozen=True, slots=True)
class PortfolioRemoved:
    cover_id: str
    reason: str  # "market_closed" | "filtered" | "no_price"


PortfolioChange = PortfolioUpsert | PortfolioRemoved


@dataclass(frozen=True, slots=True)
class ImplicationFound:
    """An implication with the two groups it relates, as they are now (for pair expansion)."""

    implication: GroupImplication
    premise: Group
    conclusion: Group


@dataclass(frozen=True, slots=True)
class CoverRetracted:
    """A cover that no longer holds (its event changed shape, e.g. a new outcome makes an
    all-YES basket non-exhaustive): its portfolio goes."""

    cover_id: str
    yes_tokens: tuple[str, ...]
