"""The whole flow with every poison knob of the stand-ins on (issue 14: never die, never lie).

Hostile but well-formed-enough traffic is mixed into a normal universe: poison Gamma records on
every first listing page (standins/gamma_server.py `POISON_KINDS`), poison CLOB frames for
subscribed and unknown tokens, each followed by the true book (standins/clob_server.py
`CLOB_POISON_KINDS`), and poison LLM replies around the true answers (standins/llm_server.py
`LLM_POISON_KINDS`). The flow must keep running (no thread dies), count the rejections in the
monitoring JSON's `errors` section, and converge to the universe's ground truth: every cover,
every published field, no portfolio that is not one.
"""

from __future__ import annotations

import pytest

import operators.llm_step as llm_step
from connectors.redis.metrics_writer import MetricsWriter, read_metrics
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from polyalphascan_app.monitoring import performance_report
from standins.clob_server import CLOB_POISON_KINDS, ClobFaults
from standins.gamma_server import POISON_KINDS, GammaFaults
from standins.llm_server import LLM_POISON_KINDS, LLMFaults
from tests.test_end_to_end import PREFIX, RunningFlow, live, wait_converged, wait_for, world  # noqa: F401

pytestmark = pytest.mark.slow

#: The rejection counters the hardened code keeps for the poison injected here, by metric group
#: of the monitoring JSON's `errors` section (what each one counts: the comment).
EXPECTED_ERRORS: dict[str, set[str]] = {
    # ids "²" and 5,000 digits, markets ["x"]: the record is skipped, the rest of the page delivered
    "poller": {"errors_parse", "rejected_id_jump"},  # id 10**18: delivered, never the watermark
    # size inf/NaN/-5, side "XYZ", timestamps 2^64+1 and year 2100, 20,000 levels in one frame
    "ws": {"rejected_size", "rejected_side", "rejected_timestamp", "rejected_depth"},
    # 200,000 items (item cap); a 5 MB reply (refused unread, the group asked again later);
    # 100 unknown ids and injected items naming no candidate id
    "llm": {"rejected_too_many_items", "rejected_reply_too_large", "failures_reply_too_large",
            "rejected_unknown_id"},
}


def _errors(client) -> dict[str, dict[str, int]]:  # noqa: ANN001
    return performance_report(client, PREFIX)["errors"]


def test_poison_everywhere_flow_keeps_running_counts_and_converges(world, redis_server: EmbeddedRedis,  # noqa: ANN001, F811
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    standins, client = world
    # a group whose reply was refused is asked again after RETRY_BASE_S (30 s in production)
    monkeypatch.setattr(llm_step, "RETRY_BASE_S", 0.5)
    # poisoned Gamma records change some groups on every poll (a few per second here, never
    # 30 s apart as in production): the LLM step's settling wait would hold a due retry back
    # for SETTLE_MAX_S (60 s), the whole window this test gives the flow to converge
    monkeypatch.setattr(llm_step, "SETTLE_MAX_S", 2.0)
    standins.clob.pause()  # prices still, so the ground truth is fixed; poison runs regardless
    standins.gamma.faults = GammaFaults(poison_rate=1.0, seed=5)
    standins.clob.faults = ClobFaults(poison_rate=0.3, poison_restore_s=0.05, seed=6)
    standins.llm.faults = LLMFaults(rate_many_items=0.15, rate_huge_reply=0.15, rate_unknown_titles=0.15,
                                    rate_injection=0.15, seed=7)
    running = RunningFlow(standins, redis_server.url)
    metrics = MetricsWriter(redis_server.url, PREFIX, running.scope.metrics, interval=0.2).start()
    try:
        # every kind of poison went out at least once ...
        wait_for(lambda: all(standins.gamma.stats.faults[f"poison_{k}"] >= 2 for k in POISON_KINDS)
                 and all(standins.clob.stats.faults[f"poison_{k}"] >= 2 for k in CLOB_POISON_KINDS)
                 and all(standins.llm.stats.outcomes[f"poison_{k}"] >= 1 for k in LLM_POISON_KINDS),
                 40, "every poison kind injected")
        # ... and its rejection counted in the monitoring JSON
        report: list[str] = []

        def counted() -> bool:
            errors = _errors(client)
            missing = {g: sorted(c - set(errors.get(g, {}))) for g, c in EXPECTED_ERRORS.items()}
            report[:] = [f"missing {missing}, have {errors}"]
            return not any(missing.values())
        try:
            wait_for(counted, 30, "the poison's rejections in the errors section")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {report}") from None

        # the CLOB poison stops; every poisoned book has been restored by a true snapshot
        standins.clob.faults.poison_rate = 0.0
        wait_for(lambda: standins.clob.poison_pending() == 0, 10, "the restoring book snapshots")
        # Gamma and LLM poison stay on: the flow converges through them
        wait_converged(standins, client, 60, "the universe's covers, priced, under poison")
        got = live(client)
        assert not any(leg["token_id"].startswith("poison-") or leg["market_id"].startswith("9000")
                       for p in got.values() for leg in p["legs"])
        assert {c for c, p in got.items() if p["profit"] > 1e-9} == standins.universe.ground_truth().profitable

        # no thread died: the flow still runs, every *_alive gauge is 1
        assert running.thread.is_alive() and running.error is None
        wait_for(lambda: bool(performance_report(client, PREFIX)["health"]), 10, "the health section")
        health = performance_report(client, PREFIX)["health"]
        assert {(g, k) for g, gauges in health.items() for k, v in gauges.items() if v != 1} == set(), health
        assert "portfolio_writer_alive" in health.get("sink", {}), health

        # what was rejected, as counted; what went through is the ground truth above
        errors = _errors(client)
        keys = RedisKeys(PREFIX)
        poller = read_metrics(client, keys, "poller")
        assert poller.get("decoded_tolerantly", 0) >= 1  # the \ud800 title did not cost its page
        # frames about unsubscribed assets are counted (not a rejected_* name: not in `errors`)
        assert read_metrics(client, keys, "ws").get("unknown_token", 0) >= 1
        # the injected items (and unknown ids) named no candidate: ignored, counted
        assert read_metrics(client, keys, "llm").get("unmatched_titles", 0) >= standins.llm.stats.outcomes[
            "poison_injection"]
        # (a crossed book removes a published portfolio until it uncrosses: asserted where it is
        # deterministic, tests/test_join_lifecycle.py; here a crossed book may land before any
        # cover on its token is priced, so only the convergence above speaks for it)
        assert errors["poller"]["errors_parse"] >= 3  # "²", 5,000 digits, markets ["x"] on the first poll
        assert errors["poller"]["rejected_id_jump"] >= 1
        def refused_counted() -> bool:  # each 5 MB reply refused once (the group is asked again later)
            llm = _errors(client)["llm"]
            huge = standins.llm.stats.outcomes["poison_huge_reply"]
            return llm.get("rejected_reply_too_large") == llm.get("failures_reply_too_large") == huge
        wait_for(refused_counted, 20, "every refused reply counted once")
        for group, counters in EXPECTED_ERRORS.items():
            for name in counters:
                assert errors[group][name] >= 1, (group, name, errors)
    finally:
        running.stop()
        metrics.stop()
    assert running.error is None
