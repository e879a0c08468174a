"""A deterministic, generated Polymarket-like market universe with known ground truth.

One `Universe` backs all three stand-ins: it is a `GammaStore` (events in Gamma's JSON
shape), a `MarketFeed` (order books + a fast random walk), an `ImplicationOracle` (answers
LLM implication prompts from the true cross-event relations), and it reports the ground
truth the scanner must find (`ground_truth()`): every covering portfolio the brief defines
over open markets, which of them are profitable at the current books, and the true
implications.

Prices live on the 0.01 grid as integer ticks (1..99): `bid[m]`, `ask[m]` are the YES top
of book; the NO book is its exact mirror. Every cover is a constraint on ticks:

    pair (premise p, conclusion c):  margin = ask[c] - bid[p]       (cost = ask c + 1 - bid p)
    ALL_NO over named markets:       margin = 100 - sum(bid)        (payout N-1)
    ALL_YES over an exhaustive event: margin = sum(ask) - 100       (payout 1)

A cover is profitable iff margin < 0. Quotes are built (and repaired by widening) so every
cover has margin >= 1 tick; then a few mispricings are injected (margin <= -1). Markets in
any cover with margin < 1 are *frozen*; the walk moves only the others and never lets a
margin drop below 1, so `step()` cannot change which covers are profitable.

Which covers exist (the ground truth) follows only the venue's flags and the listing:
- exclusivity comes only from `negRisk: true` (at most one market resolves Yes). ALL_NO is
  over the open (active, not closed), named markets of a neg-risk event, N >= 2; "Other"
  is named. A placeholder is a generic word + 1-2 capital letters ("Person K", "Party A",
  "Candidate AB").
- ALL_YES (same basket) only when the neg-risk event is exhaustive: `negRiskAugmented`
  false, no placeholder market at all (open, inactive or closed), no market inactive yet
  open, no closed market resolved Yes.
- ladders only in non-neg-risk events; a non-neg-risk multi-market event is never
  exclusive, even when its markets share an end date. Single-market events: no rule cover.

Event kinds (`event_kind()`), as Gamma shows them:
- timeframe ladder: negRisk false, groupItemTitle "March 31, 2027" (or "March 31" when all
  dates share the event's end year), question "Will … by March 31, 2027?", market endDate =
  that date, description "… by March 31, 2027, 11:59 PM ET".
- threshold ladder: negRisk false, every market shares one endDate (NOT mutually exclusive
  although the dates coincide), groupItemTitle "$100,000" / "$2.50" / "↑ 120k" / "↓ 60k" /
  "$1.2k", question with above|over|more than|at least|reach or below|under|less than|dip to.
  "What price will X hit in May 2027?" events hold both: "↑" bars ("reach") above the
  price and "↓" bars ("dip to") below it, one ladder per direction, none across.
- candidate: negRisk true, not augmented, one shared endDate, groupItemTitle = name;
  exhaustive ones have an "Other" market or list every outcome; the others carry active
  "Person A/B/C" placeholders (bid 0.01, ask 0.02), which are in no cover.
- augmented: negRisk true, `negRiskAugmented` true; named outcomes plus 1-3 inactive unnamed
  ones ("Person K", "Party A", "Candidate FG") and sometimes an inactive "Other"
  (`negRiskOther` true). Inactive markets are listed as the venue does (acceptingOrders,
  no outcomePrices, bestBid 0 / bestAsk 1), have an empty book, are not in `token_ids()`
  and never walk. ALL_NO over the active named markets, never ALL_YES. `add_market` names
  an unnamed outcome (same market and tokens, now active and quoted; the next `step()`
  streams its book filling), or lists an inactive "Other" or a further unnamed outcome.
- count: negRisk true, "How many X in <month year>?", exact counts "2" … "9" with an open
  top ("10+" / "10 or more") and an open ("1 or fewer" / "<2") or natural ("0") bottom.
- range: negRisk true, buckets "<300", "300-324", …, "400+" or "<60M", "60M-80M", …,
  "110M+". Count and range labels are numbers, yet exclusive and (open top) exhaustive
  outcomes: ALL_NO + ALL_YES, never a ladder. Their buckets are fixed: `add_market` refuses.
- multi: negRisk false, several markets on one end date of which any subset can resolve
  Yes ("Which teams will be relegated from …?", "Top 4 finish in …?", "Which countries
  will … by <date>?"): no cover, and in no relation family.
- single-market event: groupItemTitle "", title = question.

Every market carries `active` and `negRiskOther` (true only on an augmented event's
"Other"); every event carries `negRiskAugmented`. Lifecycle changes made by the repair
step (rarely, an existing market's quote widens) are emitted by the next `step()` call.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import random
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from polyalphascan.records import CoverKind, Leg, Side, cover_id
from standins import universe_names as N
from standins.protocols import BookSnapshot, LevelChange, PriceChange
from standins.universe_templates import EventSpec, MarketSpec, SpecGen

DEFAULT_NOW = datetime(2026, 11, 24, tzinfo=timezone.utc)
DEPTH = 4  # levels per side in book snapshots
MAX_SPREAD = 6  # ticks; the walk never widens beyond this
P = tuple(round(t / 100, 2) for t in range(101))  # tick -> price
Q = tuple(round(1 - t / 100, 2) for t in range(101))  # tick -> complementary price
KIND_WEIGHTS = (("timeframe", 0.2), ("threshold", 0.16), ("candidate", 0.13), ("augmented", 0.08), ("count", 0.05),
                ("range", 0.04), ("multi", 0.07), ("single", 0.27))
FIXED_KINDS = ("count", "range")  # bucket events: exhaustive as listed, `add_market` refuses them
FAMILY_SHAPES = ("single", "candidate", "dated")
INJECT_CYCLE = ("timeframe", "threshold", "llm", "all_no", "all_yes")
TAGS = {
    "politics": ("2", "Politics"), "elections": ("144", "Elections"), "geopolitics": ("100265", "Geopolitics"),
    "ukraine": ("100213", "Ukraine"), "crypto": ("21", "Crypto"), "finance": ("120", "Finance"),
    "business": ("107", "Business"), "tech": ("1401", "Tech"), "economy": ("100328", "Economy"),
    "sports": ("1", "Sports"), "culture": ("596", "Culture"),
}


@dataclass(frozen=True, slots=True)
class ExpectedCover:
    kind: CoverKind
    legs: tuple[Leg, ...]
    guaranteed: bool
    payout: float
    cost: float  # sum of leg asks at the current books (NO ask = 1 - YES bid)
    id: str = ""
    leg_asks: tuple[float, ...] = ()

    @property
    def profit(self) -> float:
        return round(self.payout - self.cost, 4)


@dataclass
class GroundTruth:
    """What the scanner must find, at the current books.

    covers: every cover the brief defines over open markets, keyed by `records.cover_id`.
    profitable: ids with cost < payout now. Only injected mispricings (and what `set_quote`
      forced) are ever profitable; `step()` never changes this set.
    implications: true cross-event relations between open events.
    injected: ids of covers descending from the injected mispricings (an ALL_YES/ALL_NO
      stays "injected" when its event gains or loses a market); at build == profitable.
    """

    covers: dict[str, ExpectedCover]
    profitable: set[str]
    implications: set[tuple[str, str]]  # (premise_event_id, conclusion_event_id)
    injected: set[str] = field(default_factory=set)

    def count(self, kind: CoverKind) -> int:
        return sum(1 for c in self.covers.values() if c.kind is kind)


class _Mkt:
    __slots__ = ("idx", "id", "ev", "question", "slug", "label", "order", "value", "direction", "end", "placeholder",
                 "active", "other", "cond",
                 "yes", "no", "legacy", "version", "created", "updated", "closed", "winning", "liquidity", "volume",
                 "description", "closed_time")


class _Evt:
    __slots__ = ("idx", "id", "title", "slug", "description", "kind", "neg_risk", "augmented", "nr_id", "direction",
                 "tags", "created", "updated", "closed", "markets", "grow", "comments")


@dataclass(slots=True)
class _Rel:
    premise: int
    conclusion: int
    shape: str
    explanation: str
    counterexample: str


def _fast_level_change():  # type: ignore[no-untyped-def]
    """Constructor for the frozen, slotted `LevelChange` that writes its slots directly: the
    generated frozen __init__ costs ~1.5 µs per object, this about half, and the walk builds
    four per move. Same object, same equality and hash."""
    new = LevelChange.__new__
    sa, sp, ss = LevelChange.asset_id.__set__, LevelChange.price.__set__, LevelChange.size.__set__  # type: ignore[attr-defined]
    sd, sb, sk = LevelChange.side.__set__, LevelChange.best_bid.__set__, LevelChange.best_ask.__set__  # type: ignore[attr-defined]

    def make(asset_id: str, price: float, size: float, side: str, best_bid: float, best_ask: float) -> LevelChange:
        obj = new(LevelChange)
        sa(obj, asset_id)
        sp(obj, price)
        ss(obj, size)
        sd(obj, side)
        sb(obj, best_bid)
        sk(obj, best_ask)
        return obj

    return make


_LC = _fast_level_change()


def _locked(fn):  # type: ignore[no-untyped-def]
    """Public methods run under the universe's lock: servers and the activity driver call
    from different threads."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            return fn(self, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _no_gc():  # type: ignore[no-untyped-def]
    """Bulk allocation (tens of thousands of small lists) would trigger full garbage
    collections that walk the whole universe; nothing here creates cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _iso_day(d: date) -> str:
    return f"{d.isoformat()}T12:00:00Z"


class Universe:
    """See the module docstring. Thread-safe: every public method holds `self.lock` (an
    RLock), so the Gamma/CLOB/LLM stand-ins and a lifecycle driver may share one instance."""

    def __init__(self, seed: int = 7, n_events: int = 300, *, mispriced_fraction: float = 0.05,
                 llm_relations: int | None = None, now: datetime | None = None, error_rate: float = 0.0) -> None:
        if n_events < 1:
            raise ValueError("n_events must be >= 1")
        self.lock = threading.RLock()
        self.seed = seed
        self.now = now or DEFAULT_NOW
        self.error_rate = error_rate
        self.version = 1
        self._rng = random.Random(seed)
        self._wrng = random.Random(seed * 1_000_003 + 17)
        self._orng = random.Random(seed * 7_919 + 5)
        self._gen = SpecGen(self._rng, self.now.date())
        self._clock = 0  # seconds after `now`: the universe's logical clock for lifecycle stamps
        self._next_event_id = 100_001
        self._next_market_id = 1_000_001
        # markets (parallel arrays for the hot path)
        self._mk: list[_Mkt] = []
        self.bid: list[int] = []
        self.ask: list[int] = []
        self._fair2: list[float] = []
        self._salt: list[int] = []
        self._frozen: list[bool] = []
        self._pinned: set[int] = set()
        self._size_ovr: dict[tuple[int, int, int], float] = {}
        self._tok: dict[str, tuple[int, bool]] = {}
        self._by_market_id: dict[str, int] = {}
        # events and relations
        self._ev: list[_Evt] = []
        self._by_event_id: dict[str, int] = {}
        self._by_title: dict[str, int] = {}
        self._slugs: set[str] = set()
        self._rels: list[_Rel] = []
        self._rel_in: dict[int, list[int]] = {}
        self._rel_out: dict[int, list[int]] = {}
        # derived structure
        self._struct_dirty = True
        self._covers: list[tuple[CoverKind, tuple[int, ...], tuple[bool, ...], int]] = []
        self._cover_meta: list[tuple[str, tuple[Leg, ...]]] | None = None
        self._pc_cache: dict[int, PriceChange] = {}
        self._ejson: list[dict[str, Any] | None] = []
        self._elist: list[dict[str, Any]] | None = None
        self._injected_keys: set[tuple[CoverKind, Any]] = set()
        self._pending: list[PriceChange] = []  # repair moves of existing markets, emitted by step()

        n_fam = llm_relations if llm_relations is not None else (max(1, round(n_events * 0.04)) if n_events >= 4 else 0)
        n_fam = max(0, min(n_fam, n_events // 2))
        plan: list[str] = [f"fam:{FAMILY_SHAPES[i % 3]}" for i in range(n_fam)]
        kinds, weights = zip(*KIND_WEIGHTS)
        plan += self._rng.choices(kinds, weights, k=n_events - 2 * n_fam)
        self._rng.shuffle(plan)
        with _no_gc():
            self._generate(plan, n_events, mispriced_fraction)

    def _generate(self, plan: list[str], n_events: int, mispriced_fraction: float) -> None:
        spacing = timedelta(minutes=min(37.0, 400 * 24 * 60 / max(1, n_events)))
        created = self.now - spacing * (n_events + 1)
        for item in plan:
            if item.startswith("fam:"):
                fam = self._gen.family(item[4:])
                p = self._add_event(fam.premise, created)
                created += spacing
                c = self._add_event(fam.conclusion, created)
                self._add_relation(p, c, fam.shape, fam.explanation, fam.counterexample)
            else:
                self._add_event(self._gen.event(item), created)
            created += spacing
        self._rebuild_struct()
        self._repair()
        n_inject = max(1, round(mispriced_fraction * n_events)) if mispriced_fraction > 0 else 0
        self._inject(n_inject)
        self._refresh_frozen()

    # ================================================================== construction
    def _stamp(self) -> str:
        self._clock += 61
        return _iso(self.now + timedelta(seconds=self._clock))

    def _token(self, bits: int = 250) -> str:
        while True:
            t = str(self._rng.getrandbits(bits))
            if len(t) > 60 and t not in self._tok:
                return t

    def _unique_slug(self, slug: str, ident: str) -> str:
        if slug in self._slugs:
            slug = f"{slug}-{ident}"
        self._slugs.add(slug)
        return slug

    def _hex(self) -> str:
        return "0x" + f"{self._rng.getrandbits(256):064x}"

    def _add_event(self, spec: EventSpec, created_at: datetime | None = None) -> int:
        e = _Evt()
        e.idx = len(self._ev)
        e.id = str(self._next_event_id)
        self._next_event_id += 1
        e.title = spec.title
        e.slug = self._unique_slug(N.slugify(spec.title)[:100], e.id)
        e.description = spec.description
        e.kind = spec.kind
        e.neg_risk = spec.neg_risk
        e.augmented = spec.augmented
        e.nr_id = self._hex() if spec.neg_risk else None
        e.direction = spec.direction
        e.tags = spec.tags
        e.created = _iso(created_at) if created_at else self._stamp()
        e.updated = e.created
        e.closed = False
        e.markets = []
        e.grow = spec.grow
        e.comments = self._rng.randint(0, 400)
        self._ev.append(e)
        self._ejson.append(None)
        self._by_event_id[e.id] = e.idx
        self._by_title[e.title] = e.idx
        self._gen.titles.add(e.title.lower())
        for ms in spec.markets:
            self._add_market_spec(e, ms)
        return e.idx

    def _add_market_spec(self, e: _Evt, ms: MarketSpec) -> int:
        r = self._rng
        m = _Mkt()
        m.idx = len(self._mk)
        m.id = str(self._next_market_id)
        self._next_market_id += 1
        m.ev = e.idx
        m.question = ms.question
        m.slug = self._unique_slug(N.slugify(ms.question)[:120], m.id)
        m.label = ms.label
        m.order = len(e.markets)
        m.value = ms.value
        m.direction = ms.direction or e.direction
        m.end = ms.end
        m.placeholder = ms.placeholder
        m.active = ms.active
        m.other = ms.other
        m.cond = self._hex()
        m.yes, m.no = self._token(), self._token()
        m.version = "v2" if r.random() < 0.1 else "v1"
        m.legacy = (self._token(), self._token()) if m.version == "v2" else None
        m.created = e.created
        m.updated = m.created
        m.closed = False
        m.winning = None
        m.closed_time = None
        m.liquidity = round(r.uniform(500, 250_000), 4)
        m.volume = round(m.liquidity * r.uniform(1.5, 40), 4)
        m.description = ms.description
        e.markets.append(m.idx)
        self._mk.append(m)
        self._by_market_id[m.id] = m.idx
        self._tok[m.yes] = (m.idx, True)
        self._tok[m.no] = (m.idx, False)
        b, a = self._quote_from_fair(ms.fair, ms.placeholder)
        self.bid.append(b)
        self.ask.append(a)
        self._fair2.append(ms.fair * 200.0)
        self._salt.append(r.getrandbits(32))
        self._frozen.append(False)
        self._struct_dirty = True
        return m.idx

    def _quote_from_fair(self, fair: float, placeholder: bool) -> tuple[int, int]:
        if placeholder:
            return 1, 2
        mid = min(99, max(1, round(fair * 100)))
        s = self._rng.choice((1, 2, 2, 3, 3, 4))
        b = mid - s // 2
        b = min(max(1, b), 98)
        a = min(99, b + s)
        return b, a

    def _add_relation(self, p: int, c: int, shape: str, explanation: str, counterexample: str) -> None:
        idx = len(self._rels)
        self._rels.append(_Rel(p, c, shape, explanation, counterexample))
        self._rel_out.setdefault(p, []).append(idx)
        self._rel_in.setdefault(c, []).append(idx)
        self._struct_dirty = True

    # ================================================================== covers (structure)
    def _open(self, e: _Evt) -> list[int]:
        mk = self._mk
        return [i for i in e.markets if not mk[i].closed]

    def _named(self, e: _Evt) -> list[int]:
        """The open (active, not closed), named markets: an ALL_NO basket."""
        mk = self._mk
        return [i for i in e.markets if not mk[i].closed and mk[i].active and not mk[i].placeholder]

    def _exhaustive(self, e: _Evt) -> bool:
        """A neg-risk event whose listed outcomes are all there can be: not augmented, no
        unnamed outcome at all (open, inactive or closed), nothing inactive yet open, and no
        closed market resolved Yes."""
        if not e.neg_risk or e.augmented:
            return False
        for i in e.markets:
            m = self._mk[i]
            if m.placeholder or (not m.active and not m.closed) or (m.closed and m.winning == "YES"):
                return False
        return True

    def _exclusive_covers(self, e: _Evt) -> list[tuple[CoverKind, tuple[int, ...], tuple[bool, ...], int]]:
        """ALL_NO over the open named markets of a neg-risk event; ALL_YES over the same
        basket (then every open market) when the event is exhaustive."""
        named = tuple(self._named(e))
        if len(named) < 2:
            return []
        out = [(CoverKind.ALL_NO, named, (False,) * len(named), len(named) - 1)]
        if self._exhaustive(e):
            out.append((CoverKind.ALL_YES, named, (True,) * len(named), 1))
        return out

    def _rebuild_struct(self) -> None:
        """Every cover the brief defines over open markets, plus the walk's constraint index."""
        with _no_gc():
            self._rebuild_struct_inner()

    def _rebuild_struct_inner(self) -> None:
        mk = self._mk
        covers: list[tuple[CoverKind, tuple[int, ...], tuple[bool, ...], int]] = []
        for e in self._ev:
            if e.closed:
                continue
            if e.neg_risk:  # exclusive outcomes, numeric labels included: never a ladder
                covers += self._exclusive_covers(e)
            elif e.kind == "timeframe":
                ms = sorted(self._open(e), key=lambda i: mk[i].end)
                for i in range(len(ms)):
                    for j in range(i + 1, len(ms)):
                        covers.append((CoverKind.TIMEFRAME, (ms[j], ms[i]), (True, False), 1))
            elif e.kind == "threshold":
                for direction in ("above", "below"):  # a mixed event holds one ladder per direction
                    ms = sorted((i for i in self._open(e) if mk[i].direction == direction), key=lambda i: mk[i].value)
                    for i in range(len(ms)):
                        for j in range(i + 1, len(ms)):
                            legs = (ms[i], ms[j]) if direction == "above" else (ms[j], ms[i])
                            covers.append((CoverKind.THRESHOLD, legs, (True, False), 1))
        for rel in self._rels:
            pe, ce = self._ev[rel.premise], self._ev[rel.conclusion]
            if pe.closed or ce.closed:
                continue
            if rel.shape == "candidate":
                by_label = {mk[c].label: c for c in self._named(ce)}
                pairs = [(p, by_label[mk[p].label]) for p in self._named(pe) if mk[p].label in by_label]
            elif rel.shape == "dated":
                pairs = [(p, c) for p in self._open(pe) for c in self._open(ce) if mk[c].end >= mk[p].end]
            else:
                pairs = [(p, c) for p in self._open(pe) for c in self._open(ce)]
            for p, c in pairs:
                covers.append((CoverKind.LLM, (c, p), (True, False), 1))
        self._covers = covers
        self._cover_meta = None
        n = len(mk)
        self._prem_of: list[list[int]] = [[] for _ in range(n)]
        self._conc_of: list[list[int]] = [[] for _ in range(n)]
        self._no_g = [-1] * n
        self._yes_g = [-1] * n
        self._sum_bid = [0] * len(self._ev)
        self._sum_ask = [0] * len(self._ev)
        self._covers_of: list[list[int]] = [[] for _ in range(n)]
        self._no_members: dict[int, tuple[int, ...]] = {}
        self._yes_members: dict[int, tuple[int, ...]] = {}
        for ci, (kind, ms, _sides, _pay) in enumerate(covers):
            for m in ms:
                self._covers_of[m].append(ci)
            if kind is CoverKind.ALL_NO:
                g = mk[ms[0]].ev
                for m in ms:
                    self._no_g[m] = g
                self._no_members[g] = ms
                self._sum_bid[g] = sum(self.bid[m] for m in ms)
            elif kind is CoverKind.ALL_YES:
                g = mk[ms[0]].ev
                for m in ms:
                    self._yes_g[m] = g
                self._yes_members[g] = ms
                self._sum_ask[g] = sum(self.ask[m] for m in ms)
            else:
                c, p = ms
                self._prem_of[p].append(c)
                self._conc_of[c].append(p)
        self._struct_dirty = False

    def _ensure(self) -> None:
        if self._struct_dirty:
            self._rebuild_struct()
            self._refresh_frozen()

    def _margin(self, cover: tuple[CoverKind, tuple[int, ...], tuple[bool, ...], int]) -> int:
        kind, ms, sides, pay = cover
        cost = 0
        for m, yes in zip(ms, sides):
            cost += self.ask[m] if yes else 100 - self.bid[m]
        return cost - 100 * pay

    def _refresh_frozen(self) -> None:
        frozen = [False] * len(self._mk)
        for m in self._pinned:
            frozen[m] = True
        for cv in self._covers:
            if self._margin(cv) < 1:
                for m in cv[1]:
                    frozen[m] = True
        self._frozen = frozen
        mk = self._mk
        self._movable = [m for m in range(len(mk)) if not frozen[m] and not mk[m].closed and mk[m].active]

    # ================================================================== quote repair / injection
    def _repair(self, fresh: set[int] | None = None, scope: set[int] | None = None) -> None:
        """Widen quotes of non-frozen markets until every cover has margin >= 1 tick.

        With `fresh` (new markets), those absorb the fix first; an existing market whose
        quote still has to change gets a pending price_change that the next `step()` emits."""
        bid, ask, frozen = self.bid, self.ask, self._frozen
        before: dict[int, tuple[int, int]] = {}
        passes = (True, False) if fresh else (False,)
        covers = self._covers if scope is None else [self._covers[i] for i in self._covers_touching(scope)]
        bid_held, ask_held = self._injected_sides()
        held = bid_held | ask_held
        for restrict in passes:
            # a frozen market held only by injected covers on one side may still move the other
            # side (an injected ALL_NO fixes bids; its markets' asks can still repair an ALL_YES)
            def bid_locked(m: int) -> bool:
                return (frozen[m] and (m in bid_held or m not in held)) or (restrict and m not in fresh)  # type: ignore[operator]

            def ask_locked(m: int) -> bool:
                return (frozen[m] and (m in ask_held or m not in held)) or (restrict and m not in fresh)  # type: ignore[operator]

            for _ in range(100):
                changed = False
                for kind, ms, _s, _p in covers:
                    if kind is CoverKind.ALL_NO:
                        while sum(bid[m] for m in ms) > 99:
                            cands = [m for m in ms if not bid_locked(m) and bid[m] > 1]
                            if not cands:
                                break
                            m = max(cands, key=lambda i: bid[i])
                            before.setdefault(m, (bid[m], ask[m]))
                            bid[m] -= 1
                            changed = True
                    elif kind is CoverKind.ALL_YES:
                        while sum(ask[m] for m in ms) < 101:
                            cands = [m for m in ms if not ask_locked(m) and ask[m] < 99]
                            if not cands:
                                break
                            m = min(cands, key=lambda i: ask[i] - bid[i])
                            before.setdefault(m, (bid[m], ask[m]))
                            ask[m] += 1
                            changed = True
                    else:
                        c, p = ms
                        deficit = bid[p] + 1 - ask[c]
                        if deficit <= 0:
                            continue
                        before.setdefault(p, (bid[p], ask[p]))
                        before.setdefault(c, (bid[c], ask[c]))
                        orig = (bid[p], ask[c])
                        if not bid_locked(p):
                            step = min((deficit + 1) // 2, bid[p] - 1)
                            bid[p] -= step
                            deficit -= step
                        if deficit > 0 and not ask_locked(c):
                            step = min(deficit, 99 - ask[c])
                            ask[c] += step
                            deficit -= step
                        if deficit > 0 and not bid_locked(p):
                            step = min(deficit, bid[p] - 1)
                            bid[p] -= step
                            deficit -= step
                        if (bid[p], ask[c]) != orig:
                            changed = True
                if not changed:
                    break
        self._rebuild_sums()
        if fresh is not None:
            for m, (b, a) in before.items():
                if m not in fresh and (bid[m], ask[m]) != (b, a) and not self._mk[m].closed:
                    self._pending.append(self._jump_change(m, b, a, bid[m], ask[m]))

    def _injected_sides(self) -> tuple[set[int], set[int]]:
        """Markets whose bid / ask an injected mispricing depends on (a NO leg pays 1 − bid,
        a YES leg pays the ask)."""
        bids: set[int] = set()
        asks: set[int] = set()
        for kind, ms, sides, _p in self._covers:
            if self._inject_key(kind, ms) in self._injected_keys:
                for m, yes in zip(ms, sides):
                    (asks if yes else bids).add(m)
        return bids, asks

    def _rebuild_sums(self, markets: Any = None) -> None:
        """Recompute group sums (of the groups holding `markets`, or all)."""
        groups_no = self._no_members if markets is None else {
            self._no_g[m]: self._no_members[self._no_g[m]] for m in markets if self._no_g[m] >= 0}
        groups_yes = self._yes_members if markets is None else {
            self._yes_g[m]: self._yes_members[self._yes_g[m]] for m in markets if self._yes_g[m] >= 0}
        for g, ms in groups_no.items():
            self._sum_bid[g] = sum(self.bid[m] for m in ms)
        for g, ms in groups_yes.items():
            self._sum_ask[g] = sum(self.ask[m] for m in ms)

    def _covers_touching(self, markets: set[int]) -> list[int]:
        return sorted({ci for m in markets for ci in self._covers_of[m]})

    def _inject(self, n: int) -> None:
        """Make `n` covers profitable (margin -1..-3 ticks) without touching any other cover's
        margin >= 1; their markets are then frozen."""
        if n <= 0:
            return
        mk = self._mk
        cands: dict[str, list[int]] = {k: [] for k in INJECT_CYCLE}
        for i, (kind, ms, _s, _p) in enumerate(self._covers):
            if kind is CoverKind.TIMEFRAME or kind is CoverKind.THRESHOLD:
                # adjacent rungs only: far rungs rarely mis-price alone
                e = self._ev[mk[ms[0]].ev]
                key = (lambda j: mk[j].end) if kind is CoverKind.TIMEFRAME else (lambda j: mk[j].value)
                ladder = sorted((j for j in self._open(e) if mk[j].direction == mk[ms[0]].direction), key=key)
                if abs(ladder.index(ms[0]) - ladder.index(ms[1])) == 1:
                    cands[kind.value].append(i)
            else:
                cands[kind.value].append(i)
        for lst in cands.values():
            self._rng.shuffle(lst)
        used: set[int] = set()
        done = 0
        kind_i = 0
        stalls = 0
        while done < n and stalls < len(INJECT_CYCLE):
            kind = INJECT_CYCLE[kind_i % len(INJECT_CYCLE)]
            kind_i += 1
            ok = False
            tries = 0
            while cands[kind] and tries < 40 and not ok:
                tries += 1
                ci = cands[kind].pop()
                cv = self._covers[ci]
                if any(m in used for m in cv[1]):
                    continue
                ok = self._try_inject(ci)
                if ok:
                    used.update(cv[1])
                    self._injected_keys.add(self._inject_key(cv[0], cv[1]))
                    done += 1
            stalls = 0 if ok else stalls + 1
        # freeze what was injected before anything else moves
        self._refresh_frozen()

    def _inject_key(self, kind: CoverKind, ms: tuple[int, ...]) -> tuple[CoverKind, Any]:
        """A pair is its two markets; an ALL_YES/ALL_NO is its event (it keeps being the
        injected mispricing when the event gains or loses a market)."""
        if kind is CoverKind.ALL_NO or kind is CoverKind.ALL_YES:
            return (kind, self._mk[ms[0]].ev)
        return (kind, ms)

    def _try_inject(self, ci: int) -> bool:
        kind, ms, _s, _p = self._covers[ci]
        r = self._rng
        before = {m: (self.bid[m], self.ask[m]) for m in ms}
        d = r.randint(1, 3)
        if kind is CoverKind.ALL_YES or kind is CoverKind.ALL_NO:
            fair = [max(0.01, self._fair2[m] / 200) for m in ms]
            total = 100 - d if kind is CoverKind.ALL_YES else 100 + d
            lo = 2 if kind is CoverKind.ALL_YES else 1
            alloc = [max(lo, round(f / sum(fair) * total)) for f in fair]
            for _ in range(1000):
                s = sum(alloc)
                if s == total:
                    break
                if s > total:
                    j = max(range(len(alloc)), key=lambda k: alloc[k])
                    if alloc[j] <= lo:
                        return False
                    alloc[j] -= 1
                else:
                    j = max(range(len(alloc)), key=lambda k: fair[k])
                    alloc[j] += 1
            if sum(alloc) != total or max(alloc) > 98:
                return False
            for m, v in zip(ms, alloc):
                if kind is CoverKind.ALL_YES:
                    self.ask[m], self.bid[m] = v, v - 1
                else:
                    self.bid[m], self.ask[m] = v, v + 1
        else:  # pair
            c, p = ms
            s1, s2 = r.choice((1, 2)), r.choice((1, 2))
            x = round((self.bid[p] + self.ask[p] + self.bid[c] + self.ask[c]) / 4)
            x = min(max(x, d + s2 + 1), 99 - s1)
            self.bid[p], self.ask[p] = x, x + s1
            self.ask[c], self.bid[c] = x - d, x - d - s2
        self._rebuild_sums(ms)
        touched = set(ms)
        good = True
        for i in self._covers_touching(touched):
            margin = self._margin(self._covers[i])
            if (i == ci and margin >= 0) or (i != ci and margin < 1):
                good = False
                break
        if not good:
            for m, (b, a) in before.items():
                self.bid[m], self.ask[m] = b, a
            self._rebuild_sums(ms)
        return good

    # ================================================================== GammaStore
    @_locked
    def gamma_events(self) -> list[dict[str, Any]]:
        """Every event (open and closed) in Gamma's JSON shape. Cached; the list is a fresh
        shallow copy, the event dicts are shared (do not mutate them)."""
        if self._elist is None:
            out = []
            with _no_gc():
                for e in self._ev:
                    js = self._ejson[e.idx]
                    if js is None:
                        js = self._ejson[e.idx] = self._event_json(e)
                    out.append(js)
            self._elist = out
        return list(self._elist)

    @_locked
    def gamma_tags(self) -> list[dict[str, Any]]:
        return [{"id": tid, "label": label, "slug": slug, "forceShow": False, "forceHide": False,
                 "isCarousel": False, "publishedAt": "2023-01-01T00:00:00Z", "createdAt": "2023-01-01T00:00:00Z",
                 "updatedAt": "2023-01-01T00:00:00Z"} for slug, (tid, label) in TAGS.items()]

    def _touch(self, e: _Evt) -> None:
        e.updated = self._stamp()
        self._ejson[e.idx] = None
        self._elist = None
        self.version += 1

    def _market_json(self, e: _Evt, m: _Mkt) -> dict[str, Any]:
        b, a = self.bid[m.idx], self.ask[m.idx]
        if not m.active and not m.closed:
            return self._inactive_market_json(e, m)
        quoted = not m.closed
        if m.closed:
            prices = ["1", "0"] if m.winning == "YES" else ["0", "1"]
        else:
            mid = (b + a) / 200
            prices = [f"{mid:.3f}".rstrip("0").rstrip("."), f"{1 - mid:.3f}".rstrip("0").rstrip(".")]
        ids = [m.yes, m.no]
        js: dict[str, Any] = {
            "id": m.id, "question": m.question, "conditionId": m.cond, "questionID": "0x" + m.cond[2:][::-1],
            "slug": m.slug, "resolutionSource": "", "endDate": _iso_day(m.end), "startDate": m.created,
            "createdAt": m.created, "updatedAt": m.updated, "description": m.description,
            "groupItemTitle": m.label, "groupItemThreshold": str(m.order),
            "outcomes": json.dumps(["Yes", "No"]), "outcomePrices": json.dumps(prices),
            "clobTokenIds": json.dumps(list(m.legacy) if m.legacy else ids), "version": m.version,
            "liquidity": f"{m.liquidity:.4f}", "volume": f"{m.volume:.4f}", "liquidityNum": m.liquidity,
            "volumeNum": m.volume, "volume24hr": round(m.volume / 90, 4), "liquidityClob": m.liquidity,
            "active": m.active, "closed": m.closed, "archived": False, "new": False, "featured": False,
            "restricted": True, "negRisk": e.neg_risk, "negRiskOther": m.other, "enableOrderBook": True,
            "acceptingOrders": quoted,
            "bestBid": P[b] if quoted else None, "bestAsk": P[a] if quoted else None,
            "spread": round((a - b) / 100, 2) if quoted else None,
            "lastTradePrice": float(prices[0]), "orderPriceMinTickSize": 0.01, "orderMinSize": 5,
            "feesEnabled": False, "feeType": None, "feeSchedule": None,  # as real fee-free records have them
            "umaResolutionStatuses": json.dumps(["resolved"] if m.closed else []),
        }
        if m.version == "v2":
            js["positionIds"] = ids
        if e.neg_risk:
            js["negRiskMarketID"] = e.nr_id
            js["negRiskRequestID"] = "0x" + m.cond[-64:]
        if m.closed:
            js["closedTime"] = m.closed_time
        return js

    def _inactive_market_json(self, e: _Evt, m: _Mkt) -> dict[str, Any]:
        """An unnamed outcome (or the "Other") of an augmented event, as the venue lists it:
        inactive yet `acceptingOrders`, no `outcomePrices`, an empty 0/1 top of book."""
        ids = [m.yes, m.no]
        js: dict[str, Any] = {
            "id": m.id, "question": m.question, "conditionId": m.cond, "questionID": "0x" + m.cond[2:][::-1],
            "slug": m.slug, "resolutionSource": "", "endDate": _iso_day(m.end), "startDate": m.created,
            "createdAt": m.created, "updatedAt": m.updated, "description": m.description,
            "groupItemTitle": m.label, "groupItemThreshold": str(m.order), "outcomes": json.dumps(["Yes", "No"]),
            "clobTokenIds": json.dumps(list(m.legacy) if m.legacy else ids), "version": m.version,
            "liquidity": "0", "volume": "0", "liquidityNum": 0.0, "volumeNum": 0.0, "volume24hr": 0.0,
            "liquidityClob": 0.0, "active": False, "closed": False, "archived": False, "new": False, "featured": False,
            "restricted": True, "negRisk": e.neg_risk, "negRiskOther": m.other, "negRiskMarketID": e.nr_id,
            "negRiskRequestID": "0x" + m.cond[-64:], "enableOrderBook": True, "acceptingOrders": True,
            "bestBid": 0, "bestAsk": 1, "spread": 1, "lastTradePrice": 0, "orderPriceMinTickSize": 0.01,
            "orderMinSize": 5, "umaResolutionStatuses": json.dumps([]),
        }
        if m.version == "v2":
            js["positionIds"] = ids
        return js

    def _event_json(self, e: _Evt) -> dict[str, Any]:
        mk = self._mk
        markets = [self._market_json(e, mk[i]) for i in e.markets]
        liq = round(sum(mk[i].liquidity for i in e.markets if not mk[i].closed), 4)
        vol = round(sum(mk[i].volume for i in e.markets), 4)
        end = max(mk[i].end for i in e.markets)
        return {
            "id": e.id, "ticker": e.slug, "slug": e.slug, "title": e.title, "description": e.description,
            "resolutionSource": "", "startDate": e.created, "creationDate": e.created, "endDate": _iso_day(end),
            "createdAt": e.created, "updatedAt": e.updated, "active": True, "closed": e.closed, "archived": False,
            "new": False, "featured": False, "restricted": True, "negRisk": e.neg_risk,
            "negRiskMarketID": e.nr_id, "enableNegRisk": e.neg_risk, "negRiskAugmented": e.augmented,
            "liquidity": liq, "volume": vol, "openInterest": round(liq * 0.6, 4), "volume24hr": round(vol / 90, 4),
            "liquidityClob": liq, "competitive": 0.9, "enableOrderBook": True, "commentCount": e.comments,
            "tags": [{"id": TAGS[t][0], "label": TAGS[t][1], "slug": t} for t in e.tags],
            "markets": markets,
        }

    # ================================================================== MarketFeed
    @_locked
    def token_ids(self) -> list[str]:
        out: list[str] = []
        for m in self._mk:
            if m.active and not m.closed:
                out.append(m.yes)
                out.append(m.no)
        return out

    def _size(self, m: int, side: int, t: int) -> float:
        ovr = self._size_ovr.get((m, side, t))
        if ovr is not None:
            return ovr
        h = ((self._salt[m] ^ (t * 0x9E3779B1) ^ (side * 0x85EBCA77)) * 0x2545F491) & 0xFFFFFFFF
        return float(20 + h % 1500) + ((h >> 16) % 100) / 100

    @_locked
    def book(self, token_id: str) -> BookSnapshot | None:
        hit = self._tok.get(token_id)
        if hit is None:
            return None
        m, is_yes = hit
        mkt = self._mk[m]
        if mkt.closed:
            return None
        if not mkt.active:  # listed with an order book, but nobody quotes an unnamed outcome
            return BookSnapshot(token_id, mkt.cond, (), ())
        b, a = self.bid[m], self.ask[m]
        bid_ticks = range(b, max(0, b - DEPTH), -1)
        ask_ticks = range(a, min(100, a + DEPTH))
        if is_yes:
            return BookSnapshot(token_id, mkt.cond, tuple((P[t], self._size(m, 0, t)) for t in bid_ticks),
                                tuple((P[t], self._size(m, 1, t)) for t in ask_ticks))
        return BookSnapshot(token_id, mkt.cond, tuple((Q[t], self._size(m, 1, t)) for t in ask_ticks),
                            tuple((Q[t], self._size(m, 0, t)) for t in bid_ticks))

    @_locked
    def top(self, market_id: str) -> tuple[float, float]:
        """YES (best bid, best ask) of a market."""
        m = self._by_market_id[market_id]
        return P[self.bid[m]], P[self.ask[m]]

    def _change(self, m: int, mt: int, b: int, a: int) -> PriceChange:
        """The message for move type `mt` (0 bid up, 1 bid down, 2 ask up, 3 ask down) from
        YES quote (b, a). Each token gets its top-level change plus the level entering or
        leaving the DEPTH-level window, so snapshot + deltas = next snapshot."""
        mkt = self._mk[m]
        y, n = mkt.yes, mkt.no
        sz = self._size
        ch: list[LevelChange] = []
        if mt == 0:
            nb = b + 1
            s = sz(m, 0, nb)
            ch.append(_LC(y, P[nb], s, "BUY", P[nb], P[a]))
            deep = nb - DEPTH
            if deep >= 1:
                ch.append(_LC(y, P[deep], 0.0, "BUY", P[nb], P[a]))
            ch.append(_LC(n, Q[nb], s, "SELL", Q[a], Q[nb]))
            if deep >= 1:
                ch.append(_LC(n, Q[deep], 0.0, "SELL", Q[a], Q[nb]))
        elif mt == 1:
            nb = b - 1
            deep = b - DEPTH
            ch.append(_LC(y, P[b], 0.0, "BUY", P[nb], P[a]))
            if deep >= 1:
                ch.append(_LC(y, P[deep], sz(m, 0, deep), "BUY", P[nb], P[a]))
            ch.append(_LC(n, Q[b], 0.0, "SELL", Q[a], Q[nb]))
            if deep >= 1:
                ch.append(_LC(n, Q[deep], sz(m, 0, deep), "SELL", Q[a], Q[nb]))
        elif mt == 2:
            na = a + 1
            deep = a + DEPTH
            ch.append(_LC(y, P[a], 0.0, "SELL", P[b], P[na]))
            if deep <= 99:
                ch.append(_LC(y, P[deep], sz(m, 1, deep), "SELL", P[b], P[na]))
            ch.append(_LC(n, Q[a], 0.0, "BUY", Q[na], Q[b]))
            if deep <= 99:
                ch.append(_LC(n, Q[deep], sz(m, 1, deep), "BUY", Q[na], Q[b]))
        else:
            na = a - 1
            deep = na + DEPTH
            s = sz(m, 1, na)
            ch.append(_LC(y, P[na], s, "SELL", P[b], P[na]))
            if deep <= 99:
                ch.append(_LC(y, P[deep], 0.0, "SELL", P[b], P[na]))
            ch.append(_LC(n, Q[na], s, "BUY", Q[na], Q[b]))
            if deep <= 99:
                ch.append(_LC(n, Q[deep], 0.0, "BUY", Q[na], Q[b]))
        return PriceChange(mkt.cond, tuple(ch))

    @_locked
    def step(self, n: int) -> list[PriceChange]:
        """`n` random-walk moves (fewer only if nothing can move). Each move shifts one side of
        one open, non-frozen market by one tick, biased towards the market's fair price, and
        is accepted only if every cover it belongs to keeps a margin >= 1 tick."""
        with _no_gc():
            return self._step(n)

    def _step(self, n: int) -> list[PriceChange]:
        self._ensure()
        out: list[PriceChange] = []
        if self._pending:
            out.extend(self._pending)
            self._pending.clear()
        movable = self._movable
        L = len(movable)
        if not L or n <= 0:
            return out
        rand = self._wrng.random
        bid, ask, fair2 = self.bid, self.ask, self._fair2
        prem_of, conc_of, no_g, yes_g = self._prem_of, self._conc_of, self._no_g, self._yes_g
        sum_bid, sum_ask = self._sum_bid, self._sum_ask
        cache = self._pc_cache
        if len(cache) > 400_000:
            cache.clear()
        append = out.append
        produced = 0
        budget = n * 30
        while produced < n and budget > 0:
            budget -= 1
            m = movable[int(rand() * L)]
            b = bid[m]
            a = ask[m]
            up = rand() < (0.65 if b + a < fair2[m] else 0.35)
            # wide spreads tend to close: bid up / ask down narrow, the others widen
            if rand() < (0.5 if a - b <= 2 else (0.8 if up else 0.2)):
                g = no_g[m]
                if up:
                    nb = b + 1
                    if nb >= a or (g >= 0 and sum_bid[g] >= 99):
                        continue
                    bad = False
                    for c in prem_of[m]:
                        if ask[c] <= nb:
                            bad = True
                            break
                    if bad:
                        continue
                    mt = 0
                    if g >= 0:
                        sum_bid[g] += 1
                else:
                    nb = b - 1
                    if nb < 1 or a - nb > MAX_SPREAD:
                        continue
                    mt = 1
                    if g >= 0:
                        sum_bid[g] -= 1
                bid[m] = nb
            else:
                g = yes_g[m]
                if up:
                    na = a + 1
                    if na > 99 or na - b > MAX_SPREAD:
                        continue
                    mt = 2
                    if g >= 0:
                        sum_ask[g] += 1
                else:
                    na = a - 1
                    if na <= b or (g >= 0 and sum_ask[g] <= 101):
                        continue
                    bad = False
                    for p in conc_of[m]:
                        if bid[p] >= na:
                            bad = True
                            break
                    if bad:
                        continue
                    mt = 3
                    if g >= 0:
                        sum_ask[g] -= 1
                ask[m] = na
            key = ((m * 4 + mt) * 100 + b) * 100 + a
            pc = cache.get(key)
            if pc is None:
                pc = cache[key] = self._change(m, mt, b, a)
            append(pc)
            produced += 1
        return out

    @_locked
    def set_quote(self, market_id: str, bid: float, ask: float, size: float = 100.0) -> PriceChange:
        """Force the YES top of book (and the mirrored NO book). The market is pinned: the
        walk never moves it again, nor any market sharing a cover that is now at margin < 1."""
        self._ensure()
        m = self._by_market_id[market_id]
        mkt = self._mk[m]
        if mkt.closed or not mkt.active:
            raise ValueError(f"market {market_id} is closed or inactive")
        nb, na = round(bid * 100), round(ask * 100)
        if not (1 <= nb < na <= 99):
            raise ValueError("need 0.01 <= bid < ask <= 0.99")
        self._size_ovr[(m, 0, nb)] = float(size)
        self._size_ovr[(m, 1, na)] = float(size)
        pc = self._jump_change(m, self.bid[m], self.ask[m], nb, na)
        self.bid[m], self.ask[m] = nb, na
        self._pinned.add(m)
        self._rebuild_sums((m,))
        self._refresh_frozen()
        return pc

    def _book_fill(self, m: int) -> PriceChange:
        """An empty book -> the DEPTH-level book `book()` shows now, in one message (tops first)."""
        mkt = self._mk[m]
        y, n = mkt.yes, mkt.no
        b, a = self.bid[m], self.ask[m]
        bb, ba, nbb, nba = P[b], P[a], Q[a], Q[b]
        bids = range(b, max(0, b - DEPTH), -1)
        asks = range(a, min(100, a + DEPTH))
        ch = [LevelChange(y, P[t], self._size(m, 0, t), "BUY", bb, ba) for t in bids]
        ch += [LevelChange(y, P[t], self._size(m, 1, t), "SELL", bb, ba) for t in asks]
        ch += [LevelChange(n, Q[t], self._size(m, 1, t), "BUY", nbb, nba) for t in asks]
        ch += [LevelChange(n, Q[t], self._size(m, 0, t), "SELL", nbb, nba) for t in bids]
        return PriceChange(mkt.cond, tuple(ch))

    def _jump_change(self, m: int, b: int, a: int, nb: int, na: int) -> PriceChange:
        """YES quote (b, a) -> (nb, na) in one message: levels inside the new spread are
        removed, the new tops carry their sizes; the NO token gets the mirror."""
        mkt = self._mk[m]
        y, n = mkt.yes, mkt.no
        bb, ba, nbb, nba = P[nb], P[na], Q[na], Q[nb]
        sb, sa = self._size(m, 0, nb), self._size(m, 1, na)
        removed_bids = range(nb + 1, b + 1) if nb < b else ()
        removed_asks = range(a, na) if na > a else ()
        ch: list[LevelChange] = []
        for t in removed_bids:
            ch.append(LevelChange(y, P[t], 0.0, "BUY", bb, ba))
        ch.append(LevelChange(y, P[nb], sb, "BUY", bb, ba))
        for t in removed_asks:
            ch.append(LevelChange(y, P[t], 0.0, "SELL", bb, ba))
        ch.append(LevelChange(y, P[na], sa, "SELL", bb, ba))
        for t in removed_bids:
            ch.append(LevelChange(n, Q[t], 0.0, "SELL", nbb, nba))
        ch.append(LevelChange(n, Q[nb], sb, "SELL", nbb, nba))
        for t in removed_asks:
            ch.append(LevelChange(n, Q[t], 0.0, "BUY", nbb, nba))
        ch.append(LevelChange(n, Q[na], sa, "BUY", nbb, nba))
        return PriceChange(mkt.cond, tuple(ch))

    # ================================================================== ImplicationOracle
    @_locked
    def implies(self, premise_title: str, conclusion_title: str) -> bool:
        """Ground truth: does the event titled `premise_title` imply the one titled
        `conclusion_title` (one of the universe's relations)?"""
        p, c = self._by_title.get(premise_title), self._by_title.get(conclusion_title)
        if p is None or c is None:
            return False
        return any(self._rels[ri].conclusion == c for ri in self._rel_out.get(p, ()))

    @_locked
    def answer_implications(self, target_title: str, candidate_titles: list[str],
                            error_rate: float | None = None) -> dict[str, Any]:
        rate = self.error_rate if error_rate is None else error_rate
        e = self._by_title.get(target_title)
        if e is None:
            low = target_title.strip().lower()
            e = next((i for t, i in self._by_title.items() if t.lower() == low), None)
        present = set(candidate_titles)
        implied_by: list[dict[str, str]] = []
        implies: list[dict[str, str]] = []
        if e is not None:
            for ri in self._rel_in.get(e, ()):
                rel = self._rels[ri]
                t = self._ev[rel.premise].title
                if t in present:
                    implied_by.append({"title": t, "explanation": rel.explanation,
                                       "counterexample_attempt": rel.counterexample})
            for ri in self._rel_out.get(e, ()):
                rel = self._rels[ri]
                t = self._ev[rel.conclusion].title
                if t in present:
                    implies.append({"title": t, "explanation": rel.explanation,
                                    "counterexample_attempt": rel.counterexample})
        if rate > 0 and self._orng.random() < rate:
            true = {d["title"] for d in implied_by + implies}
            if true and self._orng.random() < 0.5:
                lst = implied_by if implied_by else implies
                lst.pop(self._orng.randrange(len(lst)))
            else:
                wrong = [t for t in candidate_titles if t not in true and t != target_title]
                if wrong:
                    t = wrong[self._orng.randrange(len(wrong))]
                    item = {"title": t, "explanation": "These usually move together.",
                            "counterexample_attempt": "none found"}
                    (implied_by if self._orng.random() < 0.5 else implies).append(item)
        return {"implied_by": implied_by, "implies": implies}

    # ================================================================== lifecycle
    @_locked
    def add_events(self, n: int) -> list[str]:
        """`n` new events (ids above every existing one); relation families may appear too."""
        new: list[int] = []
        first_market = len(self._mk)
        kinds, weights = zip(*KIND_WEIGHTS)
        while len(new) < n:
            if n - len(new) >= 2 and self._rng.random() < 0.1:
                fam = self._gen.family(self._rng.choice(FAMILY_SHAPES))
                p = self._add_event(fam.premise)
                c = self._add_event(fam.conclusion)
                self._add_relation(p, c, fam.shape, fam.explanation, fam.counterexample)
                new += [p, c]
            else:
                new.append(self._add_event(self._gen.event(self._rng.choices(kinds, weights)[0])))
        self._after_structure_change(set(range(first_market, len(self._mk))), set())
        self._elist = None
        self.version += 1
        return [self._ev[i].id for i in new]

    @_locked
    def add_market(self, event_id: str) -> str:
        """A new market in a ladder (a later date / a further bar), a candidate or multi-winner
        event (a new outcome); in an augmented event an unnamed outcome is named (same market,
        now active), or an "Other" market or a further unnamed outcome is listed. Bucket and
        single-market events refuse (ValueError)."""
        e = self._ev[self._by_event_id[event_id]]
        if e.closed:
            raise ValueError(f"event {event_id} is closed")
        listed = len(e.markets)
        m = self._grow_augmented(e) if e.kind == "augmented" else self._add_market_spec(e, self._growth_spec(e))
        mk = self._mk
        e.updated = self._stamp()
        mk[m].updated = e.updated
        if len(e.markets) > listed:
            mk[m].created = e.updated
        self._after_structure_change({m}, set(e.markets))
        if len(e.markets) == listed:  # a named outcome: its empty book fills, streamed by the next step()
            self._pending.append(self._book_fill(m))
        self._touch(e)
        return mk[m].id

    def _growth_spec(self, e: _Evt) -> MarketSpec:
        mk = self._mk
        if e.kind == "timeframe":
            return self._gen.grow_timeframe(e.grow, max(mk[i].end for i in e.markets))
        if e.kind == "threshold":
            direction = e.direction or "above"
            if direction == "mixed":  # grow one of the sides it has
                direction = self._rng.choice(sorted({mk[i].direction for i in e.markets}))
            return self._gen.grow_threshold(e.grow, direction, [mk[i].value for i in e.markets
                                                                if mk[i].direction == direction])
        labels = {mk[i].label for i in e.markets}
        if e.kind == "candidate":
            spec = self._gen.grow_candidate(e.grow, e.grow.get("names", "person"))
            while spec.label in labels:
                spec = self._gen.grow_candidate(e.grow, e.grow.get("names", "person"))
            return spec
        if e.kind == "multi":
            return self._gen.grow_multi(e.grow, labels)
        if e.kind in FIXED_KINDS:
            raise ValueError(f"event {e.id} lists fixed buckets")
        raise ValueError(f"event {e.id} is a single-market event")

    def _grow_augmented(self, e: _Evt) -> int:
        """Name the first unnamed outcome (mostly), else list "Other", else one more unnamed
        outcome."""
        mk = self._mk
        unnamed = [i for i in e.markets if mk[i].placeholder and not mk[i].active and not mk[i].closed]
        has_other = any(mk[i].other for i in e.markets)
        labels = {mk[i].label for i in e.markets}
        if unnamed and (has_other or self._rng.random() < 0.75):
            return self._name_outcome(e, unnamed[0], labels)
        if not has_other:
            return self._add_market_spec(e, self._gen.other_outcome(e.grow))
        return self._add_market_spec(e, self._gen.unnamed_outcome(e.grow, labels))

    def _name_outcome(self, e: _Evt, m: int, labels: set[str]) -> int:
        """An unnamed outcome becomes a named, active market (same id and tokens) with a
        fresh quote; it has had no book so far."""
        name = self._gen.new_name(e.grow.get("names", "person"))
        while name in labels:
            name = self._gen.new_name(e.grow.get("names", "person"))
        spec = self._gen.named_outcome(e.grow, name)
        x = self._mk[m]
        x.label, x.question, x.description = spec.label, spec.question, spec.description
        x.placeholder, x.active = False, True
        self.bid[m], self.ask[m] = self._quote_from_fair(spec.fair, False)
        self._fair2[m] = spec.fair * 200.0
        self._struct_dirty = True
        return m

    @_locked
    def close_market(self, market_id: str, winning: str = "NO") -> dict[str, Any]:
        """Close and resolve a market (its covers disappear). In a candidate event the other
        outcomes' fair prices are renormalised."""
        m = self._by_market_id[market_id]
        mkt = self._mk[m]
        e = self._ev[mkt.ev]
        winning = winning.upper()
        if winning not in ("YES", "NO"):
            raise ValueError("winning must be YES or NO")
        if not mkt.closed:
            mkt.closed = True
            mkt.winning = winning
            mkt.updated = self._stamp()
            mkt.closed_time = (self.now + timedelta(seconds=self._clock)).strftime("%Y-%m-%d %H:%M:%S+00")
            if e.neg_risk and mkt.active and not mkt.placeholder:
                rest = self._named(e)
                left = sum(self._fair2[i] for i in rest)
                if left > 0 and winning == "NO":
                    scale = (left + self._fair2[m]) / left
                    for i in rest:
                        self._fair2[i] = min(194.0, self._fair2[i] * scale)
            if all(self._mk[i].closed for i in e.markets):
                e.closed = True
            self._after_structure_change(set(), set(e.markets))
            self._touch(e)
        return {"market": mkt.cond, "id": mkt.id, "assets_ids": [mkt.yes, mkt.no],
                "winning_asset_id": mkt.yes if mkt.winning == "YES" else mkt.no,
                "winning_outcome": "Yes" if mkt.winning == "YES" else "No"}

    @_locked
    def edit_title(self, event_id: str, title: str) -> None:
        e = self._ev[self._by_event_id[event_id]]
        if title == e.title:
            return
        if title.lower() in self._gen.titles:
            raise ValueError(f"title already used: {title!r}")
        self._by_title.pop(e.title, None)
        self._gen.titles.discard(e.title.lower())
        e.title = title
        self._by_title[title] = e.idx
        self._gen.titles.add(title.lower())
        self._touch(e)

    def _after_structure_change(self, fresh: set[int], scope: set[int]) -> None:
        """Only covers touching `scope` (new markets + the changed events' markets) can have
        lost their margin; repair those, then re-derive what is frozen."""
        self._rebuild_struct()
        self._refresh_frozen_keep()
        self._repair(fresh, scope | fresh)
        self._refresh_frozen()

    def _refresh_frozen_keep(self) -> None:
        """Before repairing after a change: freeze markets of covers that were already at
        margin < 1 (injected or forced), so repair leaves them alone; new covers (new
        markets) are repaired through their non-frozen markets."""
        frozen = [False] * len(self._mk)
        old = self._frozen
        for m in range(min(len(old), len(frozen))):
            frozen[m] = old[m]
        self._frozen = frozen

    # ================================================================== ground truth
    def _meta(self) -> list[tuple[str, tuple[Leg, ...]]]:
        if self._cover_meta is None:
            mk, ev = self._mk, self._ev
            legs_of: dict[tuple[int, bool], Leg] = {}

            def leg(m: int, yes: bool) -> Leg:
                key = (m, yes)
                lg = legs_of.get(key)
                if lg is None:
                    x = mk[m]
                    lg = legs_of[key] = Leg(x.id, Side.YES if yes else Side.NO, x.yes, x.no, x.question, ev[x.ev].id)
                return lg

            meta = []
            for kind, ms, sides, _pay in self._covers:
                legs = tuple(leg(m, s) for m, s in zip(ms, sides))
                meta.append((cover_id(kind, legs), legs))
            self._cover_meta = meta
        return self._cover_meta

    @_locked
    def ground_truth(self) -> GroundTruth:
        with _no_gc():
            return self._ground_truth()

    def _ground_truth(self) -> GroundTruth:
        self._ensure()
        covers: dict[str, ExpectedCover] = {}
        profitable: set[str] = set()
        injected: set[str] = set()
        bid, ask = self.bid, self.ask
        for (kind, ms, sides, pay), (cid, legs) in zip(self._covers, self._meta()):
            asks = tuple(ask[m] if s else 100 - bid[m] for m, s in zip(ms, sides))
            cost_ticks = sum(asks)
            covers[cid] = ExpectedCover(kind, legs, kind is not CoverKind.LLM, float(pay), round(cost_ticks / 100, 2),
                                        cid, tuple(P[t] for t in asks))
            if cost_ticks < 100 * pay:
                profitable.add(cid)
            if self._inject_key(kind, ms) in self._injected_keys:
                injected.add(cid)
        implications = {(self._ev[r.premise].id, self._ev[r.conclusion].id) for r in self._rels
                        if not self._ev[r.premise].closed and not self._ev[r.conclusion].closed}
        return GroundTruth(covers, profitable, implications, injected)

    # ================================================================== introspection helpers
    @_locked
    def event_kind(self, event_id: str) -> str:
        return self._ev[self._by_event_id[event_id]].kind

    @_locked
    def relations(self) -> list[tuple[str, str, str]]:
        """(premise_event_id, conclusion_event_id, shape) of every true relation."""
        return [(self._ev[r.premise].id, self._ev[r.conclusion].id, r.shape) for r in self._rels]

    @_locked
    def summary(self) -> dict[str, Any]:
        gt = self.ground_truth()
        kinds: dict[str, int] = {}
        for e in self._ev:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        return {
            "events": len(self._ev), "markets": len(self._mk), "events_by_kind": kinds,
            "relations": len(self._rels), "covers": len(gt.covers),
            "covers_by_kind": {k.value: gt.count(k) for k in CoverKind},
            "profitable": len(gt.profitable), "v2_markets": sum(1 for m in self._mk if m.version == "v2"),
        }
