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
cost/(N−1)).

Depth, fees, size and lock-up (issue 16). Each leg's book is walked level by level for EQUAL
share counts (a basket is one share of every leg): a YES leg takes the YES asks, a NO leg the
NO asks, which are 1 − the YES bids level by level (with the YES bid sizes). Between two level
boundaries the marginal share-set costs Σ pᵢ + Σ feeᵢ(pᵢ) and pays `payout`; the walk stops at
the first share-set that no longer makes money (marginal costs only rise down the books) or
when a leg's known depth ends, so it goes only as deep as needed (and to `CURVE_SIZES[-1]`
shares for the curve); a basket that loses money on its first share-set stops at once (no
size, no curve: the common case costs one step). Published: `cost` (top of book, per
share-set, as before); the largest number of share-sets still profitable net of fees
(`size_at_profit`, floored to 0.01 share); the VWAP cost per share-set and the net $ profit
and $ fees at that size; the net $ profit at `CURVE_SIZES` share-sets (None where the known
depth ends first; empty when the first share-set already loses). A basket whose profitable
size is below any leg's minimum order (`orderMinSize`) is not an opportunity: its size and net
profit are 0. Sizes count only the `BOOK_DEPTH` levels the tracker keeps: never more than is
known to rest on the books.

Fees (the formula of the Polymarket documentation, "Trading fees" page, and of the fee model of
NautilusTrader's Polymarket adapter): a taker buying C shares at price p pays
fee = C × rate × (p × (1 − p))^exponent, with `rate` and `exponent` from the market's Gamma
`feeSchedule` (`feesEnabled` true); makers pay nothing, and every leg here is taken, so every
leg pays it; fee-free markets (`feesEnabled` false, or no fee fields) pay 0 and their numbers
are the top-of-book ones. A fee-charging market without a readable schedule is charged the
1000 bps base-fee rate its record carries (`connectors.gamma.protocol.UNKNOWN_FEE_RATE`).
The venue rounds a fee to 5 decimals; these are exact products.

Execution-ready legs: each `LegQuote` gives the shares to buy (the basket size), the VWAP and
the fee of that leg, its limit price (the worst level the walk takes, rounded UP to the tick,
so an order at it takes every level counted; rounding down would leave a leg short and the
basket unhedged), the tick (live `tick_size_change` first, else Gamma's), the minimum order and
the neg-risk flag.

Lock-up: the payout is realised when the last leg resolves (`payout_date`, the latest leg's
Gamma `endDate`, computed once per cover: `CoverSpec.payout_date`); `annualised` = net profit
/ (VWAP cost + fees) at the profitable size × 365 / days from the newest leg price to that
date (at least 1 day; simple, not compounded); None without a size or a date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, timezone

from polyalphascan.records import CoverSpec, Leg, LegQuote, MarketTerms, PortfolioQuote, PriceUpdate, Side

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

#: Basket sizes (share-sets) of the published profit curve.
CURVE_SIZES = (10.0, 100.0, 1000.0)
_MAX_CURVE = CURVE_SIZES[-1]
_DAY_MS = 86_400_000


def fee_per_share(terms: MarketTerms, price: float) -> float:
    """The taker fee of one share bought at `price` (see the module docstring)."""
    rate = terms.fee_rate
    if rate <= 0.0 or not 0.0 < price < 1.0:
        return 0.0
    x = price * (1.0 - price)
    return rate * (x if terms.fee_exponent == 1.0 else x ** terms.fee_exponent)


def limit_price(price: float, tick: float) -> float:
    """`price` rounded up to the tick grid (a buy limit that takes the level at `price`)."""
    if tick <= 0.0:
        return price
    return min(1.0, round(math.ceil(round(price / tick, 6)) * tick, 10))


def _book(leg_side: Side, q: PriceUpdate) -> tuple[tuple[float, ...], bool]:
    """The levels a leg buys from, best first, flat (price, size, ...), and whether their prices
    are YES bids to flip (a NO leg pays 1 − each; flipped as the walk reaches them, not all
    ahead). Without depth, the top of book alone."""
    if leg_side is Side.YES:
        lv = q.asks
        if lv:
            return lv, False
        return ((q.best_ask, q.ask_size or 0.0) if q.best_ask is not None else ()), False
    lv = q.bids
    if lv:
        return lv, True
    return ((q.best_bid, q.bid_size or 0.0) if q.best_bid is not None else ()), True


def annualise(net_profit: float, outlay: float, payout: str | None, now_ms: int) -> float | None:
    """Simple annual return of `net_profit` on `outlay` locked from `now_ms` to `payout` (ISO date)."""
    if payout is None or outlay <= 0.0 or now_ms <= 0:
        return None
    try:
        end = date.fromisoformat(payout)
    except ValueError:
        return None
    today = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).date()
    days = max(1, (end - today).days)
    return net_profit / outlay * 365.0 / days


class Walk:
    """What `walk` found: the profitable size and, at it, the cost ex fees, the fees, the net
    profit; the curve; per leg the cost, the fees and the worst price taken."""

    __slots__ = ("size", "cost", "fees", "net", "curve", "leg_cost", "leg_fee", "worst")

    def __init__(self, size: float, cost: float, fees: float, net: float, curve: tuple[float | None, ...],
                 leg_cost: list[float], leg_fee: list[float], worst: list[float]) -> None:
        self.size, self.cost, self.fees, self.net, self.curve = size, cost, fees, net, curve
        self.leg_cost, self.leg_fee, self.worst = leg_cost, leg_fee, worst


def walk(terms: list[MarketTerms], books: list[tuple[float, ...]], payout: float, flips: list[bool]) -> Walk:
    """Walk the legs' books (flat, best first; `flips[i]`: leg i's prices are YES bids to flip)
    for equal share counts (module docstring). `evaluate` calls it only for a basket that makes
    money on its first share-set (it tells the others apart itself). Two phases: while
    profitable, with the per-leg bookkeeping of the order; then, for the curve only, the margin."""
    n = len(books)
    flip = flips
    rates = [t.fee_rate for t in terms]
    charged = [r > 0.0 for r in rates]
    taxed = any(charged)
    rn = range(n)
    idx = [0] * n
    left = [b[1] if b else 0.0 for b in books]
    ends = [len(b) for b in books]
    price = [0.0] * n  # each leg's current level price (flipped for a NO leg)
    pfee = [0.0] * n
    for i in rn:
        if ends[i]:
            price[i] = _flip(books[i][0]) if flip[i] else books[i][0]
            if charged[i]:
                pfee[i] = fee_per_share(terms[i], price[i])
    shares = net = cost = fees = 0.0
    leg_cost = [0.0] * n
    leg_fee = [0.0] * n
    worst = [0.0] * n
    curve: list[float | None] = []
    ncurve = len(CURVE_SIZES)
    next_curve = CURVE_SIZES[0]
    last_m = last_mc = last_mf = 0.0
    profitable = True
    exhausted = False
    while True:
        seg = math.inf
        for i in rn:
            if left[i] <= EPS:  # next level (skipping any of size 0: size unknown)
                b = books[i]
                j = idx[i] + 2
                while j < ends[i] and b[j + 1] <= EPS:
                    j += 2
                idx[i] = j
                if j >= ends[i]:
                    exhausted = True
                    break
                left[i] = b[j + 1]
                price[i] = _flip(b[j]) if flip[i] else b[j]
                if charged[i]:
                    pfee[i] = fee_per_share(terms[i], price[i])
            if left[i] < seg:
                seg = left[i]
        if exhausted:
            break
        mc = sum(price)
        mf = sum(pfee) if taxed else 0.0
        m = payout - mc - mf
        if profitable and m <= EPS:
            profitable = False
            found = Walk(shares, cost, fees, net, (), leg_cost, leg_fee, worst)
        while next_curve <= shares + seg + EPS:
            curve.append(net + (next_curve - shares) * m)
            if len(curve) == ncurve:
                next_curve = math.inf
                break
            next_curve = CURVE_SIZES[len(curve)]
        shares += seg
        net += seg * m
        if profitable:
            cost += seg * mc
            fees += seg * mf
            for i in rn:
                left[i] -= seg
                p = price[i]
                leg_cost[i] += seg * p
                worst[i] = p
                if taxed:
                    leg_fee[i] += seg * pfee[i]
            last_m, last_mc, last_mf = m, mc, mf
        elif next_curve == math.inf:
            break
        else:
            for i in rn:
                left[i] -= seg
    if profitable:  # the known depth ended while still profitable
        found = Walk(shares, cost, fees, net, (), leg_cost, leg_fee, worst)
    while len(curve) < ncurve:
        curve.append(None)
    found.curve = tuple(curve)
    floored = math.floor(found.size * 100 + 1e-6) / 100  # orders are in hundredths of a share
    cut = found.size - floored
    if cut > EPS:  # taken off the last profitable segment, whose numbers are known
        found.size = floored
        found.net -= cut * last_m
        found.cost -= cut * last_mc
        found.fees -= cut * last_mf
        for i in rn:  # the last profitable segment's prices are the worst taken
            found.leg_cost[i] -= cut * found.worst[i]
            if rates[i] > 0.0:
                found.leg_fee[i] -= cut * fee_per_share(terms[i], found.worst[i])
    return found


def tier_of(coverage: float) -> int:
    for bound, tier in TIERS:
        if coverage >= bound - EPS:
            return tier
    return 4


#: Per leg of a cover, what pricing reads from its `Leg` on every call: YES token, side is YES,
#: market, side, token bought, Gamma tick, minimum order, neg-risk flag, terms, fee rate.
_LegPlan = tuple[str, bool, str, Side, str, float, float, bool, MarketTerms, float]
#: Per cover: its legs tuple (kept, so its id is not reused while cached), the leg plans, the
#: largest minimum order, the legs that pay fees (index, side is YES, rate, exponent; empty
#: when none does), the first leg's question.
_Plan = tuple[tuple[Leg, ...], tuple[_LegPlan, ...], float, tuple[tuple[int, bool, float, float], ...], str]
#: Bound of the plan cache (one entry per legs tuple priced, ~600 bytes for 2–3 legs): above
#: every live cover count of a worker; past it the oldest entry goes. A removed cover's plan
#: (and its legs) stays until pushed out.
PLAN_CACHE_SIZE = 1 << 18
_plans: dict[int, _Plan] = {}
#: Memos of pure float functions called again and again on the same few prices: 1 − p rounded
#: to 10 decimals (a NO leg's price from a YES one), a cost or a profit rounded, a limit price.
#: Each is emptied when it reaches `_MEMO_SIZE` entries.
_MEMO_SIZE = 1 << 16
_flips: dict[float, float] = {}
_rounded: dict[float, float] = {}
_limits: dict[tuple[float, float], float] = {}


def _compile(legs: tuple[Leg, ...]) -> _Plan:
    """What `evaluate` needs of `legs`, computed once (a spec's legs never change)."""
    plans = tuple((leg.yes_token, leg.side is Side.YES, leg.market_id, leg.side, leg.token_id, leg.terms.tick,
                   leg.terms.min_size, leg.terms.neg_risk, leg.terms, leg.terms.fee_rate) for leg in legs)
    min_order = max(leg.terms.min_size for leg in legs) if legs else math.nan
    taxed = tuple((i, leg.side is Side.YES, leg.terms.fee_rate, leg.terms.fee_exponent)
                  for i, leg in enumerate(legs) if leg.terms.fee_rate > 0.0)
    return legs, plans, min_order, taxed, legs[0].question if legs else ""


def _plan(spec: CoverSpec) -> _Plan:
    """The cached plan of `spec`'s legs (keyed by the identity of its legs tuple)."""
    legs = spec.legs
    plan = _plans.get(id(legs))
    if plan is not None and plan[0] is legs:
        return plan
    plan = _compile(legs)
    if len(_plans) >= PLAN_CACHE_SIZE:
        del _plans[next(iter(_plans))]
    _plans[id(legs)] = plan
    return plan


def _flip(price: float) -> float:
    """round(1 − price, 10), memoised."""
    out = _flips.get(price)
    if out is None:
        out = round(1.0 - price, 10)
        if len(_flips) >= _MEMO_SIZE:
            _flips.clear()
        _flips[price] = out
    return out


def _round10(value: float) -> float:
    """round(value, 10), memoised (a cost or a profit: sums of a few prices repeat). Never
    given −0.0, which would find the entry of 0.0."""
    out = _rounded.get(value)
    if out is None:
        out = round(value, 10)
        if len(_rounded) >= _MEMO_SIZE:
            _rounded.clear()
        _rounded[value] = out
    return out


def _limit(price: float, tick: float) -> float:
    """`limit_price(price, tick)`, memoised on a positive tick (where 0.0 and −0.0, equal keys,
    give the same limit)."""
    if not tick > 0.0:
        return limit_price(price, tick)
    key = (price, tick)
    out = _limits.get(key)
    if out is None:
        out = limit_price(price, tick)
        if len(_limits) >= _MEMO_SIZE:
            _limits.clear()
        _limits[key] = out
    return out


def _top_fees(taxed: tuple[tuple[int, bool, float, float], ...], tops: list[PriceUpdate]) -> float:
    """The fees of the first share-set: each taxed leg (index, side is YES, rate, exponent) at
    the first level of its book, computed and summed as `walk` does (`fee_per_share`)."""
    fees: list[float] = []
    for i, is_yes, rate, exponent in taxed:
        q = tops[i]
        if is_yes:
            lv = q.asks
            price = lv[0] if lv else q.best_ask
        else:
            lv = q.bids
            price = _flip(lv[0] if lv else q.best_bid)
        if not 0.0 < price < 1.0:
            fees.append(0.0)
            continue
        x = price * (1.0 - price)
        fees.append(rate * (x if exponent == 1.0 else x ** exponent))
    return sum(fees)


def evaluate(
    spec: CoverSpec, yes_quotes: Mapping[str, PriceUpdate], *, min_coverage: float, max_cost: float,
    depth: bool = True,
) -> tuple[PortfolioQuote | None, str]:
    """The quote and why it is missing: ok | no_price | crossed_book | low_coverage |
    too_expensive. A crossed top of book (bid above ask: a stale or half-applied update, never
    a resting book) prices nothing: it would show a profit no order can take. `depth=False`
    prices from the top of book alone, as before issue 16 (size = the smallest top size when
    profitable, no fees, no walk): the baseline `bench/portfolio_latency.py` compares with.

    Hot path: what depends on the legs alone comes from a cached plan; a basket that loses money
    on its first share-set (the common case) is told apart here, before any book is gathered."""
    if not spec.legs:
        return None, REASON_NO_PRICE  # nothing to buy (and a walk over no book would never end)
    plan = _plans.get(id(spec.legs))
    if plan is None or plan[0] is not spec.legs:
        plan = _plan(spec)
    _, plans, min_order, taxed, question = plan
    get = yes_quotes.get
    flip = _flips.get
    legs: list[LegQuote] = []
    tops: list[PriceUpdate] = []
    cost = 0.0
    top_size = math.inf
    updated = 0
    for yes_token, is_yes, market_id, side, token_id, tick, min_size, neg_risk, _terms, _rate in plans:
        q = get(yes_token)
        if q is None:
            return None, REASON_NO_PRICE
        best_bid = q.best_bid
        best_ask = q.best_ask
        if best_bid is not None and best_ask is not None and best_bid > best_ask + EPS:
            return None, REASON_CROSSED
        if is_yes:
            if best_ask is None:
                return None, REASON_NO_PRICE
            ask = best_ask
            avail = q.ask_size
            bid = best_bid
        else:
            if best_bid is None:
                return None, REASON_NO_PRICE
            ask = flip(best_bid)
            if ask is None:
                ask = _flip(best_bid)
            avail = q.bid_size
            if best_ask is None:
                bid = None
            else:
                bid = flip(best_ask)
                if bid is None:
                    bid = _flip(best_ask)
        legs.append(LegQuote(market_id, side, token_id, ask, avail, bid, 0.0, None, None, 0.0, q.tick or tick,
                             min_size, neg_risk))
        tops.append(q)
        if not depth:
            top_size = min(top_size, avail if avail is not None else 0.0)
        cost += ask
        ts = q.exchange_ts_ms or q.recv_ts_ms
        if ts > updated:
            updated = ts
    cost = _round10(cost)  # a sum from 0.0: never −0.0
    payout = spec.payout
    if spec.guaranteed:
        coverage, loss, tier = 1.0, 0.0, 1  # tier_of(1.0)
    else:
        p_t = legs[0].ask
        qv = spec.cover_probability
        coverage = p_t + (1.0 - p_t) * qv
        loss = (1.0 - p_t) * (1.0 - qv)
        tier = max(LLM_BEST_TIER, tier_of(coverage))
    if coverage < min_coverage - EPS or tier == 4:
        return None, REASON_LOW_COVERAGE
    if payout <= 0 or cost / payout > max_cost + EPS:
        return None, REASON_TOO_EXPENSIVE
    profit = _round10(payout - cost)  # payout > 0 (or nan) here: never −0.0
    day = spec.payout_date
    curve: tuple[float | None, ...] = ()
    vwap: float | None = None
    fees = net = 0.0
    annual: float | None = None
    if not depth:
        size = top_size if profit > EPS and top_size != math.inf else 0.0
        net = round(profit * size, 10)
    elif payout - cost - (_top_fees(taxed, tops) if taxed else 0.0) <= EPS:
        size = 0.0  # loses on the first share-set: what `walk` returns at once (size 0, no curve)
    else:
        size, net, vwap, fees, curve, annual = _depth(plans, tops, legs, payout, min_order, day, updated)
    return PortfolioQuote(  # positional (hot path): the field order of `PortfolioQuote`
        spec.id, spec.kind, spec.guaranteed, tuple(legs), cost, payout, profit,
        profit / cost * 100.0 if cost > 0 else 0.0, coverage, loss, coverage * payout - cost, tier, size, updated,
        spec.explanation, question, net, vwap, fees, curve, day, annual), REASON_OK


def _depth(plans: tuple[_LegPlan, ...], tops: list[PriceUpdate], legs: list[LegQuote], payout: float,
           min_order: float, day: str | None, updated: int,
           ) -> tuple[float, float, float | None, float, tuple[float | None, ...], float | None]:
    """Walk the books of a basket that makes money on its first share-set; fill each leg's
    order. Returns size, net profit, VWAP, fees, curve and annualised return."""
    books: list[tuple[float, ...]] = []
    flips: list[bool] = []
    for lp, q in zip(plans, tops):
        lv, flip = _book(lp[3], q)
        books.append(lv)
        flips.append(flip)
    w = walk([lp[8] for lp in plans], books, payout, flips)
    size = w.size
    net = fees = 0.0
    vwap: float | None = None
    annual: float | None = None
    if size > EPS and size >= min_order - EPS:
        net = round(w.net, 10)
        vwap = round(w.cost / size, 10)
        fees = round(w.fees, 10)
        for lq, leg_cost, leg_fee, worst in zip(legs, w.leg_cost, w.leg_fee, w.worst):
            lq.shares = size
            lq.vwap = round(leg_cost / size, 10)
            lq.fee = round(leg_fee, 10) if leg_fee else leg_fee  # ±0.0 (a fee-free leg) rounds to itself
            lq.limit = _limit(worst, lq.tick)
        annual = annualise(net, w.cost + w.fees, day, updated)
    else:  # nothing profitable, or less than an order can buy
        size = 0.0
    curve = tuple(round(c, 10) if c is not None else None for c in w.curve) if w.curve else ()
    return size, net, vwap, fees, curve, annual


def price_cover(
    spec: CoverSpec, yes_quotes: Mapping[str, PriceUpdate], *, min_coverage: float, max_cost: float,
    depth: bool = True,
) -> PortfolioQuote | None:
    """The priced portfolio, or None when a price is missing or it is filtered out."""
    return evaluate(spec, yes_quotes, min_coverage=min_coverage, max_cost=max_cost, depth=depth)[0]


def quote_changed(old: PortfolioQuote, new: PortfolioQuote) -> bool:
    """True when anything a consumer acts on changed (prices, sizes, numbers); not the timestamp."""
    if old.cost != new.cost or old.tier != new.tier or old.size_at_profit != new.size_at_profit:
        return True
    if old.net_profit != new.net_profit or old.curve != new.curve or old.fees != new.fees:
        return True
    if old.coverage != new.coverage or old.payout != new.payout:
        return True
    for a, b in zip(old.legs, new.legs):
        if a.ask != b.ask or a.ask_size != b.ask_size or a.limit != b.limit or a.tick != b.tick:
            return True
    return False
