"""Event templates of the generated universe: what Polymarket lists, as plain specs.

`SpecGen` makes `EventSpec`s (an event with its markets, fair probabilities and how to grow
it) for eight kinds — timeframe ladders, threshold ladders, candidate (neg-risk) events,
augmented neg-risk winner events (inactive unnamed outcomes), exact-count buckets, range
buckets, multi-winner (non-neg-risk) events, single-market events — and *families*: two
events with a true cross-event implication (single⇒single, candidate⇒candidate by shared
label, dated⇒dated). Titles are unique (case-insensitively) and every event claims the
entities it talks about, so two unrelated events never carry a logical relation the ground
truth does not report. Multi-winner events are never in a family: which of their outcomes
resolve Yes is independent of every other event.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from standins import universe_names as N

PLACEHOLDERS = ("Person A", "Person B", "Person C")
#: what a maker returns when its main claim is already taken (cheap early retry)
TAKEN: tuple[None, list, list[tuple]] = (None, [], [("taken",)])


@dataclass
class MarketSpec:
    question: str
    label: str  # groupItemTitle
    end: date
    fair: float  # fair YES probability
    description: str
    placeholder: bool = False
    active: bool = True  # False: an unnamed outcome of an augmented event, no book until named
    other: bool = False  # the "Other" market of an augmented event (Gamma's negRiskOther)
    value: float | None = None  # threshold bar
    direction: str | None = None  # threshold bar: "above" | "below" (mixed events differ per market)


@dataclass
class EventSpec:
    kind: str  # "timeframe" | "threshold" | "candidate" | "augmented" | "count" | "range" | "multi" | "single"
    title: str
    description: str
    tags: tuple[str, ...]
    markets: list[MarketSpec]
    neg_risk: bool = False
    augmented: bool = False  # Gamma's negRiskAugmented
    direction: str | None = None  # threshold ladders: "above" | "below" | "mixed" (per market)
    grow: dict[str, Any] = field(default_factory=dict)  # how add_market extends the event


@dataclass
class FamilySpec:
    premise: EventSpec
    conclusion: EventSpec
    shape: str  # "single" | "candidate" | "dated"
    explanation: str
    counterexample: str


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def clamp_fair(p: float) -> float:
    return min(0.97, max(0.02, p))


def hazard_fair(today: date, d: date, lam: float, base: float) -> float:
    months = max(0.0, (d - today).days / 30.44)
    return clamp_fair(base + (1.0 - base) * (1.0 - math.exp(-lam * months)))


def threshold_fair(value: float, ref: float, vol: float, direction: str) -> float:
    z = (ref - value) / (vol * ref)
    return clamp_fair(_logistic(z * 2.2 if direction == "above" else -z * 2.2))


class SpecGen:
    def __init__(self, rng: random.Random, today: date) -> None:
        self.rng = rng
        self.today = today
        self.claims: set[tuple] = {TAKEN[2][0]}
        self.titles: set[str] = set()
        r = rng
        self.surnames = N.Pool(r, N.LAST_NAMES, N.fictional_surname)
        self.companies = N.Pool(r, (), N.fictional_company)
        self.targets = N.Pool(r, N.CAPTURE_TARGETS, N.fictional_place)
        self.places = N.Pool(r, (), N.fictional_place)
        self.assets = N.Pool(r, (), lambda g: (N.fictional_coin(g), round(g.choice((0.5, 2, 8, 40, 150, 900)) * (0.5 + g.random()), 2)))
        self.states = N.Pool(r, N.STATES, N.fictional_place)

    # ------------------------------------------------------------------ helpers
    def person(self) -> str:
        return N.person(self.rng, self.surnames)

    def people(self, k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            name = self.person()
            if name not in out:
                out.append(name)
        return out

    def asset(self) -> tuple[str, float]:
        if self.rng.random() < 0.7:
            return self.rng.choice(N.ASSETS)
        return self.assets.take()

    def country(self) -> tuple[str, str, str, str]:
        """(country, adjective, party A, party B): a real one, or a fictional republic."""
        if self.rng.random() < 0.5:
            return self.rng.choice(N.COUNTRIES)
        place = self.places.take()
        a, b = self.rng.sample(N.PARTIES, 2)
        return (place, place, a, b)

    @staticmethod
    def asset_tag(asset: str) -> str:
        return "finance" if asset in N.NON_CRYPTO else "crypto"

    def company(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(N.COMPANIES)
        return self.companies.take()

    def team(self) -> str:
        return f"{self.rng.choice(N.TEAM_CITIES + (self.places.take(),))} {self.rng.choice(N.MASCOTS)}"

    def teams(self, k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            t = self.team()
            if t not in out:
                out.append(t)
        return out

    def dates(self, k: int) -> list[date]:
        offsets = sorted(self.rng.sample(range(1, 19), k))
        return [N.add_months(self.today, o) for o in offsets]

    def weights(self, k: int, total: float) -> list[float]:
        w = [self.rng.random() ** 2.2 + 0.02 for _ in range(k)]
        s = sum(w)
        return [total * x / s for x in w]

    def _commit(self, specs: list[EventSpec], claims: list[tuple]) -> bool:
        titles = [s.title.lower() for s in specs]
        if any(c in self.claims for c in claims) or any(t in self.titles for t in titles):
            return False
        if len(set(titles)) != len(titles):
            return False
        self.claims.update(claims)
        self.titles.update(titles)
        return True

    def reserve_title(self, title: str) -> bool:
        key = title.lower()
        if key in self.titles:
            return False
        self.titles.add(key)
        return True

    def _attempt(self, makers: list[Callable[[], tuple[Any, list[EventSpec], list[tuple]]]]) -> Any:
        for _ in range(200):
            result, specs, claims = self.rng.choice(makers)()
            if self._commit(specs, claims):
                return result
        raise RuntimeError("universe vocabulary exhausted")

    # ------------------------------------------------------------------ public
    def event(self, kind: str) -> EventSpec:
        makers = {
            "timeframe": [self._tf_capture, self._tf_ipo, self._tf_ceo, self._tf_ceasefire, self._tf_release,
                          self._tf_recession],
            "threshold": [self._th_on_date, self._th_in_year, self._th_hit_month],
            "candidate": [self._cand_president, self._cand_mayor, self._cand_ceo, self._cand_award, self._cand_league],
            "augmented": [self._aug_president, self._aug_party, self._aug_nominee, self._aug_leader],
            "count": [self._count_storms, self._count_launches, self._count_quakes, self._count_goals,
                      self._count_orders],
            "range": [self._range_posts, self._range_users, self._range_listeners],
            "multi": [self._multi_relegation, self._multi_top4, self._multi_countries],
            "single": [self._single_split, self._single_acquired, self._single_run, self._single_snap,
                       self._single_ath],
        }[kind]
        return self._attempt(makers)

    def family(self, shape: str) -> FamilySpec:
        makers = {
            "single": [self._fam_single_politics, self._fam_single_sports, self._fam_single_asset],
            "candidate": [self._fam_cand_politics, self._fam_cand_sports],
            "dated": [self._fam_dated_capture, self._fam_dated_release, self._fam_dated_strike],
        }[shape]
        return self._attempt(makers)

    # ------------------------------------------------------------------ timeframe ladders
    def _ladder(self, title: str, q: str, clause: str, tags: tuple[str, ...], lam: float | None = None,
                base: float | None = None, dates: list[date] | None = None) -> EventSpec:
        """`q` has a {date} slot; `clause` is the resolution condition in prose."""
        r = self.rng
        dates = dates or self.dates(r.randint(2, 6))
        lam = lam if lam is not None else r.uniform(0.02, 0.35)
        base = base if base is not None else r.uniform(0.0, 0.15)
        short = r.random() < 0.2 and len({d.year for d in dates}) == 1
        markets = [self._tf_market(q, clause, d, short, lam, base) for d in dates]
        return EventSpec("timeframe", title, f"This event groups markets on whether {clause} by each date listed.",
                         tags, markets, grow={"q": q, "clause": clause, "short": short, "lam": lam, "base": base})

    def _tf_market(self, q: str, clause: str, d: date, short: bool, lam: float, base: float) -> MarketSpec:
        desc = (f'This market will resolve to "Yes" if {clause} by {N.long_date(d)}, 11:59 PM ET. '
                'Otherwise, this market will resolve to "No".')
        label = N.short_date(d) if short else N.long_date(d)
        return MarketSpec(q.format(date=N.long_date(d)), label, d, hazard_fair(self.today, d, lam, base), desc)

    def grow_timeframe(self, spec_grow: dict[str, Any], last: date) -> MarketSpec:
        d = N.add_months(last, self.rng.choice((1, 2, 3, 6)))
        g = spec_grow
        return self._tf_market(g["q"], g["clause"], d, False, g["lam"], g["base"])

    def _tf_capture(self):  # type: ignore[no-untyped-def]
        x = self.targets.take()
        spec = self._ladder(f"Russia captures {x} by...?", f"Will Russia capture {x} by {{date}}?",
                            f"Russia captures {x}", ("geopolitics", "ukraine"))
        return spec, [spec], [("capture", x)]

    def _tf_ipo(self):  # type: ignore[no-untyped-def]
        co = self.company()
        spec = self._ladder(f"{co} IPO by...?", f"Will {co} announce an IPO by {{date}}?",
                            f"{co} publicly announces an IPO", ("business",))
        return spec, [spec], [("ipo", co)]

    def _tf_ceo(self):  # type: ignore[no-untyped-def]
        co = self.company()
        who = self.person()
        spec = self._ladder(f"{who} out as CEO of {co} by...?", f"Will {who} be out as CEO of {co} by {{date}}?",
                            f"{who} ceases to be CEO of {co}", ("business",))
        return spec, [spec], [("ceo", co), ("person", who)]

    def _tf_ceasefire(self):  # type: ignore[no-untyped-def]
        st = self.states.take()
        spec = self._ladder(f"{st} ceasefire by...?", f"Will there be a ceasefire in {st} by {{date}}?",
                            f"a ceasefire in {st} is announced", ("geopolitics",))
        return spec, [spec], [("ceasefire", st)]

    def _tf_release(self):  # type: ignore[no-untyped-def]
        co = self.company()
        prod = self.rng.choice(N.PRODUCTS)
        spec = self._ladder(f"{co} releases {prod} by...?", f"Will {co} release {prod} by {{date}}?",
                            f"{co} releases {prod}", ("tech",))
        return spec, [spec], [("release", co)]

    def _tf_recession(self):  # type: ignore[no-untyped-def]
        c = self.rng.choice(N.COUNTRIES)[0] if self.rng.random() < 0.5 else self.places.take()
        spec = self._ladder(f"{c} recession by...?", f"Will {c} enter a recession by {{date}}?",
                            f"{c} enters a recession", ("economy",))
        return spec, [spec], [("recession", c)]

    # ------------------------------------------------------------------ threshold ladders
    def _th(self, title: str, q: str, tags: tuple[str, ...], asset: str, ref: float, d: date,
            direction: str, cond: str) -> EventSpec:
        r = self.rng
        step = N.nice_step(ref)
        vol = r.uniform(0.08, 0.25)
        k = r.randint(3, 8)
        center = round(ref / step) * step
        shift = r.randint(0, k // 2)
        lo = center - step * (shift if direction == "above" else k - 1 - shift)
        values = [round(lo + i * step, 6) for i in range(k)]
        values = [v for v in values if v > 0] or [center]
        style = r.choice(("money", "money", "arrow", "compact"))
        markets = [self._th_market(q, cond, asset, v, d, direction, style, ref, vol) for v in values]
        return EventSpec("threshold", title, f"Markets on the price of {asset}.", tags, markets, direction=direction,
                         grow={"q": q, "cond": cond, "asset": asset, "d": d, "style": style, "ref": ref,
                               "vol": vol, "step": step})

    def _th_market(self, q: str, cond: str, asset: str, v: float, d: date, direction: str, style: str,
                   ref: float, vol: float) -> MarketSpec:
        desc = (f'This market will resolve to "Yes" if {cond.format(asset=asset, value=N.money(v))}. '
                f'Otherwise, this market will resolve to "No". The market resolves by {N.long_date(d)}.')
        return MarketSpec(q.format(value=N.money(v)), N.threshold_label(v, style, direction), d,
                          threshold_fair(v, ref, vol, direction), desc, value=v, direction=direction)

    def grow_threshold(self, g: dict[str, Any], direction: str, values: list[float]) -> MarketSpec:
        if "sides" in g:  # a "hit" event: a further bar on one side, away from the reference
            side = g["sides"][direction]
            v = round(max(values) + g["step"], 6) if direction == "above" else round(min(values) - g["step"], 6)
            if v <= 0:  # no room for a full step below: half the lowest bar
                v = round(min(values) / 2, 6)
            return self._th_market(side["q"], side["cond"], g["asset"], v, g["d"], direction, "arrow", g["ref"],
                                   g["vol"])
        if self.rng.random() < 0.5 or min(values) - g["step"] <= 0:
            v = round(max(values) + g["step"], 6)
        else:
            v = round(min(values) - g["step"], 6)
        return self._th_market(g["q"], g["cond"], g["asset"], v, g["d"], direction, g["style"], g["ref"], g["vol"])

    def _th_on_date(self):  # type: ignore[no-untyped-def]
        r = self.rng
        asset, ref = self.asset()
        d = N.add_months(self.today, r.randint(1, 18))
        if ("asset", asset, d.year) in self.claims:
            return TAKEN
        direction = r.choice(("above", "above", "below"))
        word = r.choice(("above", "over", "more than", "at least") if direction == "above" else ("below", "under", "less than"))
        title = f"{asset[0].upper() + asset[1:]} {'above' if direction == 'above' else 'below'} ___ on {N.long_date(d)}?"
        q = f"Will {asset} be {word} {{value}} on {N.long_date(d)}?"
        cond = f"the price of {{asset}} is {word} {{value}} on {N.long_date(d)}"
        spec = self._th(title, q, (self.asset_tag(asset),), asset, ref, d, direction, cond)
        return spec, [spec], [("asset", asset, d.year)]

    def _th_in_year(self):  # type: ignore[no-untyped-def]
        r = self.rng
        asset, ref = self.asset()
        year = self.today.year + r.randint(0, 2)
        if ("asset", asset, year) in self.claims:
            return TAKEN
        d = date(year, 12, 31)
        direction = r.choice(("above", "below"))
        if direction == "above":
            title = f"What price will {asset} reach in {year}?"
            q = f"Will {asset} reach {{value}} in {year}?"
            cond = f"{{asset}} trades at or above {{value}} at any time in {year}"
        else:
            title = f"How low will {asset} dip in {year}?"
            q = f"Will {asset} dip to {{value}} in {year}?"
            cond = f"{{asset}} trades at or below {{value}} at any time in {year}"
        spec = self._th(title, q, (self.asset_tag(asset),), asset, ref, d, direction, cond)
        return spec, [spec], [("asset", asset, year)]

    def _th_hit_month(self):  # type: ignore[no-untyped-def]
        """"What price will X hit in May 2027?": "↑" bars above the price and "↓" bars below
        it in one event. Each side is a ladder of its own; a "reach" bar and a "dip to" bar
        imply nothing about each other."""
        r = self.rng
        asset, ref = self.asset()
        ahead = N.add_months(self.today, r.randint(1, 12))
        d = N.month_end(ahead.year, ahead.month)
        if ("asset", asset, d.year) in self.claims:
            return TAKEN
        month = f"{N.MONTHS[d.month]} {d.year}"
        step = N.nice_step(ref)
        vol = r.uniform(0.08, 0.25)
        center = round(ref / step) * step
        sides = {
            "above": {"q": f"Will {asset} reach {{value}} in {month}?",
                      "cond": f"{{asset}} trades at or above {{value}} at any time in {month}"},
            "below": {"q": f"Will {asset} dip to {{value}} in {month}?",
                      "cond": f"{{asset}} trades at or below {{value}} at any time in {month}"},
        }
        ups = [round(center + i * step, 6) for i in range(1, r.randint(2, 4) + 1)]
        downs = [v for v in (round(center - i * step, 6) for i in range(1, r.randint(2, 4) + 1)) if v > 0]
        markets = [self._th_market(sides[side]["q"], sides[side]["cond"], asset, v, d, side, "arrow", ref, vol)
                   for side, values in (("above", ups), ("below", downs)) for v in values]
        title = f"What price will {asset} hit in {month}?"
        spec = EventSpec("threshold", title, f"Markets on the price of {asset}.", (self.asset_tag(asset),), markets,
                         direction="mixed", grow={"asset": asset, "d": d, "ref": ref, "vol": vol, "step": step,
                                                  "sides": sides})
        return spec, [spec], [("asset", asset, d.year)]

    # ------------------------------------------------------------------ candidate events
    def _candidates(self, title: str, q: str, names: list[str], end: date, tags: tuple[str, ...],
                    *, mode: str, fairs: list[float] | None = None, what: str = "wins",
                    unnamed: str = "Person", another: str = "another candidate") -> EventSpec:
        """mode: "other" (exhaustive, with an Other market), "placeholders" (not exhaustive:
        active "Person A/B/C"), "closed" (exhaustive by listing every outcome), "augmented"
        (negRiskAugmented: 1-3 inactive unnamed outcomes `unnamed` + letters, sometimes an
        inactive Other market; never exhaustive)."""
        r = self.rng
        if fairs is None:
            total = {"other": 1.0 - r.uniform(0.02, 0.06), "placeholders": r.uniform(0.85, 0.95), "closed": 1.0,
                     "augmented": r.uniform(0.85, 0.95)}[mode]
            fairs = self.weights(len(names), total)
        markets = []
        for name, f in zip(names, fairs):
            markets.append(self._cand_market(q, name, end, f, what, another))
        if mode == "other":
            markets.append(self._cand_market(q, "Other", end, max(0.02, 1.0 - sum(fairs)), what, another))
        elif mode == "placeholders":
            for ph in PLACEHOLDERS[: r.randint(1, 3)]:
                markets.append(self._cand_market(q, ph, end, 0.015, what, another, placeholder=True))
        elif mode == "augmented":
            for ph in N.placeholder_labels(r, unnamed, r.randint(1, 3)):
                markets.append(self._cand_market(q, ph, end, 0.01, what, another, placeholder=True, active=False))
            if r.random() < 0.4:
                markets.append(self.other_outcome({"q": q, "end": end, "what": what, "another": another}))
        return EventSpec("augmented" if mode == "augmented" else "candidate", title,
                         f"Who {what}? Only one outcome can resolve Yes.", tags, markets, neg_risk=True,
                         augmented=mode == "augmented",
                         grow={"q": q, "end": end, "what": what, "unnamed": unnamed, "another": another})

    def _cand_market(self, q: str, name: str, end: date, fair: float, what: str, another: str = "another candidate",
                     *, placeholder: bool = False, active: bool = True, other: bool = False) -> MarketSpec:
        question = q.format(name=another if name == "Other" else name)
        desc = (f'This market will resolve to "Yes" if {name} {what}. The outcome is expected to be known '
                f'by {N.long_date(end)}. Otherwise, this market will resolve to "No".')
        return MarketSpec(question, name, end, fair if placeholder else clamp_fair(fair), desc,
                          placeholder=placeholder, active=active, other=other)

    def grow_candidate(self, g: dict[str, Any], kind_hint: str) -> MarketSpec:
        """A newly listed named outcome."""
        return self._cand_market(g["q"], self.new_name(kind_hint), g["end"], 0.03, g["what"], g["another"])

    def new_name(self, kind_hint: str) -> str:
        if kind_hint == "team":
            return self.team()
        if kind_hint == "party":
            return f"{self.places.take()} {self.rng.choice(N.PARTY_SUFFIXES)}"
        if kind_hint == "club":
            return self.club()
        if kind_hint == "country":
            return self.nation()
        return self.person()

    def named_outcome(self, g: dict[str, Any], name: str) -> MarketSpec:
        """What an unnamed outcome of an augmented event becomes once it is named."""
        return self._cand_market(g["q"], name, g["end"], 0.03, g["what"], g["another"])

    def other_outcome(self, g: dict[str, Any]) -> MarketSpec:
        """The "Other" of an augmented event: inactive like the unnamed outcomes (it changes
        meaning whenever one is named)."""
        return self._cand_market(g["q"], "Other", g["end"], 0.01, g["what"], g["another"], active=False, other=True)

    def unnamed_outcome(self, g: dict[str, Any], taken: set[str]) -> MarketSpec:
        """One more inactive unnamed outcome, its label not in `taken`."""
        label = N.placeholder_labels(self.rng, g["unnamed"], 1)[0]
        while label in taken:
            label = N.placeholder_labels(self.rng, g["unnamed"], 1)[0]
        return self._cand_market(g["q"], label, g["end"], 0.01, g["what"], g["another"], placeholder=True,
                                 active=False)

    def _cand_president(self):  # type: ignore[no-untyped-def]
        r = self.rng
        country, adj, _, _ = self.country()
        year = self.today.year + r.randint(1, 5)
        if ("pres", country, year) in self.claims:
            return TAKEN
        names = self.people(r.randint(3, 9))
        spec = self._candidates(f"{year} {adj} Presidential Election Winner",
                                f"Will {{name}} win the {year} {adj} presidential election?", names,
                                N.month_end(year, 11), ("politics", "elections"),
                                mode=r.choice(("other", "placeholders")), what="wins the election")
        spec.grow["names"] = "person"
        return spec, [spec], [("pres", country, year)] + [("person", n) for n in names]

    def _cand_mayor(self):  # type: ignore[no-untyped-def]
        r = self.rng
        city = self.places.take() if r.random() < 0.6 else r.choice(N.TEAM_CITIES)
        year = self.today.year + r.randint(1, 3)
        office = r.choice(N.OFFICES)
        names = self.people(r.randint(2, 7))
        spec = self._candidates(f"{city} {office} {year} Winner", f"Will {{name}} win the {year} {city} {office.lower()}?",
                                names, N.month_end(year, 11), ("politics",),
                                mode=r.choice(("other", "placeholders", "closed")), what="wins the election")
        spec.grow["names"] = "person"
        return spec, [spec], [("office", city, office, year)] + [("person", n) for n in names]

    def _cand_ceo(self):  # type: ignore[no-untyped-def]
        r = self.rng
        co = self.company()
        names = self.people(r.randint(2, 6))
        end = N.add_months(self.today, r.randint(6, 18))
        spec = self._candidates(f"Next CEO of {co}?", f"Will {{name}} be the next CEO of {co}?", names, end,
                                ("business",), mode=r.choice(("other", "placeholders")),
                                what=f"is named the next CEO of {co}")
        spec.grow["names"] = "person"
        return spec, [spec], [("ceo", co)] + [("person", n) for n in names]

    def _cand_award(self):  # type: ignore[no-untyped-def]
        r = self.rng
        award = r.choice(N.AWARDS)
        year = self.today.year + r.randint(1, 6)
        if ("award", award, year) in self.claims:
            return TAKEN
        names = self.people(r.randint(3, 8))
        spec = self._candidates(f"{award} {year} Winner", f"Will {{name}} win the {year} {award}?", names,
                                N.month_end(year, 12), ("culture",), mode="other", what=f"wins the {year} {award}")
        spec.grow["names"] = "person"
        return spec, [spec], [("award", award, year)] + [("person", n) for n in names]

    def _cand_league(self):  # type: ignore[no-untyped-def]
        r = self.rng
        league, _, _, finals = r.choice(N.LEAGUES)
        year = self.today.year + r.randint(1, 8)
        teams = self.teams(r.randint(4, 12))
        if ("league", league, year) in self.claims:
            return TAKEN
        spec = self._candidates(f"{league} {year} Champion", f"Will the {{name}} win the {year} {finals}?", teams,
                                N.month_end(year, 6), ("sports",), mode="closed", what=f"wins the {year} {finals}")
        spec.grow["names"] = "team"
        return spec, [spec], [("league", league, year)] + [("team", t, year) for t in teams]

    # ------------------------------------------------------------------ augmented neg-risk winner events
    def _aug_president(self):  # type: ignore[no-untyped-def]
        r = self.rng
        country, adj, _, _ = self.country()
        year = self.today.year + r.randint(1, 5)
        if ("pres", country, year) in self.claims:
            return TAKEN
        names = self.people(r.randint(3, 9))
        spec = self._candidates(f"{adj} Presidential Election {year}: Who will win?",
                                f"Will {{name}} win the {year} {adj} presidential election?", names,
                                N.month_end(year, 11), ("politics", "elections"), mode="augmented",
                                what="wins the election", unnamed=r.choice(("Person", "Candidate")))
        spec.grow["names"] = "person"
        return spec, [spec], [("pres", country, year)] + [("person", n) for n in names]

    def _aug_party(self):  # type: ignore[no-untyped-def]
        r = self.rng
        country, adj, party_a, party_b = self.country()
        year = self.today.year + r.randint(1, 4)
        if ("parl", country, year) in self.claims:
            return TAKEN
        parties = [party_a, party_b] + [p for p in r.sample(N.PARTIES, r.randint(1, 4)) if p not in (party_a, party_b)]
        spec = self._candidates(f"Which party will win the most seats in the {year} {adj} parliamentary election?",
                                f"Will {{name}} win the most seats in the {year} {adj} parliamentary election?",
                                parties, N.month_end(year, 10), ("politics", "elections"), mode="augmented",
                                what="wins the most seats", unnamed="Party", another="another party")
        spec.grow["names"] = "party"
        return spec, [spec], [("parl", country, year)]

    def _aug_nominee(self):  # type: ignore[no-untyped-def]
        r = self.rng
        country, adj, party_a, party_b = self.country()
        party = r.choice((party_a, party_b))
        year = self.today.year + r.randint(1, 5)
        if ("nom", country, year, party) in self.claims:
            return TAKEN
        names = self.people(r.randint(3, 8))
        spec = self._candidates(f"Who will be the {year} {adj} {party} presidential nominee?",
                                f"Will {{name}} be the {year} {adj} {party} presidential nominee?", names,
                                N.month_end(year, 8), ("politics", "elections"), mode="augmented",
                                what=f"wins the {party} nomination", unnamed=r.choice(("Person", "Candidate")))
        spec.grow["names"] = "person"
        return spec, [spec], [("nom", country, year, party)] + [("person", n) for n in names]

    def _aug_leader(self):  # type: ignore[no-untyped-def]
        r = self.rng
        place = self.places.take() if r.random() < 0.7 else self.country()[0]
        if ("leader", place) in self.claims:
            return TAKEN
        names = self.people(r.randint(2, 7))
        end = N.add_months(self.today, r.randint(4, 14))
        spec = self._candidates(f"Next Prime Minister of {place}?",
                                f"Will {{name}} be the next Prime Minister of {place}?", names, end,
                                ("politics", "geopolitics"), mode="augmented",
                                what=f"becomes the next Prime Minister of {place}", unnamed="Person")
        spec.grow["names"] = "person"
        return spec, [spec], [("leader", place)] + [("person", n) for n in names]

    # ------------------------------------------------------------------ bucket events (neg-risk, exhaustive)
    def _buckets(self, kind: str, title: str, labels: list[str], phrases: list[str], fairs: list[float], q: str,
                 cond: str, end: date, tags: tuple[str, ...]) -> EventSpec:
        """Exclusive, exhaustive buckets of one quantity: `q` has a {n} slot for the bucket's
        phrase ("exactly 3", "10 or more", "60M-80M"); `cond` names the quantity in prose."""
        markets = []
        for label, phrase, f in zip(labels, phrases, fairs):
            desc = (f'This market will resolve to "Yes" if {cond} is {phrase}. The outcome is expected to be '
                    f'known by {N.long_date(end)}. Otherwise, this market will resolve to "No".')
            markets.append(MarketSpec(q.format(n=phrase), label, end, clamp_fair(f), desc))
        return EventSpec(kind, title, f"Markets on {cond}. Exactly one bucket resolves Yes.", tags, markets,
                         neg_risk=True)

    def bell(self, k: int) -> list[float]:
        """Fair probabilities of `k` adjacent buckets: a noisy bell, summing to 1."""
        r = self.rng
        center, width = r.uniform(0.5, k - 1.5), r.uniform(0.8, max(1.0, k / 3))
        w = [math.exp(-((i - center) / width) ** 2 / 2) * r.uniform(0.7, 1.3) + 0.01 for i in range(k)]
        s = sum(w)
        return [x / s for x in w]

    def _count(self, title: str, q: str, cond: str, tags: tuple[str, ...], end: date) -> EventSpec:
        """Exact counts "2", "3", … "9" with an open top ("10+" / "10 or more") and an open
        bottom ("1 or fewer" / "<2") or a natural one ("0")."""
        r = self.rng
        bottom = r.choice(("zero", "fewer", "less"))
        lo = 0 if bottom == "zero" else r.randint(2, 3)
        top = lo + r.randint(3, 9)
        labels, phrases = [], []
        if bottom == "fewer":
            labels.append(f"{lo - 1} or fewer")
            phrases.append(f"{lo - 1} or fewer")
        elif bottom == "less":
            labels.append(f"<{lo}")
            phrases.append(f"fewer than {lo}")
        for n in range(lo, top):
            labels.append(str(n))
            phrases.append(f"exactly {n}")
        labels.append(f"{top}+" if r.random() < 0.6 else f"{top} or more")
        phrases.append(f"{top} or more")
        return self._buckets("count", title, labels, phrases, self.bell(len(labels)), q, cond, end, tags)

    def _month_ahead(self) -> tuple[date, str]:
        end = N.add_months(self.today, self.rng.randint(1, 12))
        return end, f"{N.MONTHS[end.month]} {end.year}"

    def _count_storms(self):  # type: ignore[no-untyped-def]
        end, month = self._month_ahead()
        spec = self._count(f"How many named storms will form in {month}?", f"Will {{n}} named storms form in {month}?",
                           f"the number of Atlantic named storms formed in {month}", ("culture",), end)
        return spec, [spec], [("count", "storms", month)]

    def _count_launches(self):  # type: ignore[no-untyped-def]
        co = self.company()
        end, month = self._month_ahead()
        spec = self._count(f"How many {co} rocket launches in {month}?",
                           f"Will {co} make {{n}} rocket launches in {month}?",
                           f"the number of orbital launches by {co} in {month}", ("tech",), end)
        return spec, [spec], [("count", "launches", co, month)]

    def _count_quakes(self):  # type: ignore[no-untyped-def]
        """Numeric labels and "or more" in every question, yet exclusive buckets."""
        end, month = self._month_ahead()
        spec = self._count(f"How many magnitude 6.5+ earthquakes in {month}?",
                           f"Will there be {{n}} earthquakes of magnitude 6.5 or more in {month}?",
                           f"the number of magnitude 6.5 or greater earthquakes in {month}", ("culture",), end)
        return spec, [spec], [("count", "quakes", month)]

    def _count_goals(self):  # type: ignore[no-untyped-def]
        team = self.clubs(1)[0]
        end, month = self._month_ahead()
        spec = self._count(f"How many goals will {team} score in {month}?",
                           f"Will {team} score {{n}} goals in {month}?",
                           f"the number of competitive goals {team} scores in {month}", ("sports",), end)
        return spec, [spec], [("club", team)]

    def _count_orders(self):  # type: ignore[no-untyped-def]
        who = self.person()
        end, month = self._month_ahead()
        spec = self._count(f"How many executive orders will {who} sign in {month}?",
                           f"Will {who} sign {{n}} executive orders in {month}?",
                           f"the number of executive orders {who} signs in {month}", ("politics",), end)
        return spec, [spec], [("person", who)]

    def _range(self, title: str, q: str, cond: str, tags: tuple[str, ...], end: date, unit: str) -> EventSpec:
        """Range buckets ("<300", "300-324", …, "400+"; or "<60M", "60M-80M", …, "110M+"):
        numbers, yet exclusive outcomes and no threshold ladder; the open top makes them
        exhaustive."""
        r = self.rng
        if unit:
            width = r.choice((5, 10, 20))
            lo = width * r.randint(2, 12)
        else:
            width = r.choice((10, 20, 25, 50))
            lo = width * r.randint(4, 20)
        k = r.randint(3, 7)
        top = lo + k * width
        if unit:
            mid = [f"{lo + i * width}{unit}-{lo + (i + 1) * width}{unit}" for i in range(k)]
        else:
            mid = [f"{lo + i * width}-{lo + (i + 1) * width - 1}" for i in range(k)]
        labels = [f"<{lo}{unit}"] + mid + [f"{top}{unit}+"]
        phrases = [f"less than {lo}{unit}"] + mid + [f"{top}{unit} or more"]
        return self._buckets("range", title, labels, phrases, self.bell(len(labels)), q, cond, end, tags)

    def _range_posts(self):  # type: ignore[no-untyped-def]
        name = self.person()
        end, month = self._month_ahead()
        spec = self._range(f"How many posts will {name} make in {month}?", f"Will {name} make {{n}} posts in {month}?",
                           f"the number of posts {name} makes in {month}", ("culture",), end, "")
        return spec, [spec], [("posts", name), ("person", name)]

    def _range_users(self):  # type: ignore[no-untyped-def]
        co = self.company()
        end, month = self._month_ahead()
        spec = self._range(f"{co} monthly active users in {month}?",
                           f"Will {co} report {{n}} monthly active users for {month}?",
                           f"the number of monthly active users {co} reports for {month}", ("tech",), end, "M")
        return spec, [spec], [("mau", co)]

    def _range_listeners(self):  # type: ignore[no-untyped-def]
        name = self.person()
        end, month = self._month_ahead()
        spec = self._range(f"How many monthly listeners will {name} have at the end of {month}?",
                           f"Will {name} have {{n}} monthly listeners at the end of {month}?",
                           f"{name}'s monthly listener count at the end of {month}", ("culture",), end, "M")
        return spec, [spec], [("listeners", name), ("person", name)]

    # ------------------------------------------------------------------ multi-winner events (not neg-risk)
    def _multi(self, title: str, q: str, names: list[str], fairs: list[float], end: date, what: str,
               tags: tuple[str, ...], names_kind: str) -> EventSpec:
        """Any subset of the markets can resolve Yes although they share one end date: no
        rule cover, and no logical relation to any other event."""
        markets = [self._multi_market(q, name, end, f, what) for name, f in zip(names, fairs)]
        return EventSpec("multi", title, "Each market resolves on its own: several can resolve Yes.", tags, markets,
                         grow={"q": q, "end": end, "what": what, "names": names_kind})

    def _multi_market(self, q: str, name: str, end: date, fair: float, what: str) -> MarketSpec:
        desc = (f'This market will resolve to "Yes" if {name} {what} by {N.long_date(end)}. '
                'Otherwise, this market will resolve to "No". Other markets in this event resolve independently.')
        return MarketSpec(q.format(name=name), name, end, clamp_fair(fair), desc)

    def grow_multi(self, g: dict[str, Any], taken: set[str]) -> MarketSpec:
        """A further outcome; it claims its entity, so no other event can come to imply it."""
        name = self.new_name(g["names"])
        while name in taken or (*g["claim"], name) in self.claims:
            name = self.new_name(g["names"])
        self.claims.add((*g["claim"], name))
        return self._multi_market(g["q"], name, g["end"], self.rng.uniform(0.03, 0.3), g["what"])

    def club(self) -> str:
        r = self.rng
        city = r.choice(N.CLUB_CITIES) if r.random() < 0.5 else self.places.take()
        return f"{r.choice(N.CLUB_PREFIXES)} {city}" if r.random() < 0.3 else f"{city} {r.choice(N.CLUB_SUFFIXES)}"

    def clubs(self, k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            c = self.club()
            if c not in out and ("club", c) not in self.claims:
                out.append(c)
        return out

    def nation(self) -> str:
        return self.rng.choice(N.MULTI_COUNTRIES) if self.rng.random() < 0.6 else self.places.take()

    def _league_season(self) -> tuple[str, int]:
        r = self.rng
        league = r.choice(N.SOCCER_LEAGUES) if r.random() < 0.7 else f"{self.places.take()} First Division"
        return league, self.today.year + r.randint(0, 3)

    def _multi_relegation(self):  # type: ignore[no-untyped-def]
        r = self.rng
        league, year = self._league_season()
        if ("soccer", league, year) in self.claims:
            return TAKEN
        season = f"{year}-{(year + 1) % 100:02d}"
        clubs = self.clubs(r.randint(5, 10))
        fairs = [min(0.9, f) for f in self.weights(len(clubs), 3.0)]
        spec = self._multi(f"Which teams will be relegated from the {league} {season}?",
                           f"Will {{name}} be relegated from the {league} {season}?", clubs, fairs,
                           N.month_end(year + 1, 5), f"is relegated from the {league} in the {season} season",
                           ("sports",), "club")
        spec.grow["claim"] = ("club",)
        return spec, [spec], [("soccer", league, year)] + [("club", c) for c in clubs]

    def _multi_top4(self):  # type: ignore[no-untyped-def]
        r = self.rng
        league, year = self._league_season()
        if ("soccer", league, year) in self.claims:
            return TAKEN
        season = f"{year}-{(year + 1) % 100:02d}"
        clubs = self.clubs(r.randint(5, 9))
        fairs = [min(0.93, f) for f in self.weights(len(clubs), 3.6)]
        spec = self._multi(f"Top 4 finish in the {league} {season}?",
                           f"Will {{name}} finish in the top 4 of the {league} {season}?", clubs, fairs,
                           N.month_end(year + 1, 5), f"finishes in the top 4 of the {league} {season}", ("sports",),
                           "club")
        spec.grow["claim"] = ("club",)
        return spec, [spec], [("soccer", league, year)] + [("club", c) for c in clubs]

    def _multi_countries(self):  # type: ignore[no-untyped-def]
        r = self.rng
        topic, does = r.choice(N.COUNTRY_TOPICS)
        k = r.randint(3, 8)
        countries: list[str] = []
        while len(countries) < k:
            c = self.nation()
            if c not in countries and ("countries", topic, c) not in self.claims:
                countries.append(c)
        end = N.add_months(self.today, r.randint(3, 18))
        fairs = [r.uniform(0.03, 0.5) for _ in countries]
        spec = self._multi(f"Which countries will {topic} by {N.long_date(end)}?",
                           f"Will {{name}} {topic} by {N.long_date(end)}?", countries, fairs, end, does,
                           ("geopolitics",), "country")
        spec.grow["claim"] = ("countries", topic)
        return spec, [spec], [("countries", topic, c) for c in countries]

    # ------------------------------------------------------------------ single-market events
    def _single(self, question: str, end: date, tags: tuple[str, ...], fair: float | None = None) -> EventSpec:
        f = fair if fair is not None else clamp_fair(self.rng.betavariate(1.2, 2.0))
        desc = (f'This market will resolve to "Yes" if the answer to "{question}" is yes, as determined '
                f'by {N.long_date(end)}. Otherwise, this market will resolve to "No".')
        return EventSpec("single", question, desc, tags, [MarketSpec(question, "", end, f, desc)])

    def _single_split(self):  # type: ignore[no-untyped-def]
        co = self.company()
        year = self.today.year + self.rng.randint(1, 3)
        spec = self._single(f"Will {co} announce a stock split in {year}?", date(year, 12, 31), ("business",))
        return spec, [spec], [("split", co, year)]

    def _single_acquired(self):  # type: ignore[no-untyped-def]
        co = self.company()
        year = self.today.year + self.rng.randint(1, 3)
        spec = self._single(f"Will {co} be acquired in {year}?", date(year, 12, 31), ("business",))
        return spec, [spec], [("acquired", co, year)]

    def _single_run(self):  # type: ignore[no-untyped-def]
        who = self.person()
        year = self.today.year + self.rng.randint(1, 3)
        spec = self._single(f"Will {who} announce a presidential run before {year}?", date(year, 1, 1), ("politics",))
        return spec, [spec], [("person", who)]

    def _single_snap(self):  # type: ignore[no-untyped-def]
        c = self.rng.choice(N.COUNTRIES)[0] if self.rng.random() < 0.4 else self.places.take()
        year = self.today.year + self.rng.randint(1, 3)
        spec = self._single(f"Will {c} hold a snap election in {year}?", date(year, 12, 31), ("politics",))
        return spec, [spec], [("snap", c, year)]

    def _single_ath(self):  # type: ignore[no-untyped-def]
        asset, _ = self.asset()
        year = self.today.year + self.rng.randint(1, 3)
        spec = self._single(f"Will {asset} hit an all-time high in {year}?", date(year, 12, 31), (self.asset_tag(asset),))
        return spec, [spec], [("asset", asset, year)]

    # ------------------------------------------------------------------ families (true implications)
    def _fam_single_politics(self):  # type: ignore[no-untyped-def]
        r = self.rng
        country, adj, party_a, party_b = self.country()
        party = r.choice((party_a, party_b))
        year = self.today.year + r.randint(1, 5)
        if ("pres", country, year) in self.claims:
            return TAKEN
        who = self.person()
        end = N.month_end(year, 11)
        nom = r.uniform(0.1, 0.7)
        c = self._single(f"Will {who} win the {year} {adj} {party} presidential nomination?", N.month_end(year, 8),
                         ("politics", "elections"), nom)
        p = self._single(f"Will {who} win the {year} {adj} presidential election?", end, ("politics", "elections"),
                         clamp_fair(nom * r.uniform(0.3, 0.7)))
        fam = FamilySpec(p, c, "single", f"{who} can only win the {year} presidential election as the {party} nominee.",
                         f"{who} winning the election without the {party} nomination is not possible under the market rules.")
        return fam, [p, c], [("pres", country, year), ("nom", country, year, party), ("person", who)]

    def _fam_single_sports(self):  # type: ignore[no-untyped-def]
        r = self.rng
        league, _, _, finals = r.choice(N.LEAGUES)
        year = self.today.year + r.randint(1, 8)
        team = self.team()
        reach = r.uniform(0.1, 0.6)
        c = self._single(f"Will the {team} reach the {year} {finals}?", N.month_end(year, 5), ("sports",), reach)
        p = self._single(f"Will the {team} win the {year} {finals}?", N.month_end(year, 6), ("sports",),
                         clamp_fair(reach * r.uniform(0.3, 0.65)))
        fam = FamilySpec(p, c, "single", f"Winning the {year} {finals} requires reaching it.",
                         f"The {team} cannot win the {finals} without playing in it.")
        return fam, [p, c], [("finals", league, year, team), ("team", team, year)]

    def _fam_single_asset(self):  # type: ignore[no-untyped-def]
        r = self.rng
        asset, ref = self.asset()
        year = self.today.year + r.randint(1, 3)
        step = N.nice_step(ref)
        lo = round(ref + step * r.randint(1, 4), 6)
        hi = round(lo + step * r.randint(2, 6), 6)
        vol = r.uniform(0.1, 0.3)
        f_lo = threshold_fair(lo, ref, vol, "above")
        tag = self.asset_tag(asset)
        c = self._single(f"Will {asset} reach {N.money(lo)} in {year}?", date(year, 12, 31), (tag,), f_lo)
        p = self._single(f"Will {asset} reach {N.money(hi)} in {year}?", date(year, 12, 31), (tag,),
                         clamp_fair(min(threshold_fair(hi, ref, vol, "above"), f_lo * 0.8)))
        fam = FamilySpec(p, c, "single", f"Reaching {N.money(hi)} means passing {N.money(lo)} first.",
                         f"{asset} cannot trade at {N.money(hi)} without having traded at {N.money(lo)}.")
        return fam, [p, c], [("asset", asset, year)]

    def _fam_cand_politics(self):  # type: ignore[no-untyped-def]
        r = self.rng
        country, adj, party_a, party_b = self.country()
        year = self.today.year + r.randint(1, 5)
        if ("pres", country, year) in self.claims:
            return TAKEN
        ours = self.people(r.randint(3, 7))
        theirs = self.people(r.randint(2, 5))
        while set(ours) & set(theirs):
            theirs = self.people(len(theirs))
        w = r.uniform(0.35, 0.65)
        nom = self.weights(len(ours), r.uniform(0.85, 0.95))
        c = self._candidates(f"{year} {adj} {party_a} Presidential Nominee",
                             f"Will {{name}} win the {year} {adj} {party_a} presidential nomination?", ours,
                             N.month_end(year, 8), ("politics", "elections"), mode="placeholders", fairs=nom,
                             what=f"wins the {party_a} nomination")
        c.grow["names"] = "person"
        others = self.weights(len(theirs), 0.95 * (1 - w))
        pres = [f * w for f in nom] + others
        p = self._candidates(f"{year} {adj} Presidential Election Winner",
                             f"Will {{name}} win the {year} {adj} presidential election?", ours + theirs,
                             N.month_end(year, 11), ("politics", "elections"), mode="other", fairs=pres,
                             what="wins the election")
        p.grow["names"] = "person"
        fam = FamilySpec(p, c, "candidate",
                         f"A {party_a} candidate can only win the {year} election as the {party_a} nominee.",
                         "No listed candidate can win the presidency without the nomination of their party.")
        claims = [("pres", country, year), ("nom", country, year, party_a)] + [("person", n) for n in ours + theirs]
        return fam, [p, c], claims

    def _fam_cand_sports(self):  # type: ignore[no-untyped-def]
        r = self.rng
        league, conf_a, _, finals = r.choice(N.LEAGUES)
        year = self.today.year + r.randint(1, 8)
        if ("league", league, year) in self.claims:
            return TAKEN
        east = self.teams(r.randint(3, 7))
        west = [t for t in self.teams(r.randint(6, 12)) if t not in east][: r.randint(3, 6)]
        w = r.uniform(0.35, 0.65)
        fa = self.weights(len(east), 1.0)
        fb = self.weights(len(west), 1.0)
        c = self._candidates(f"{league} {year} {conf_a} Champion", f"Will the {{name}} win the {year} {league} {conf_a} title?",
                             east, N.month_end(year, 5), ("sports",), mode="closed", fairs=fa,
                             what=f"wins the {year} {conf_a} title")
        c.grow["names"] = "team"
        p = self._candidates(f"{league} {year} Champion", f"Will the {{name}} win the {year} {finals}?", east + west,
                             N.month_end(year, 6), ("sports",), mode="closed", fairs=[f * w for f in fa] + [f * (1 - w) for f in fb],
                             what=f"wins the {year} {finals}")
        p.grow["names"] = "team"
        fam = FamilySpec(p, c, "candidate", f"Only the {conf_a} champion can win the {finals} from the {conf_a}.",
                         f"A {conf_a} team cannot win the {finals} without winning its conference first.")
        return fam, [p, c], [("league", league, year)] + [("team", t, year) for t in east + west]

    def _dated_pair(self, p_title: str, p_q: str, p_clause: str, c_title: str, c_q: str, c_clause: str,
                    tags: tuple[str, ...]) -> tuple[EventSpec, EventSpec]:
        r = self.rng
        lam = r.uniform(0.02, 0.2)
        base = r.uniform(0.0, 0.1)
        p = self._ladder(p_title, p_q, p_clause, tags, lam, base, self.dates(r.randint(2, 5)))
        c = self._ladder(c_title, c_q, c_clause, tags, lam * r.uniform(1.5, 3.0), base + r.uniform(0.02, 0.1),
                         self.dates(r.randint(2, 5)))
        return p, c

    def _fam_dated_capture(self):  # type: ignore[no-untyped-def]
        a, b = self.targets.take(), self.targets.take()
        p, c = self._dated_pair(f"Russia captures {a} by...?", f"Will Russia capture {a} by {{date}}?", f"Russia captures {a}",
                                f"Russia captures {a} or {b} by...?", f"Will Russia capture {a} or {b} by {{date}}?",
                                f"Russia captures {a} or {b}", ("geopolitics", "ukraine"))
        fam = FamilySpec(p, c, "dated", f"Capturing {a} by a date means capturing {a} or {b} by any later date.",
                         f"There is no way to capture {a} without '{a} or {b}' being captured.")
        return fam, [p, c], [("capture", a), ("capture", b)]

    def _fam_dated_release(self):  # type: ignore[no-untyped-def]
        co = self.company()
        p1, p2 = self.rng.sample(N.PRODUCTS, 2)
        p, c = self._dated_pair(f"{co} releases {p1} by...?", f"Will {co} release {p1} by {{date}}?", f"{co} releases {p1}",
                                f"{co} releases {p1} or {p2} by...?", f"Will {co} release {p1} or {p2} by {{date}}?",
                                f"{co} releases {p1} or {p2}", ("tech",))
        fam = FamilySpec(p, c, "dated", f"Releasing {p1} by a date satisfies '{p1} or {p2}' by any later date.",
                         f"{co} cannot release {p1} without the 'or' market resolving Yes.")
        return fam, [p, c], [("release", co)]

    def _fam_dated_strike(self):  # type: ignore[no-untyped-def]
        a, b = self.states.take(), self.states.take()
        p, c = self._dated_pair(f"US military action against {a} by...?", f"Will the US take military action against {a} by {{date}}?",
                                f"the US takes military action against {a}",
                                f"US military action against {a} or {b} by...?",
                                f"Will the US take military action against {a} or {b} by {{date}}?",
                                f"the US takes military action against {a} or {b}", ("geopolitics",))
        fam = FamilySpec(p, c, "dated", f"Military action against {a} satisfies '{a} or {b}' for every later date.",
                         f"A strike on {a} always resolves the '{a} or {b}' market Yes.")
        return fam, [p, c], [("strike", a), ("strike", b)]
