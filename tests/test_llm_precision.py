"""The LLM path end to end on the labelled real-title evaluation set (tests/fixtures/llm_eval):
retrieval, discovery, claim checks, verification rounds and pair expansion against the
stand-in model with 20 % wrong answers on every query and obedience to instructions in titles.
The published covers meet the issue's goals, and verification is what meets them."""

from __future__ import annotations

import pytest

from bench.llm_precision import EVAL_SET, measure
from standins.labelled_oracle import load_pairs


@pytest.fixture(scope="module")
def outcomes():  # noqa: ANN201
    by_name = {o.name: o for o in measure(load_pairs(EVAL_SET), error_rate=0.2, injected=10, seed=1)}
    return by_name


def test_verified_llm_covers_are_precise_and_keep_recall(outcomes) -> None:  # noqa: ANN001
    on = outcomes["verification on"]
    assert on.true_total >= 80 and on.covers >= 70
    assert on.false_share <= 0.02
    assert on.recall >= 0.90
    assert on.injected_covers == 0 and on.tier1 == 0


def test_without_verification_the_wrong_answers_are_published(outcomes) -> None:  # noqa: ANN001
    off, none = outcomes["verification off"], outcomes["no defences"]
    assert off.false_share >= 0.10  # one wrong claim in five or so, published as said
    assert off.verify_calls == 0 and off.injected_covers == 0  # screening and the cap hold the injections
    assert none.injected_covers > 100 and none.false_share > 0.5  # and without them the injections flood in
    on = outcomes["verification on"]
    assert on.discovery_calls == off.discovery_calls and on.verify_calls >= 3 * on.implications  # 3 rounds at least
