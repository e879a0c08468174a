"""The scanner's pure domain logic against the universe's independent ground truth:
parse → group → rule covers / pair expansion → price must find exactly the universe's
covers and exactly its profitable ones."""

from __future__ import annotations

import pytest

from connectors.gamma.protocol import parse_event
from operators.grouping import group_event
from operators.pairs import expand_implication
from operators.pricing import price_cover
from operators.rule_covers import rule_covers
from polyalphascan.records import CoverKind, GroupImplication, PriceUpdate
from standins.universe import Universe


def scan(universe: Universe) -> tuple[dict, dict]:
    groups = {}
    for raw in universe.gamma_events():
        g = group_event(parse_event(raw))
        if g is not None:
            groups[g.event_id] = g
    covers = {}
    for g in groups.values():
        for spec in rule_covers(g):
            covers[spec.id] = spec
    for premise_id, conclusion_id in universe.ground_truth().implications:
        imp = GroupImplication(premise_id, conclusion_id, "implied_by", conclusion_id)
        for spec in expand_implication(imp, groups[premise_id], groups[conclusion_id], 0.98):
            covers[spec.id] = spec
    return groups, covers


def yes_quotes(universe: Universe, covers: dict) -> dict[str, PriceUpdate]:
    out = {}
    for spec in covers.values():
        for leg in spec.legs:
            if leg.yes_token not in out:
                book = universe.book(leg.yes_token)
                bid = max(book.bids)
                ask = min(book.asks)
                out[leg.yes_token] = PriceUpdate(leg.yes_token, bid[0], ask[0], bid[1], ask[1], 1, 1)
    return out


@pytest.mark.parametrize("seed,n", [(7, 300), (11, 120)])
def test_scanner_finds_exactly_the_universe_covers(seed: int, n: int) -> None:
    universe = Universe(seed=seed, n_events=n)
    truth = universe.ground_truth()
    _groups, covers = scan(universe)
    for kind in CoverKind:
        expected = {cid for cid, c in truth.covers.items() if c.kind is kind}
        found = {cid for cid, c in covers.items() if c.kind is kind}
        assert found == expected, (kind, len(found - expected), len(expected - found))
    assert truth.covers and truth.profitable


@pytest.mark.parametrize("seed,n", [(7, 300), (11, 120)])
def test_pricing_flags_exactly_the_injected_mispricings(seed: int, n: int) -> None:
    universe = Universe(seed=seed, n_events=n)
    truth = universe.ground_truth()
    _groups, covers = scan(universe)
    quotes = yes_quotes(universe, covers)
    priced = {cid: price_cover(spec, quotes, min_coverage=0.0, max_cost=100.0) for cid, spec in covers.items()}
    assert all(q is not None for q in priced.values())
    assert {cid for cid, q in priced.items() if q.profit > 1e-9} == truth.profitable
    for cid, q in priced.items():
        assert q.cost == pytest.approx(truth.covers[cid].cost, abs=1e-9)


def test_lifecycle_changes_follow_the_universe() -> None:
    universe = Universe(seed=5, n_events=80)
    events = universe.gamma_events()
    ladder = next(e for e in events if universe.event_kind(str(e["id"])) == "timeframe")
    universe.add_market(str(ladder["id"]))
    victim = next(e for e in universe.gamma_events() if universe.event_kind(str(e["id"])) == "candidate")
    universe.close_market(str(victim["markets"][0]["id"]))
    universe.add_events(5)
    _groups, covers = scan(universe)
    assert set(covers) == set(universe.ground_truth().covers)
