"""The keyed join of covering portfolios with live prices.

One keyed stage, keyed by **join shard**: every cover belongs to one of `shards` shards (a
stable hash of its id, `shard_of`), and a shard (`JoinShard`) holds, for its covers:

- the `CoverSpec`s, and an index YES token -> the covers holding it, with the sides of the
  book each buys from (a YES leg buys from the asks, a NO leg from 1 − the bids);
- the latest `PriceUpdate` of every token it has seen (a cover registered later is priced
  from the books at once);
- the last published quote of each cover.

Prices travel a whole batch at a time: every batch of updates Bytewax hands the step becomes
one message per shard holding the latest update of each token in it (`price_batches`), so the
dataflow's own per-item cost is paid per batch and per shard, not per update and per
portfolio, and a token that moved twice in a batch counts once. A shard stores the batch's
prices (one dict update) and, for the tokens its covers hold only, compares the new book with
the one its covers were priced from: it marks dirty the covers whose side of the book moved
(a move on the side no leg buys, of the same tick, re-prices nothing). It then
re-prices each dirty cover once, however many of its legs moved in the batch, and emits only
when the numbers changed (`quote_changed`), a removal when the quote is filtered out or the
book is crossed. The work for an update grows with the number of covers holding its token,
never with the total number of covers.

Other messages keep their order exactly: before a registration, a closure or a retraction,
the covers made dirty by the prices before it are re-priced. A registration prices the cover
at once from the books the shard holds; a registration of a known cover with other terms
re-prices it. A market closure (sent to every shard) removes every cover holding its YES token
and forgets that token's book; a retraction removes one cover. An item that raises is counted
and dropped (`errors`); the rest of its batch goes on (in a price batch, the other tokens'
covers are re-priced all the same).

Scale-out: the shards are Bytewax keys, so a cluster spreads them over its workers (Bytewax
routes a key to a worker by hashing it); every shard receives every price batch, and prices
what its covers need. Every shard keeps every book, so one worker is best served by one
shard; a cluster needs at least as many shards as workers in total (`JOIN_SHARDS`).

Snapshots: a shard's snapshot is its covers alone, pickled once each time they change and
the same bytes at every epoch in between (price moves never make a shard pickle anything).
Books and published quotes are not kept: a resumed flow's WebSocket connections start with a
fresh `book` of every subscribed token, which prices every cover again, and each one is
published once more (an unchanged portfolio rewrites its own data). Without a recovery store
nothing ever reads a snapshot, so `recoverable=False` returns None.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

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

# shard messages: ("px", {YES token: PriceUpdate}) | ("reg", CoverSpec) | ("close", yes token) | ("retract", cover id)

#: a cover's use of one token's book: bit 1 = a YES leg (buys the asks), bit 2 = a NO leg (buys 1 − the bids)
BUYS_ASKS = 1
BUYS_BIDS = 2

Errors = Callable[[Exception], None]


def _raise(exc: Exception) -> None:
    raise exc


def shard_of(cover_id: str, shards: int) -> str:
    """The join shard (a Bytewax key) of a cover: the same in every process and every run."""
    return str(zlib.crc32(cover_id.encode()) % shards)


def book_uses(spec: CoverSpec) -> dict[str, int]:
    """Per YES token of the cover, the sides of its book the legs buy from (`BUYS_*` bits)."""
    uses: dict[str, int] = {}
    for leg in spec.legs:
        uses[leg.yes_token] = uses.get(leg.yes_token, 0) | (BUYS_ASKS if leg.side is Side.YES else BUYS_BIDS)
    return uses


class JoinShard(StatefulBatchLogic):
    """One join shard: its covers, the books they price from, their published quotes."""

    def __init__(
        self,
        resume: bytes | None,
        *,
        min_coverage: float,
        max_cost: float,
        metrics: MetricGroup,
        depth: bool = True,
        errors: Errors = _raise,
        recoverable: bool = True,
    ) -> None:
        self.min_coverage = min_coverage
        self.max_cost = max_cost
        self.metrics = metrics
        self.depth = depth  # False: top-of-book pricing (the latency benchmark's baseline)
        self.errors = errors
        self.recoverable = recoverable
        self.specs: dict[str, CoverSpec] = {}
        self.holders: dict[str, dict[str, int]] = {}  # YES token -> {cover id: BUYS_* bits}
        self.prices: dict[str, PriceUpdate] = {}
        self.published: dict[str, PortfolioQuote] = {}
        self._snapshot: bytes | None = None  # the pickled covers, until they change
        if resume is not None:
            for spec in pickle.loads(resume):
                self._index(spec)

    # ------------------------------------------------------------------ state
    def _index(self, spec: CoverSpec) -> None:
        self._snapshot = None
        self.specs[spec.id] = spec
        for token, uses in book_uses(spec).items():
            self.holders.setdefault(token, {})[spec.id] = uses

    def _unindex(self, spec: CoverSpec) -> None:
        self._snapshot = None
        del self.specs[spec.id]
        for token in book_uses(spec):
            held = self.holders[token]
            del held[spec.id]
            if not held:
                del self.holders[token]

    def _remove(self, cover_id: str, reason: str) -> list[PortfolioChange]:
        spec = self.specs.get(cover_id)
        if spec is None:
            return []
        self._unindex(spec)
        self.published.pop(cover_id, None)
        return [PortfolioRemoved(cover_id, reason)]

    # ------------------------------------------------------------------ pricing
    def _reprice(self, cover_ids: Iterable[str]) -> list[PortfolioChange]:
        """Re-price the covers (live ones: dirty marks never outlive a batch's price run) and
        return what changed for consumers."""
        out: list[PortfolioChange] = []
        repriced = crossed = 0
        specs, published, prices = self.specs, self.published, self.prices
        for cid in cover_ids:
            try:
                spec = specs[cid]
                repriced += 1
                quote, reason = evaluate(spec, prices, min_coverage=self.min_coverage, max_cost=self.max_cost,
                                         depth=self.depth)
                if quote is None:
                    if reason == REASON_CROSSED:
                        crossed += 1
                    if published.pop(cid, None) is not None:
                        out.append(PortfolioRemoved(cid, reason if reason == REASON_CROSSED else "filtered"))
                    continue
                last = published.get(cid)
                if last is None or quote_changed(last, quote):
                    published[cid] = quote
                    out.append(PortfolioUpsert(quote, spec))
            except Exception as exc:  # noqa: BLE001 - one cover must not cost the others
                self.errors(exc)
        if repriced:
            self.metrics.inc("repriced", repriced)
        if crossed:
            self.metrics.inc("crossed_book", crossed)
        return out

    def _apply_prices(self, latest: dict[str, PriceUpdate], dirty: dict[str, None]) -> None:
        """Store a batch's prices (the latest update per token); mark dirty the covers whose
        side of a token's book moved since the price they were last priced from."""
        prices, holders = self.prices, self.holders
        for token in latest.keys() & holders.keys():  # the few tokens this shard's covers hold
            try:
                u = latest[token]
                old = prices.get(token)
                held = holders[token]
                if old is None or old.tick != u.tick:
                    dirty.update(dict.fromkeys(held))
                    continue
                moved = 0
                if old.best_ask != u.best_ask or old.ask_size != u.ask_size or old.asks != u.asks:
                    moved = BUYS_ASKS
                if old.best_bid != u.best_bid or old.bid_size != u.bid_size or old.bids != u.bids:
                    moved |= BUYS_BIDS
                if moved:
                    for cid, uses in held.items():
                        if uses & moved:
                            dirty[cid] = None
            except Exception as exc:  # noqa: BLE001 - one bad update must not cost the batch
                self.errors(exc)
        prices.update(latest)

    # ------------------------------------------------------------------ messages
    def _register(self, spec: CoverSpec) -> list[PortfolioChange]:
        known = self.specs.get(spec.id)
        if known == spec:
            return []  # re-registration (the event was grouped again): nothing new
        if known is not None:
            self._unindex(known)  # same legs, new terms (a fee or a tick changed on Gamma)
        self._index(spec)
        return self._reprice((spec.id,))

    def _close(self, token: str) -> list[PortfolioChange]:
        out: list[PortfolioChange] = []
        for cid in list(self.holders.get(token, ())):
            out += self._remove(cid, "market_closed")
        self.prices.pop(token, None)  # a new listing of the token starts from a fresh book
        return out

    def _message(self, kind: str, payload: Any) -> list[PortfolioChange]:
        if kind == "reg":
            return self._register(payload)
        if kind == "close":
            return self._close(payload)
        if kind == "retract":
            return self._remove(payload, "retracted")
        return []

    def on_batch(self, values: list[tuple[str, Any]]) -> tuple[list[list[PortfolioChange]], bool]:
        """Every message in order; the dirty covers re-priced once before the next non-price
        message and at the end. Emits one list of changes (none when nothing changed)."""
        out: list[PortfolioChange] = []
        dirty: dict[str, None] = {}
        for value in values:
            try:
                kind, payload = value
                if kind == "px":
                    self._apply_prices(payload, dirty)
                    continue
                if dirty:
                    out += self._reprice(dirty)
                    dirty = {}
                out += self._message(kind, payload)
            except Exception as exc:  # noqa: BLE001 - one bad item must not cost the batch
                self.errors(exc)
        if dirty:
            out += self._reprice(dirty)
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes | None:
        if not self.recoverable:
            return None
        if self._snapshot is None:
            self._snapshot = pickle.dumps(tuple(self.specs.values()))
        return self._snapshot


# ---------------------------------------------------------------------- wiring
def price_batches(keys: list[str], errors: Errors = _raise) -> Callable[[list[PriceUpdate]], list[tuple[str, tuple[str, Any]]]]:
    """A batch of updates -> one ("px", {token: its latest update}) message per shard, the same
    dict for all (read only). Anything that is not a `PriceUpdate` is reported and left out."""

    def route(batch: list[PriceUpdate]) -> list[tuple[str, tuple[str, Any]]]:
        latest = {u.token_id: u for u in batch if type(u) is PriceUpdate}
        if len(latest) < len(batch):
            for u in batch:
                if type(u) is not PriceUpdate:
                    errors(TypeError(f"not a PriceUpdate: {type(u).__name__}"))
        return [(key, ("px", latest)) for key in keys] if latest else []

    return route


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
    shards: int = 1,
    recoverable: bool = True,
) -> Stream[PortfolioChange]:
    """Wire the join: prices + covers + closures (+ retractions) in, upserts/removals out.
    The shards count into `metrics` (the flow's "portfolios" group); with `steps`, an item that
    makes a shard raise is dropped and counted there instead of ending the flow. `depth=False`
    prices from the top of book alone (the latency benchmark's baseline). `recoverable=False`:
    the flow runs without a recovery store, so the shards skip their snapshots."""
    if shards < 1:
        raise ValueError("shards must be >= 1")
    group = metrics if metrics is not None else MetricGroup("portfolios")
    keys = [str(i) for i in range(shards)]
    px = op.flat_map_batch(f"{step_id}_px", prices, price_batches(
        keys, StepErrors(f"{step_id}_px", steps) if steps is not None else _raise))
    reg = op.map(f"{step_id}_reg", covers, lambda spec: (shard_of(spec.id, shards), ("reg", spec)))
    cls = op.flat_map(f"{step_id}_close", closed, lambda c: [(key, ("close", c.yes_token)) for key in keys])
    inputs = [px, reg, cls]
    if retracted is not None:
        inputs.append(op.map(f"{step_id}_retract", retracted,
                             lambda r: (shard_of(r.cover_id, shards), ("retract", r.cover_id))))
    by_shard = op.merge(f"{step_id}_by_shard", *inputs)
    errors = StepErrors(f"{step_id}_shard", steps) if steps is not None else _raise
    priced = op.stateful_batch(
        f"{step_id}_shard",
        by_shard,
        lambda resume: JoinShard(resume, min_coverage=min_coverage, max_cost=max_cost, metrics=group, depth=depth,
                                 errors=errors, recoverable=recoverable),
    )
    return op.flat_map(f"{step_id}_unkey", priced, lambda kv: kv[1])
