"""The keyed join of covering portfolios with live prices.

Two keyed stages, so the cost of one price update grows with the number of portfolios
holding that token, never with the total:

1. **by YES token** (`TokenFanout`): state = the token's latest `PriceUpdate` and the covers
   that hold it. A price update fans out to those covers only; a cover registration gets
   the current price; a market-closed notice sends a removal to every cover holding it.
2. **by cover id** (`CoverPricer`): state = the `CoverSpec`, the latest price of each leg's
   YES token and the last published quote. Re-prices when a leg's executable price or size
   moved (a YES leg ignores the bid side, a NO leg the ask side) and emits only when the
   numbers changed (`quote_changed`), a removal when the quote is filtered out or a market
   closed.

Both stages work on whole batches (`on_batch`: every item Bytewax queued for the key since
its last activation), so work does not grow with the update rate faster than the prices move:
stage 1 fans a token's price out once per batch, whatever number of updates of that token
the batch holds (the covers only ever need the latest), and stage 2 re-prices a cover once
per batch, whatever number of its legs moved. Under load batches grow and more updates share
one re-pricing; at low rates a batch is one update and nothing waits. Items other than prices
keep their order exactly (`on_item` is the one-item logic both batch methods apply). An item
that raises is counted and dropped (`errors`), the rest of its batch goes on.

Messages between the stages are plain tuples, prices included (`tuple(PriceUpdate)`): a
record class in a message costs several µs of pickling each time it crosses to another
process, a plain tuple of numbers a fraction of that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic, StatefulLogic

from operators.guard import StepErrors
from operators.pricing import REASON_CROSSED, evaluate, quote_changed
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import (
    CoverRetracted,
    CoverSpec,
    MarketClosed,
    PortfolioChange,
    PortfolioQuote,
    PortfolioRemoved,
    PortfolioUpsert,
    PriceUpdate,
    Side,
)



# stage-1 inputs: ("px", price tuple) | ("reg", CoverSpec) | ("close", market_id) | ("retract", cover id)
# stage-2 inputs: ("reg", CoverSpec) | ("px", price tuple) | ("rm", reason)


Errors = Callable[[Exception], None]


def _raise(exc: Exception) -> None:
    raise exc


class TokenFanout(StatefulBatchLogic):
    """Stage 1, keyed by YES token id."""

    def __init__(self, resume: tuple[tuple[Any, ...] | None, dict[str, CoverSpec]] | None,
                 errors: Errors = _raise) -> None:
        self.errors = errors
        if resume is None:
            self.price: tuple[Any, ...] | None = None  # the token's latest PriceUpdate, as a plain tuple
            self.covers: dict[str, CoverSpec] = {}
        else:
            self.price, self.covers = resume[0], dict(resume[1])

    def on_item(self, value: tuple[str, Any]) -> tuple[list[tuple[str, tuple[str, Any]]], bool]:
        kind, payload = value
        if kind == "px":
            self.price = payload
            return [(cid, ("px", payload)) for cid in self.covers], StatefulLogic.RETAIN
        if kind == "reg":
            spec: CoverSpec = payload
            known = self.covers.get(spec.id)
            if known is not None:
                if known == spec:
                    return [], StatefulLogic.RETAIN  # re-registration (event re-grouped): nothing new
                self.covers[spec.id] = spec  # same legs, new terms (a fee or tick changed on Gamma)
                return [(spec.id, ("reg", spec))], StatefulLogic.RETAIN
            self.covers[spec.id] = spec
            out: list[tuple[str, tuple[str, Any]]] = [(spec.id, ("reg", spec))]
            if self.price is not None:
                out.append((spec.id, ("px", self.price)))
            return out, StatefulLogic.RETAIN
        if kind == "close":
            out = [(cid, ("rm", "market_closed")) for cid in self.covers]
            self.price, self.covers = None, {}
            return out, StatefulLogic.DISCARD
        if kind == "retract":
            if self.covers.pop(payload, None) is not None:
                return [(payload, ("rm", "retracted"))], StatefulLogic.RETAIN
            return [], StatefulLogic.RETAIN
        return [], StatefulLogic.RETAIN

    def on_batch(self, values: list[tuple[str, Any]]) -> tuple[list[tuple[str, tuple[str, Any]]], bool]:
        """`on_item` over the batch, except that consecutive price updates fan out once, the
        last of them."""
        out: list[tuple[str, tuple[str, Any]]] = []
        pending: tuple[Any, ...] | None = None
        closed = False
        for value in values:
            try:
                kind, payload = value
                if kind == "px":
                    self.price = pending = payload
                    closed = False
                    continue
                if pending is not None:
                    out += [(cid, ("px", pending)) for cid in self.covers]
                    pending = None
                items, discard = self.on_item(value)
                out += items
                closed = discard or (closed and not self.covers and self.price is None)
            except Exception as exc:  # noqa: BLE001 - one bad item must not cost the batch
                self.errors(exc)
        if pending is not None:
            out += [(cid, ("px", pending)) for cid in self.covers]
        return out, StatefulBatchLogic.DISCARD if closed else StatefulBatchLogic.RETAIN

    def snapshot(self) -> tuple[tuple[Any, ...] | None, dict[str, CoverSpec]]:
        return (self.price, dict(self.covers))


class CoverPricer(StatefulBatchLogic):
    """Stage 2, keyed by cover id."""

    def __init__(
        self,
        resume: tuple[CoverSpec | None, dict[str, PriceUpdate], PortfolioQuote | None] | None,
        *,
        min_coverage: float,
        max_cost: float,
        metrics: MetricGroup,
        depth: bool = True,
        errors: Errors = _raise,
    ) -> None:
        self.errors = errors
        self.min_coverage = min_coverage
        self.max_cost = max_cost
        self.metrics = metrics
        self.depth = depth  # False: top-of-book pricing (the benchmark's baseline)
        if resume is None:
            self.spec: CoverSpec | None = None
            self.quotes: dict[str, PriceUpdate] = {}
            self.published: PortfolioQuote | None = None
        else:
            self.spec, self.quotes, self.published = resume[0], dict(resume[1]), resume[2]

    def _reprice(self) -> list[PortfolioChange]:
        assert self.spec is not None
        self.metrics.inc("repriced")
        quote, reason = evaluate(self.spec, self.quotes, min_coverage=self.min_coverage, max_cost=self.max_cost,
                                 depth=self.depth)
        if quote is None:
            if reason == REASON_CROSSED:
                self.metrics.inc("crossed_book")
            if self.published is not None:
                self.published = None
                return [PortfolioRemoved(self.spec.id, reason if reason == REASON_CROSSED else "filtered")]
            return []
        if self.published is None or quote_changed(self.published, quote):
            self.published = quote
            return [PortfolioUpsert(quote, self.spec)]
        return []

    def _same_for_legs(self, old: PriceUpdate, new: PriceUpdate) -> bool:
        """True when nothing the legs on this token pay changed: a YES leg buys from the YES
        asks, a NO leg from 1 − the YES bids (see `pricing`), each as deep as the update
        carries; a new tick changes the limit prices of both."""
        assert self.spec is not None
        if old.tick != new.tick:
            return False
        for leg in self.spec.legs:
            if leg.yes_token != new.token_id:
                continue
            if leg.side is Side.YES:
                if old.best_ask != new.best_ask or old.ask_size != new.ask_size or old.asks != new.asks:
                    return False
            elif old.best_bid != new.best_bid or old.bid_size != new.bid_size or old.bids != new.bids:
                return False
        return True

    def on_item(self, value: tuple[str, Any]) -> tuple[list[PortfolioChange], bool]:
        kind, payload = value
        if kind == "reg":
            if self.spec is None or self.spec != payload:  # new, or its legs' terms changed
                self.spec = payload
                return self._reprice(), StatefulLogic.RETAIN
            return [], StatefulLogic.RETAIN
        if kind == "px":
            if self.spec is None:
                # a leg's token still lists a cover that was removed: nothing to keep
                self.metrics.inc("stale_fanout")
                return [], StatefulLogic.DISCARD
            update = PriceUpdate._make(payload)
            old = self.quotes.get(update.token_id)
            self.quotes[update.token_id] = update
            if old is not None and self._same_for_legs(old, update):
                return [], StatefulLogic.RETAIN  # only the side of the book no leg buys moved
            return self._reprice(), StatefulLogic.RETAIN
        if kind == "rm":
            cid = self.spec.id if self.spec is not None else ""
            self.spec = None
            self.quotes = {}
            self.published = None
            return ([PortfolioRemoved(cid, payload)] if cid else []), StatefulLogic.DISCARD
        return [], StatefulLogic.RETAIN

    def on_batch(self, values: list[tuple[str, Any]]) -> tuple[list[PortfolioChange], bool]:
        """`on_item` over the batch, except that the price updates in a row are applied first
        and the cover re-priced once after them."""
        out: list[PortfolioChange] = []
        dirty = False
        for value in values:
            try:
                kind, payload = value
                if kind == "px" and self.spec is not None:
                    update = PriceUpdate._make(payload)
                    old = self.quotes.get(update.token_id)
                    self.quotes[update.token_id] = update
                    dirty = dirty or old is None or not self._same_for_legs(old, update)
                    continue
                if dirty:
                    dirty = False
                    out += self._reprice()
                out += self.on_item(value)[0]
            except Exception as exc:  # noqa: BLE001 - one bad item must not cost the batch
                self.errors(exc)
        if dirty:
            try:
                out += self._reprice()
            except Exception as exc:  # noqa: BLE001
                self.errors(exc)
        return out, StatefulBatchLogic.DISCARD if self.spec is None else StatefulBatchLogic.RETAIN

    def snapshot(self) -> tuple[CoverSpec | None, dict[str, PriceUpdate], PortfolioQuote | None]:
        return (self.spec, dict(self.quotes), self.published)


def _registrations(spec: CoverSpec) -> list[tuple[str, tuple[str, Any]]]:
    return [(tok, ("reg", spec)) for tok in dict.fromkeys(leg.yes_token for leg in spec.legs)]


def portfolio_join(
    step_id: str,
    prices: Stream[PriceUpdate],
    covers: Stream[CoverSpec],
    closed: Stream[MarketClosed],
    *,
    min_coverage: float,
    max_cost: float,
    retracted: Stream[CoverRetracted] | None = None,
    metrics: MetricGroup | None = None,
    steps: MetricGroup | None = None,
    depth: bool = True,
) -> Stream[PortfolioChange]:
    """Wire both stages: prices + covers + closures (+ retractions) in, upserts/removals out;
    the pricer counts into `metrics` (the flow's "portfolios" group); with `steps`, an item that
    makes a stage raise is dropped and counted there instead of ending the flow. `depth=False`
    prices from the top of book alone (the latency benchmark's baseline)."""
    group = metrics if metrics is not None else MetricGroup("portfolios")
    px = op.map(f"{step_id}_px", prices, lambda p: (p.token_id, ("px", tuple(p))))
    reg = op.flat_map(f"{step_id}_reg", covers, _registrations)
    cls = op.map(f"{step_id}_close", closed, lambda c: (c.yes_token, ("close", c.market_id)))
    inputs = [px, reg, cls]
    if retracted is not None:
        inputs.append(op.flat_map(f"{step_id}_retract", retracted,
                                  lambda r: [(tok, ("retract", r.cover_id)) for tok in r.yes_tokens]))
    by_token = op.merge(f"{step_id}_by_token", *inputs)
    fan_errors = StepErrors(f"{step_id}_fanout", steps) if steps is not None else _raise
    fanned = op.stateful_batch(f"{step_id}_fanout", by_token, lambda resume: TokenFanout(resume, fan_errors))
    # output items are (token, (cover_id, msg)): re-key by cover id
    by_cover = op.map(f"{step_id}_rekey", fanned, lambda kv: kv[1])
    price_errors = StepErrors(f"{step_id}_price", steps) if steps is not None else _raise
    priced = op.stateful_batch(
        f"{step_id}_price",
        by_cover,
        lambda resume: CoverPricer(resume, min_coverage=min_coverage, max_cost=max_cost, metrics=group, depth=depth,
                                   errors=price_errors),
    )
    return op.map(f"{step_id}_unkey", priced, lambda kv: kv[1])
