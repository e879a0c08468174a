"""The generated market universe: determinism, Gamma shape, books, walk, ground truth, oracle.

Expected values are recomputed here from the generated data (Gamma JSON + books) with the
brief's definitions, never taken from the generator's own bookkeeping.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from polyalphascan.records import CoverKind, Leg, Side, cover_id
from standins.protocols import BookSnapshot
from standins.universe import Universe

DATE_RE = re.compile(r"by (January|February|March|April|May|June|July|August|September|October|November|December) "
                     r"\d{1,2}, \d{4}")
ABOVE_WORDS = ("above", "over", "more than", "at least", "reach")
BELOW_WORDS = ("below", "under", "less than", "dip to")
PLACEHOLDER_RE = re.compile(r"[A-Z][a-z]+ [A-Z]{1,2}")  # "Person K", "Party A", "Candidate AB"
NEG_RISK_KINDS = {"candidate", "augmented", "count", "range"}
COUNT_LABEL = re.compile(r"\d+|\d+\+|\d+ or (more|fewer)|<\d+")
RANGE_LABEL = re.compile(r"<\d+M?|\d+M?-\d+M?|\d+M?\+")
GROWABLE = {"timeframe", "threshold", "candidate", "augmented", "multi"}
ALL_KINDS = NEG_RISK_KINDS | {"timeframe", "threshold", "multi", "single"}


@pytest.fixture(scope="module")
def u300() -> Universe:
    return Universe(seed=3, n_events=300)


# ------------------------------------------------------------------ helpers (independent of the generator)
def tokens_of(m: dict) -> tuple[str, str]:
    ids = m["positionIds"] if m["version"] == "v2" else json.loads(m["clobTokenIds"])
    return ids[0], ids[1]


def best(book: BookSnapshot) -> tuple[float, float]:
    return max(p for p, _ in book.bids), min(p for p, _ in book.asks)


def parse_value(label: str) -> float:
    s = label.replace("↑", "").replace("↓", "").replace("$", "").replace(",", "").strip()
    mult = 1.0
    if s.endswith("k"):
        mult, s = 1e3, s[:-1]
    elif s.endswith("M"):
        mult, s = 1e6, s[:-1]
    return float(s) * mult


def is_placeholder(label: str) -> bool:
    return PLACEHOLDER_RE.fullmatch(label) is not None


def is_open(m: dict) -> bool:
    return m["active"] and not m["closed"]


def exhaustive(e: dict) -> bool:
    """The semantics' ALL_YES test, from the Gamma JSON alone."""
    return (e["negRisk"] and not e["negRiskAugmented"]
            and not any(is_placeholder(m["groupItemTitle"]) for m in e["markets"])
            and all(m["active"] or m["closed"] for m in e["markets"])
            and all(json.loads(m["outcomePrices"]) == ["0", "1"] for m in e["markets"] if m["closed"]))


def leg(m: dict, side: Side, event_id: str) -> Leg:
    y, n = tokens_of(m)
    return Leg(m["id"], side, y, n, m["question"], event_id)


def expected_covers(u: Universe) -> dict[str, tuple[CoverKind, tuple[Leg, ...], float]]:
    """Every cover the brief defines, built from the Gamma JSON and the true relations."""
    events = {e["id"]: e for e in u.gamma_events()}
    out: dict[str, tuple[CoverKind, tuple[Leg, ...], float]] = {}

    def add(kind: CoverKind, legs: tuple[Leg, ...], payout: float) -> None:
        out[cover_id(kind, legs)] = (kind, legs, payout)

    def open_markets(e: dict) -> list[dict]:
        return [m for m in e["markets"] if is_open(m)]

    for e in events.values():
        if e["closed"]:
            continue
        ms = open_markets(e)
        kind = u.event_kind(e["id"])
        if e["negRisk"]:  # exclusive outcomes, numeric labels or not
            named = [m for m in ms if not is_placeholder(m["groupItemTitle"])]
            if len(named) >= 2:
                add(CoverKind.ALL_NO, tuple(leg(m, Side.NO, e["id"]) for m in named), len(named) - 1.0)
                if exhaustive(e):
                    add(CoverKind.ALL_YES, tuple(leg(m, Side.YES, e["id"]) for m in named), 1.0)
        elif kind == "timeframe":
            ms.sort(key=lambda m: m["endDate"])
            for i in range(len(ms)):
                for j in range(i + 1, len(ms)):
                    add(CoverKind.TIMEFRAME, (leg(ms[j], Side.YES, e["id"]), leg(ms[i], Side.NO, e["id"])), 1.0)
        elif kind == "threshold":  # one ladder per direction ("reach" and "dip to" bars may share an event)
            for above in (True, False):
                bars = sorted((m for m in ms if any(w in m["question"] for w in ABOVE_WORDS) == above),
                              key=lambda m: parse_value(m["groupItemTitle"]))
                for i in range(len(bars)):
                    for j in range(i + 1, len(bars)):
                        lo, hi = bars[i], bars[j]
                        legs = ((leg(lo, Side.YES, e["id"]), leg(hi, Side.NO, e["id"])) if above
                                else (leg(hi, Side.YES, e["id"]), leg(lo, Side.NO, e["id"])))
                        add(CoverKind.THRESHOLD, legs, 1.0)
    for pid, cid, shape in u.relations():
        pe, ce = events[pid], events[cid]
        if pe["closed"] or ce["closed"]:
            continue
        pairs = []
        for p in open_markets(pe):
            for c in open_markets(ce):
                if shape == "candidate":
                    ok = p["groupItemTitle"] == c["groupItemTitle"] and not is_placeholder(p["groupItemTitle"])
                elif shape == "dated":
                    ok = c["endDate"] >= p["endDate"]
                else:
                    ok = True
                if ok:
                    pairs.append((p, c))
        for p, c in pairs:
            add(CoverKind.LLM, (leg(c, Side.YES, cid), leg(p, Side.NO, pid)), 1.0)
    return out


def cost_from_books(u: Universe, legs: tuple[Leg, ...]) -> float:
    total = 0.0
    for lg in legs:
        book = u.book(lg.token_id)
        assert book is not None
        total += min(p for p, _ in book.asks)
    return total


# ------------------------------------------------------------------ determinism and size
def test_same_seed_same_universe_and_ground_truth() -> None:
    a, b = Universe(seed=11, n_events=120), Universe(seed=11, n_events=120)
    assert a.gamma_events() == b.gamma_events()
    ga, gb = a.ground_truth(), b.ground_truth()
    assert ga.covers == gb.covers and ga.profitable == gb.profitable and ga.implications == gb.implications
    assert a.step(2000) == b.step(2000)
    assert a.add_events(5) == b.add_events(5)
    assert a.gamma_events() == b.gamma_events()
    c = Universe(seed=12, n_events=120)
    assert [e["title"] for e in c.gamma_events()] != [e["title"] for e in a.gamma_events()]
    assert c.ground_truth().covers.keys() != ga.covers.keys()


def test_small_and_large_universes() -> None:
    small = Universe(seed=5, n_events=10)
    assert len(small.gamma_events()) == 10
    assert small.ground_truth().profitable  # at least one injected mispricing even when tiny
    t0 = time.perf_counter()
    big = Universe(seed=5, n_events=20_000)
    build = time.perf_counter() - t0
    events = big.gamma_events()
    assert len(events) == 20_000
    assert build < 20, f"20k-event build took {build:.1f}s"
    titles = [e["title"].lower() for e in events]
    assert len(set(titles)) == len(titles)
    assert big.gamma_events() == events  # cached, same content


# ------------------------------------------------------------------ Gamma shape
def test_gamma_shape(u300: Universe) -> None:
    events = u300.gamma_events()
    event_ids = [int(e["id"]) for e in events]
    assert event_ids == sorted(event_ids) and len(set(event_ids)) == len(event_ids)
    market_ids = [int(m["id"]) for e in events for m in e["markets"]]
    assert market_ids == sorted(market_ids) and len(set(market_ids)) == len(market_ids)
    versions = Counter(m["version"] for e in events for m in e["markets"])
    assert 0.04 < versions["v2"] / sum(versions.values()) < 0.2
    tag_ids = {t["id"] for t in u300.gamma_tags()}
    kinds = Counter(u300.event_kind(e["id"]) for e in events)
    assert set(kinds) == ALL_KINDS
    for e in events:
        for key in ("slug", "title", "description", "startDate", "endDate", "createdAt", "updatedAt"):
            assert isinstance(e[key], str) and e[key]
        assert {t["id"] for t in e["tags"]} <= tag_ids
        assert isinstance(e["liquidity"], float) and isinstance(e["volume"], float)
        assert e["negRisk"] == (u300.event_kind(e["id"]) in NEG_RISK_KINDS)
        assert e["negRiskAugmented"] == (u300.event_kind(e["id"]) == "augmented")
        if e["negRisk"]:
            assert re.fullmatch(r"0x[0-9a-f]{64}", e["negRiskMarketID"])
            assert len({m["endDate"] for m in e["markets"]}) == 1
        for m in e["markets"]:
            assert re.fullmatch(r"0x[0-9a-f]{64}", m["conditionId"])
            assert json.loads(m["outcomes"]) == ["Yes", "No"]
            if m["active"]:
                prices = [float(x) for x in json.loads(m["outcomePrices"])]
                assert abs(sum(prices) - 1) < 1e-9
            else:  # as the venue lists unnamed outcomes: no prices, an empty book
                assert "outcomePrices" not in m and (m["bestBid"], m["bestAsk"]) == (0, 1)
            clob = json.loads(m["clobTokenIds"])
            assert len(clob) == 2 and all(t.isdigit() and len(t) > 60 for t in clob)
            if m["version"] == "v2":
                assert isinstance(m["positionIds"], list) and len(m["positionIds"]) == 2
                assert set(m["positionIds"]).isdisjoint(clob)
                assert u300.book(clob[0]) is None  # the legacy ids are not the ones to use
            else:
                assert "positionIds" not in m
            y, n = tokens_of(m)
            yb, nb = u300.book(y), u300.book(n)
            assert yb is not None and nb is not None
            assert bool(yb.bids and yb.asks and nb.bids and nb.asks) == m["active"]  # unnamed: an empty book
            assert isinstance(m["liquidity"], str) and isinstance(m["liquidityNum"], float)
            assert isinstance(m["volume"], str) and isinstance(m["volumeNum"], float)
            assert isinstance(m["groupItemThreshold"], str)
            assert DATE_RE.search(m["description"]), m["description"]
            assert m["negRisk"] == e["negRisk"] and m["enableOrderBook"] and m["acceptingOrders"]
            assert m["negRiskOther"] == (e["negRiskAugmented"] and m["groupItemTitle"] == "Other")
            if m["active"]:
                assert m["bestBid"] < m["bestAsk"]
            else:  # only the unnamed outcomes and the "Other" of augmented events are listed inactive
                assert e["negRiskAugmented"] and (is_placeholder(m["groupItemTitle"]) or m["negRiskOther"])
    assert set(u300.token_ids()) == {t for e in events for m in e["markets"] if m["active"] for t in tokens_of(m)}


def test_event_kinds_follow_grouping_conventions(u300: Universe) -> None:
    for e in u300.gamma_events():
        kind = u300.event_kind(e["id"])
        labels = [m["groupItemTitle"] for m in e["markets"]]
        if kind == "timeframe":
            assert len(e["markets"]) >= 2
            for m in e["markets"]:
                assert re.fullmatch(r"[A-Z][a-z]+ \d{1,2}(, \d{4})?", m["groupItemTitle"])
                assert m["question"].endswith("?") and " by " in m["question"]
                month_day = m["groupItemTitle"].split(",")[0]
                assert month_day in m["question"] and month_day in m["description"]
            assert len({m["endDate"] for m in e["markets"]}) == len(e["markets"])
        elif kind == "threshold":
            values = [parse_value(x) for x in labels]
            assert len(set(values)) == len(values)
            q = e["markets"][0]["question"]
            assert any(w in q for w in ABOVE_WORDS + BELOW_WORDS)
        elif kind == "candidate":
            assert len(set(labels)) == len(labels)
            placeholders = [x for x in labels if is_placeholder(x)]
            if placeholders:
                assert "Other" not in labels
                for m in e["markets"]:
                    if is_placeholder(m["groupItemTitle"]):
                        assert m["bestBid"] == 0.01 and m["active"]
        elif kind == "augmented":
            assert len(set(labels)) == len(labels) and len({m["endDate"] for m in e["markets"]}) == 1
            unnamed = [m for m in e["markets"] if is_placeholder(m["groupItemTitle"])]
            assert 1 <= len(unnamed) <= 3 and not any(m["active"] for m in unnamed)
            assert all(m["active"] != (is_placeholder(m["groupItemTitle"]) or m["negRiskOther"]) for m in e["markets"])
            assert [m["negRiskOther"] for m in e["markets"]] == [x == "Other" for x in labels]
        elif kind == "count":
            assert all(COUNT_LABEL.fullmatch(x) for x in labels), labels
            exact = [int(x) for x in labels if x.isdigit()]
            assert len(exact) >= 3 and exact == list(range(exact[0], exact[0] + len(exact)))
            assert labels[-1].endswith(("+", " or more"))  # an open top: the buckets are exhaustive
            assert labels[0] == "0" or labels[0].startswith("<") or labels[0].endswith(" or fewer")
        elif kind == "range":
            assert all(RANGE_LABEL.fullmatch(x) for x in labels), labels
            assert labels[0].startswith("<") and labels[-1].endswith("+")
            bounds = [tuple(int(v.rstrip("M")) for v in x.split("-")) for x in labels[1:-1]]
            assert int(labels[0][1:].rstrip("M")) == bounds[0][0]
            assert int(labels[-1][:-1].rstrip("M")) in (bounds[-1][1], bounds[-1][1] + 1)
        elif kind == "multi":
            assert len(e["markets"]) >= 3 and len(set(labels)) == len(labels)
            assert len({m["endDate"] for m in e["markets"]}) == 1
            assert not any(is_placeholder(x) for x in labels)
        else:
            assert kind == "single" and len(e["markets"]) == 1 and labels == [""]


# ------------------------------------------------------------------ books and the walk
def check_mirror(u: Universe, yes: str, no: str) -> None:
    yb, nb = u.book(yes), u.book(no)
    assert yb is not None and nb is not None
    assert sorted(nb.bids) == sorted((round(1 - p, 2), s) for p, s in yb.asks)
    assert sorted(nb.asks) == sorted((round(1 - p, 2), s) for p, s in yb.bids)
    for p, s in yb.bids + yb.asks:
        assert s > 0 and 0.01 <= p <= 0.99 and abs(p * 100 - round(p * 100)) < 1e-9
    bb, ba = best(yb)
    assert ba - bb >= 0.01 - 1e-9


def test_no_book_mirrors_yes(u300: Universe) -> None:
    for e in u300.gamma_events():
        for m in e["markets"]:
            if is_open(m):
                check_mirror(u300, *tokens_of(m))


def test_price_changes_replay_onto_snapshots() -> None:
    u = Universe(seed=8, n_events=60)
    local: dict[str, dict[str, dict[float, float]]] = {}
    for t in u.token_ids():
        b = u.book(t)
        assert b is not None
        local[t] = {"BUY": dict(b.bids), "SELL": dict(b.asks)}
    changes = u.step(5000)
    assert len(changes) == 5000
    for pc in changes:
        assets = {c.asset_id for c in pc.changes}
        assert len(assets) == 2  # both tokens of the market
        for c in pc.changes:
            side = local[c.asset_id][c.side]
            if c.size == 0:
                side.pop(c.price, None)
            else:
                side[c.price] = c.size
            lb = local[c.asset_id]
            assert max(lb["BUY"]) == c.best_bid and min(lb["SELL"]) == c.best_ask
    for t, sides in local.items():
        b = u.book(t)
        assert b is not None
        assert sides["BUY"] == dict(b.bids) and sides["SELL"] == dict(b.asks)


def test_walk_keeps_ground_truth_and_margins() -> None:
    u = Universe(seed=4, n_events=300)
    gt0 = u.ground_truth()
    assert gt0.profitable == gt0.injected and len(gt0.profitable) == 15
    injected_kinds = {gt0.covers[c].kind for c in gt0.profitable}
    assert len(injected_kinds) >= 4
    moves = 0
    for _ in range(10):
        moves += len(u.step(5000))
        for cid, cov in gt0.covers.items():
            cost = cost_from_books(u, cov.legs)
            if cid in gt0.profitable:
                assert cost < cov.payout - 1e-9
            else:
                assert cost >= cov.payout + 0.01 - 1e-9, (cov.kind, cost, cov.payout)
    assert moves == 50_000
    gt1 = u.ground_truth()
    assert gt1.profitable == gt0.profitable and gt1.covers.keys() == gt0.covers.keys()
    for cid, cov in gt1.covers.items():
        assert cov.cost == pytest.approx(cost_from_books(u, cov.legs), abs=1e-9)
    for e in u.gamma_events()[:80]:
        for m in e["markets"]:
            if is_open(m):
                check_mirror(u, *tokens_of(m))


def test_step_speed() -> None:
    u = Universe(seed=2, n_events=300)
    u.step(20_000)
    t0 = time.perf_counter()
    n = len(u.step(100_000))
    rate = n / (time.perf_counter() - t0)
    assert n == 100_000
    assert rate > 30_000, f"{rate:.0f} moves/s"  # goal 100k/s; loose bound for a shared CI box


# ------------------------------------------------------------------ ground truth vs structure
def test_ground_truth_matches_brief_definitions(u300: Universe) -> None:
    gt = u300.ground_truth()
    expected = expected_covers(u300)
    assert set(gt.covers) == set(expected)
    for cid, (kind, legs, payout) in expected.items():
        cov = gt.covers[cid]
        assert cov.kind is kind and cov.payout == payout
        assert cov.guaranteed == (kind is not CoverKind.LLM)
        assert [lg.market_id for lg in cov.legs] == [lg.market_id for lg in legs]
        assert [lg.token_id for lg in cov.legs] == [lg.token_id for lg in legs]
        cost = cost_from_books(u300, cov.legs)
        assert cov.cost == pytest.approx(cost, abs=1e-9)
        assert (cid in gt.profitable) == (cost < payout - 1e-9)
    # ladder arithmetic: n markets -> n(n-1)/2 covers
    per_event = Counter(lg.event_id for cov in gt.covers.values()
                        if cov.kind in (CoverKind.TIMEFRAME, CoverKind.THRESHOLD) for lg in cov.legs[:1])
    for e in u300.gamma_events():
        if u300.event_kind(e["id"]) == "timeframe":
            n = len(e["markets"])
            assert per_event[e["id"]] == n * (n - 1) // 2
        elif u300.event_kind(e["id"]) == "threshold":  # a ladder per direction
            up = sum(1 for m in e["markets"] if any(w in m["question"] for w in ABOVE_WORDS))
            down = len(e["markets"]) - up
            assert per_event[e["id"]] == up * (up - 1) // 2 + down * (down - 1) // 2
    counts = Counter(c.kind for c in gt.covers.values())
    assert all(counts[k] > 0 for k in CoverKind)
    assert gt.implications == {(p, c) for p, c, _ in u300.relations()}
    assert {s for _, _, s in u300.relations()} == {"single", "candidate", "dated"}


def test_related_events_share_title_words(u300: Universe) -> None:
    titles = {e["id"]: e["title"] for e in u300.gamma_events()}
    stop = {"will", "the", "win", "winner", "by...?"}
    for p, c, _ in u300.relations():
        wp = {w.strip("?.,").lower() for w in titles[p].split()} - stop
        wc = {w.strip("?.,").lower() for w in titles[c].split()} - stop
        assert len({w for w in wp & wc if len(w) >= 3}) >= 2, (titles[p], titles[c])


# ------------------------------------------------------------------ oracle
def test_oracle_answers_from_ground_truth() -> None:
    u = Universe(seed=9, n_events=200)
    titles = {e["id"]: e["title"] for e in u.gamma_events()}
    distractors = [t for i, t in titles.items() if all(i not in (p, c) for p, c, _ in u.relations())][:20]
    for p, c, _ in u.relations():
        cands = distractors + [titles[p], titles[c]]
        ans = u.answer_implications(titles[c], cands)
        assert [x["title"] for x in ans["implied_by"]] == [titles[p]]
        assert all(x["explanation"] and x["counterexample_attempt"] for x in ans["implied_by"])
        assert ans["implies"] == []
        ans = u.answer_implications(titles[p], cands)
        assert [x["title"] for x in ans["implies"]] == [titles[c]] and ans["implied_by"] == []
        # only titles that were shown
        assert u.answer_implications(titles[c], distractors) == {"implied_by": [], "implies": []}
    for t in distractors:
        assert u.answer_implications(t, distractors + list(titles.values())[:30]) == {"implied_by": [], "implies": []}
    assert u.answer_implications("No such event", distractors) == {"implied_by": [], "implies": []}


def test_oracle_error_rate_gives_wrong_answers() -> None:
    u = Universe(seed=9, n_events=200)
    titles = {e["id"]: e["title"] for e in u.gamma_events()}
    pool = list(titles.values())[:40]
    wrong = 0
    for p, c, _ in u.relations():
        cands = pool + [titles[p]]
        truth = u.answer_implications(titles[c], cands)
        noisy = u.answer_implications(titles[c], cands, error_rate=1.0)
        wrong += noisy != truth
        listed = {x["title"] for x in noisy["implied_by"] + noisy["implies"]}
        assert listed <= set(cands)
    assert wrong == len(u.relations())


# ------------------------------------------------------------------ lifecycle
def assert_margins(u: Universe) -> None:
    gt = u.ground_truth()
    for cid, cov in gt.covers.items():
        if cid not in gt.profitable:
            assert cov.cost >= cov.payout + 0.01 - 1e-9


def test_lifecycle_add_events_and_markets() -> None:
    u = Universe(seed=6, n_events=150)
    max_event = max(int(e["id"]) for e in u.gamma_events())
    max_market = max(int(m["id"]) for e in u.gamma_events() for m in e["markets"])
    v0 = u.version
    new_ids = u.add_events(6)
    assert len(new_ids) == 6 and [int(i) for i in new_ids] == sorted(int(i) for i in new_ids)
    assert int(new_ids[0]) > max_event and u.version > v0
    events = {e["id"]: e for e in u.gamma_events()}
    assert set(new_ids) <= set(events)
    assert min(int(m["id"]) for i in new_ids for m in events[i]["markets"]) > max_market
    assert_margins(u)

    ladder = next(e for e in u.gamma_events() if u.event_kind(e["id"]) == "timeframe" and not e["closed"])
    n = len([m for m in ladder["markets"] if not m["closed"]])
    before_updated, v1 = ladder["updatedAt"], u.version
    mid = u.add_market(ladder["id"])
    assert u.version > v1
    after = {e["id"]: e for e in u.gamma_events()}[ladder["id"]]
    assert after["updatedAt"] != before_updated and mid in [m["id"] for m in after["markets"]]
    assert int(mid) > max(int(m["id"]) for e in events.values() for m in e["markets"])
    new_market = next(m for m in after["markets"] if m["id"] == mid)
    assert new_market["endDate"] > max(m["endDate"] for m in ladder["markets"])
    gt = u.ground_truth()
    tf = [c for c in gt.covers.values() if c.kind is CoverKind.TIMEFRAME and c.legs[0].event_id == ladder["id"]]
    assert len(tf) == (n + 1) * n // 2
    assert sum(1 for c in tf if c.legs[0].market_id == mid) == n
    assert set(expected_covers(u)) == set(gt.covers)
    assert_margins(u)

    cand = next(e for e in u.gamma_events() if u.event_kind(e["id"]) == "candidate")
    mid2 = u.add_market(cand["id"])
    all_no = [c for c in u.ground_truth().covers.values()
              if c.kind is CoverKind.ALL_NO and c.legs[0].event_id == cand["id"]]
    assert len(all_no) == 1 and mid2 in {lg.market_id for lg in all_no[0].legs}
    assert_margins(u)
    single = next(e for e in u.gamma_events() if u.event_kind(e["id"]) == "single")
    with pytest.raises(ValueError):
        u.add_market(single["id"])


def test_lifecycle_close_market_and_edit_title() -> None:
    u = Universe(seed=6, n_events=150)
    gt0 = u.ground_truth()
    target = gt0.covers[sorted(gt0.profitable)[0]]
    m = target.legs[0]
    v0 = u.version
    info = u.close_market(m.market_id)
    assert info["id"] == m.market_id and info["assets_ids"] == [m.yes_token, m.no_token]
    assert info["winning_asset_id"] == m.no_token and info["winning_outcome"] == "No"
    assert info["market"].startswith("0x") and u.version > v0
    gt1 = u.ground_truth()
    assert all(m.market_id not in {lg.market_id for lg in c.legs} for c in gt1.covers.values())
    assert target.legs and cover_id(target.kind, target.legs) not in gt1.covers
    assert m.yes_token not in u.token_ids() and u.book(m.yes_token) is None
    gm = next(x for e in u.gamma_events() for x in e["markets"] if x["id"] == m.market_id)
    assert gm["closed"] and json.loads(gm["outcomePrices"]) == ["0", "1"] and not gm["acceptingOrders"]
    assert set(expected_covers(u)) == set(gt1.covers)
    assert_margins(u)
    # closing a whole candidate event closes the event; its covers are gone
    cand = next(e for e in u.gamma_events() if u.event_kind(e["id"]) == "candidate" and not e["closed"])
    for x in cand["markets"]:
        u.close_market(x["id"], winning="YES" if x is cand["markets"][0] else "NO")
    closed = {e["id"]: e for e in u.gamma_events()}[cand["id"]]
    assert closed["closed"]
    assert all(lg.event_id != cand["id"] for c in u.ground_truth().covers.values() for lg in c.legs)
    assert_margins(u)
    # the walk still never changes what is profitable
    prof = u.ground_truth().profitable
    u.step(20_000)
    assert u.ground_truth().profitable == prof
    # title edits bump version and updatedAt, and the oracle follows the new title
    e = u.gamma_events()[0]
    v1 = u.version
    u.edit_title(e["id"], "A brand new title?")
    e2 = {x["id"]: x for x in u.gamma_events()}[e["id"]]
    assert e2["title"] == "A brand new title?" and e2["updatedAt"] != e["updatedAt"] and u.version > v1
    with pytest.raises(ValueError):
        u.edit_title(u.gamma_events()[1]["id"], "A brand new title?")


def test_set_quote_makes_a_cover_profitable_and_sticks() -> None:
    u = Universe(seed=6, n_events=150)
    gt0 = u.ground_truth()
    cov = next(c for cid, c in gt0.covers.items() if c.kind is CoverKind.TIMEFRAME and cid not in gt0.profitable)
    later, earlier = cov.legs  # YES(later) + NO(earlier)
    # earlier date bid above the later date's ask: buying both costs < 1
    pc = u.set_quote(later.market_id, 0.30, 0.31, size=250.0)
    u.set_quote(earlier.market_id, 0.40, 0.42, size=80.0)
    assert any(c.asset_id == later.yes_token and c.best_bid == 0.30 and c.best_ask == 0.31 for c in pc.changes)
    assert any(c.asset_id == later.no_token and c.best_bid == 0.69 and c.best_ask == 0.70 for c in pc.changes)
    yb = u.book(later.yes_token)
    assert yb is not None and best(yb) == (0.30, 0.31) and dict(yb.asks)[0.31] == 250.0
    gt1 = u.ground_truth()
    assert cov.id in gt1.profitable and gt1.covers[cov.id].cost == pytest.approx(0.31 + 0.60)
    u.step(20_000)
    gt2 = u.ground_truth()
    assert gt2.profitable == gt1.profitable
    assert best(u.book(later.yes_token)) == (0.30, 0.31)  # type: ignore[arg-type]


def test_random_lifecycle_keeps_invariants() -> None:
    """A MarketActivity-like mix of operations between walks: nothing but injected
    mispricings is ever profitable, margins hold, and the walk never flips profitability."""
    import random

    u = Universe(seed=13, n_events=150)
    rng = random.Random(1)
    for _ in range(40):
        roll = rng.random()
        if roll < 0.3:
            u.add_events(rng.randint(1, 3))
        elif roll < 0.6:
            events = [e for e in u.gamma_events() if not e["closed"] and u.event_kind(e["id"]) in GROWABLE]
            u.add_market(rng.choice(events)["id"])
        else:
            markets = [m for e in u.gamma_events() for m in e["markets"] if not m["closed"]]
            u.close_market(rng.choice(markets)["id"], rng.choice(["NO", "NO", "YES"]))
        gt = u.ground_truth()
        assert gt.profitable <= gt.injected
        assert_margins(u)
        u.step(1000)
        assert u.ground_truth().profitable == gt.profitable
    assert set(expected_covers(u)) == set(u.ground_truth().covers)


# ------------------------------------------------------------------ real shapes: exclusivity only from negRisk
def covers_by_event(u: Universe) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in u.ground_truth().covers.values():
        for eid in {lg.event_id for lg in c.legs}:
            out.setdefault(eid, []).append(c)
    return out


def events_of(u: Universe, kind: str) -> list[dict]:
    return [e for e in u.gamma_events() if u.event_kind(e["id"]) == kind and not e["closed"]]


def test_augmented_events_have_all_no_over_named_outcomes_only(u300: Universe) -> None:
    gt = u300.ground_truth()
    by_event = covers_by_event(u300)
    inactive = {m["id"] for e in u300.gamma_events() for m in e["markets"] if not m["active"]}
    assert inactive
    assert not any(lg.market_id in inactive for c in gt.covers.values() for lg in c.legs)
    augmented = events_of(u300, "augmented")
    assert len(augmented) >= 5 and any(m["negRiskOther"] for e in augmented for m in e["markets"])
    for e in augmented:
        covers = by_event.get(e["id"], [])
        assert [c.kind for c in covers] == [CoverKind.ALL_NO]  # never an ALL_YES, no ladder
        named = [m["id"] for m in e["markets"] if is_open(m) and not is_placeholder(m["groupItemTitle"])]
        assert [lg.market_id for lg in covers[0].legs] == named and covers[0].payout == len(named) - 1
        assert all(lg.side is Side.NO for lg in covers[0].legs)


def test_count_and_range_buckets_are_exclusive_and_exhaustive(u300: Universe) -> None:
    by_event = covers_by_event(u300)
    buckets = events_of(u300, "count") + events_of(u300, "range")
    assert len(events_of(u300, "count")) >= 3 and len(events_of(u300, "range")) >= 3
    for e in buckets:
        ids = [m["id"] for m in e["markets"]]
        covers = {c.kind: c for c in by_event[e["id"]]}
        assert set(covers) == {CoverKind.ALL_NO, CoverKind.ALL_YES}, e["title"]  # numeric labels, no ladder
        assert [lg.market_id for lg in covers[CoverKind.ALL_YES].legs] == ids
        assert [lg.market_id for lg in covers[CoverKind.ALL_NO].legs] == ids
        assert covers[CoverKind.ALL_NO].payout == len(ids) - 1 and covers[CoverKind.ALL_YES].payout == 1
    # magnitudes and plain counts both occur among range buckets
    big = Universe(seed=3, n_events=1000)
    labels = [m["groupItemTitle"] for e in events_of(big, "range") for m in e["markets"]]
    assert any(x.endswith("M+") for x in labels) and any(re.fullmatch(r"\d+\+", x) for x in labels)


def test_multi_winner_events_have_no_cover_and_no_relation(u300: Universe) -> None:
    by_event = covers_by_event(u300)
    related = {i for p, c, _ in u300.relations() for i in (p, c)}
    multi = events_of(u300, "multi")
    assert len(multi) >= 5
    for e in multi:
        assert not e["negRisk"] and not e["negRiskAugmented"]
        assert e["id"] not in by_event and e["id"] not in related
        if "Top 4" in e["title"] or "relegated" in e["title"]:  # several Yes are expected, not one
            assert sum((m["bestBid"] + m["bestAsk"]) / 2 for m in e["markets"]) > 1.2


def test_every_all_yes_is_over_an_exhaustive_event() -> None:
    injected_all_yes = 0
    for seed in (1, 2, 3, 4):
        u = Universe(seed=seed, n_events=200, mispriced_fraction=0.1)
        events = {e["id"]: e for e in u.gamma_events()}
        gt = u.ground_truth()
        for cid, c in gt.covers.items():
            if c.kind is CoverKind.ALL_YES:
                e = events[c.legs[0].event_id]
                assert exhaustive(e) and u.event_kind(e["id"]) in ("candidate", "count", "range")
                injected_all_yes += cid in gt.injected
    assert injected_all_yes >= 2


def test_naming_unnamed_outcomes_changes_the_all_no_basket() -> None:
    u = Universe(seed=6, n_events=200)
    e0 = next(e for e in events_of(u, "augmented") if not any(m["negRiskOther"] for m in e["markets"]))
    eid = e0["id"]
    prof = u.ground_truth().profitable
    seen: set[str] = set()
    for _ in range(12):
        before = {e["id"]: e for e in u.gamma_events()}[eid]
        basket = [lg.market_id for c in covers_by_event(u)[eid] for lg in c.legs]
        books = {t: ({}, {}) for x in before["markets"] if not x["active"] for t in tokens_of(x)}
        for t, (bids, asks) in books.items():
            book = u.book(t)
            assert book is not None and not book.bids and not book.asks
        mid = u.add_market(eid)
        after = {e["id"]: e for e in u.gamma_events()}[eid]
        m = next(x for x in after["markets"] if x["id"] == mid)
        covers = covers_by_event(u)[eid]
        assert [c.kind for c in covers] == [CoverKind.ALL_NO]
        new_basket = [lg.market_id for lg in covers[0].legs]
        old = next((x for x in before["markets"] if x["id"] == mid), None)
        if old is not None:  # an unnamed outcome was named: same market and tokens, now tradeable
            seen.add("named")
            assert not old["active"] and is_placeholder(old["groupItemTitle"])
            assert m["active"] and not is_placeholder(m["groupItemTitle"]) and m["groupItemTitle"] in m["question"]
            assert m["clobTokenIds"] == old["clobTokenIds"] and m["conditionId"] == old["conditionId"]
            assert sorted(new_basket) == sorted(basket + [mid])
            assert set(tokens_of(m)) <= set(u.token_ids())
            check_mirror(u, *tokens_of(m))
            for pc in u.step(0):  # the next step streams the filled book to whoever held the empty one
                for c in pc.changes:
                    bids, asks = books[c.asset_id]
                    (bids if c.side == "BUY" else asks)[c.price] = c.size
            for t in tokens_of(m):
                book = u.book(t)
                assert book is not None and books[t] == (dict(book.bids), dict(book.asks))
        elif m["negRiskOther"]:  # "Other" is listed inactive too: no quote, in no cover
            seen.add("other")
            assert not m["active"] and m["groupItemTitle"] == "Other" and new_basket == basket
        else:  # one more unnamed outcome: inactive, in no cover
            seen.add("unnamed")
            assert not m["active"] and is_placeholder(m["groupItemTitle"]) and new_basket == basket
            book = u.book(tokens_of(m)[0])
            assert book is not None and not book.bids and not book.asks and tokens_of(m)[0] not in u.token_ids()
        assert sum(x["negRiskOther"] for x in after["markets"]) <= 1
        assert set(expected_covers(u)) == set(u.ground_truth().covers)
        assert_margins(u)
    assert seen == {"named", "other", "unnamed"}
    assert u.ground_truth().profitable == prof
    u.step(5000)
    assert u.ground_truth().profitable == prof and set(expected_covers(u)) == set(u.ground_truth().covers)


def test_all_yes_needs_every_outcome_listed_and_none_won() -> None:
    u = Universe(seed=6, n_events=200)
    by_event = covers_by_event(u)
    # a Yes resolution ends the ALL_YES basket; the ALL_NO over the rest stays
    e = next(e for e in events_of(u, "count") if len(e["markets"]) >= 4)
    assert CoverKind.ALL_YES in {c.kind for c in by_event[e["id"]]}
    u.close_market(e["markets"][0]["id"], winning="YES")
    kinds = [c.kind for c in covers_by_event(u)[e["id"]]]
    assert kinds == [CoverKind.ALL_NO]
    # active placeholders: closing them all does not make the event exhaustive
    cand = next(e for e in events_of(u, "candidate")
                if any(is_placeholder(m["groupItemTitle"]) for m in e["markets"])
                and sum(not is_placeholder(m["groupItemTitle"]) for m in e["markets"]) >= 2)
    for m in cand["markets"]:
        if is_placeholder(m["groupItemTitle"]):
            u.close_market(m["id"])
    assert [c.kind for c in covers_by_event(u)[cand["id"]]] == [CoverKind.ALL_NO]
    # a neg-risk event listing every outcome keeps its ALL_YES when a market resolves No
    full = next(e for e in events_of(u, "candidate") if exhaustive(e) and len(e["markets"]) >= 4)
    u.close_market(full["markets"][-1]["id"])
    kinds = sorted(c.kind.value for c in covers_by_event(u)[full["id"]])
    assert kinds == ["all_no", "all_yes"]
    assert set(expected_covers(u)) == set(u.ground_truth().covers)
    assert_margins(u)


def test_bucket_and_single_events_refuse_new_markets(u300: Universe) -> None:
    for kind in ("count", "range", "single"):
        with pytest.raises(ValueError):
            u300.add_market(events_of(u300, kind)[0]["id"])
    multi = events_of(u300, "multi")[0]
    u = Universe(seed=3, n_events=300)
    mid = u.add_market(multi["id"])
    e = {x["id"]: x for x in u.gamma_events()}[multi["id"]]
    assert mid == e["markets"][-1]["id"] and e["markets"][-1]["active"] and not e["negRisk"]
    assert multi["id"] not in covers_by_event(u)
