"""The rule covers on recorded real Gamma events (tests/fixtures/gamma_real, sources in its
README) against covers labelled by hand (expected_covers.json, each with why): no false
guaranteed cover, and every labelled one found."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from connectors.gamma.protocol import parse_event
from operators.grouping import event_group
from operators.rule_covers import rule_covers
from polyalphascan.records import CoverKind

CORPUS = Path(__file__).parent / "fixtures" / "gamma_real"
LABELS = {k: v for k, v in json.loads((CORPUS / "expected_covers.json").read_text()).items() if not k.startswith("_")}


def recorded() -> dict[str, dict]:
    out = {}
    for path in sorted(CORPUS.glob("*.json")):
        if path.name != "expected_covers.json":
            for raw in json.loads(path.read_text()):
                out[f"{path.name}#{raw['id']}"] = raw
    return out


EVENTS = recorded()


def found(raw: dict) -> set[tuple[str, frozenset[str], frozenset[str]]]:
    specs = rule_covers(event_group(parse_event(raw)))
    assert all(s.guaranteed and s.cover_probability == 1.0 for s in specs)
    return {(s.kind.value, frozenset(leg.market_id for leg in s.legs if leg.side.value == "YES"),
             frozenset(leg.market_id for leg in s.legs if leg.side.value == "NO")) for s in specs}


def labelled(key: str) -> set[tuple[str, frozenset[str], frozenset[str]]]:
    return {(c["kind"], frozenset(c["yes"]), frozenset(c["no"])) for c in LABELS[key]["covers"]}


def test_every_recorded_event_is_labelled() -> None:
    assert set(EVENTS) == set(LABELS)
    assert len(EVENTS) >= 40


@pytest.mark.parametrize("key", sorted(EVENTS))
def test_covers_match_the_hand_labels(key: str) -> None:
    got, want = found(EVENTS[key]), labelled(key)
    if LABELS[key]["complete"]:
        assert got == want, LABELS[key]["why"]
    else:  # a partial record: exhaustiveness cannot be judged, everything else can
        assert {c for c in got if c[0] != "all_yes"} == {c for c in want if c[0] != "all_yes"}, LABELS[key]["why"]


def test_the_corpus_holds_the_shapes_that_were_false_before() -> None:
    kinds = Counter(c["kind"] for v in LABELS.values() for c in v["covers"])
    augmented = [k for k, raw in EVENTS.items() if raw.get("negRiskAugmented")]
    inactive = [k for k in augmented if any(not m.get("active") for m in EVENTS[k]["markets"])]
    multi = [k for k, raw in EVENTS.items() if not raw.get("negRisk") and len(raw["markets"]) > 1]
    assert kinds["all_no"] >= 10 and kinds["all_yes"] >= 5
    assert inactive and len(augmented) >= 5 and len(multi) >= 3


def test_every_guaranteed_cover_states_its_proof() -> None:
    raw = EVENTS["polyarb_world_cup_winner.json#30615"]
    (spec,) = rule_covers(event_group(parse_event(raw)))
    assert spec.kind is CoverKind.ALL_NO and spec.payout == 31.0
    assert "negRisk=true" in spec.explanation and "negRiskAugmented=true" in spec.explanation
    assert "'Spain'" in spec.explanation
