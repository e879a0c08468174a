"""The Gamma stand-in driven by httpx, and the event poller against it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import orjson
import pytest
from bytewax.dataflow import Dataflow
import bytewax.operators as op
from bytewax.testing import TestingSink, run_main

from connectors.gamma.changes import PollerState, fingerprint
from connectors.gamma.client import GammaClient, GammaGaveUp
from connectors.gamma.poller import GammaPoller
from connectors.gamma.protocol import GammaError, parse_event
from connectors.gamma.source import EventSource
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import DeltaKind
from standins.gamma_server import GammaFaults, GammaServer
from standins.universe import Universe


@pytest.fixture()
def universe() -> Universe:
    return Universe(seed=21, n_events=250)


@pytest.fixture()
def gamma(universe: Universe) -> Iterator[GammaServer]:
    with GammaServer(universe) as server:
        yield server


def poller(server: GammaServer, **kw) -> GammaPoller:
    group = MetricGroup("poller")
    client = GammaClient(server.url, stop=threading.Event(), metrics=group, min_interval=0.0, backoff_base=0.01,
                         backoff_max=0.05, max_attempts=kw.pop("attempts", 5))
    return GammaPoller(client, metrics=group, **kw)


def test_keyset_pages_cursor_and_clamp(gamma: GammaServer, universe: Universe) -> None:
    ids = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 500, "order": "id", "ascending": "false", **({"after_cursor": cursor} if cursor else {})}
        body = httpx.get(f"{gamma.url}/events/keyset", params=params).json()
        pages += 1
        assert len(body["events"]) <= 100  # clamped
        ids += [int(e["id"]) for e in body["events"]]
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert ids == sorted((int(e["id"]) for e in universe.gamma_events()), reverse=True)
    assert pages == 3
    assert httpx.get(f"{gamma.url}/events/keyset", params={"offset": 5}).status_code == 422
    assert httpx.get(f"{gamma.url}/events/keyset", params={"order": "created_at"}).status_code == 422
    assert httpx.get(f"{gamma.url}/events", params={"offset": 2100}).status_code == 422
    legacy = httpx.get(f"{gamma.url}/events", params={"limit": 7, "offset": 3})
    assert len(legacy.json()) == 7 and legacy.headers["deprecation"] == "true"
    market = httpx.get(f"{gamma.url}/markets", params={"limit": 2}).json()[0]
    assert isinstance(market["outcomes"], str) and len(orjson.loads(market["clobTokenIds"])) == 2
    tag = universe.gamma_tags()[0]["slug"]
    tagged = httpx.get(f"{gamma.url}/events/keyset", params={"tag_slug": tag, "limit": 100}).json()["events"]
    assert tagged and all(any(t["slug"] == tag for t in e["tags"]) for e in tagged)
    assert httpx.get(f"{gamma.url}/status").text == "OK"


def test_first_poll_emits_the_universe_then_10_new_in_at_most_2_pages(gamma: GammaServer, universe: Universe) -> None:
    p = poller(gamma, incremental=True, full_every=100)
    first = p.poll(PollerState())
    open_ids = {str(e["id"]) for e in universe.gamma_events() if not e["closed"]}
    assert first.full and {d.event.id for d in first.deltas} == open_ids
    assert all(d.kind is DeltaKind.NEW for d in first.deltas)
    new_ids = universe.add_events(10)
    second = p.poll(first.state)
    assert not second.full and second.pages <= 2
    assert sorted(d.event.id for d in second.deltas) == sorted(new_ids)
    assert second.processed == 10
    third = p.poll(second.state)
    assert third.deltas == [] and third.pages == 1


def test_reconciliation_emits_a_closed_market_and_a_new_market_once(gamma: GammaServer, universe: Universe) -> None:
    p = poller(gamma, incremental=True, full_every=2)
    r1 = p.poll(PollerState())
    ladder = next(e for e in universe.gamma_events() if universe.event_kind(str(e["id"])) == "timeframe")
    victim = next(m for m in ladder["markets"] if not m["closed"])
    universe.close_market(str(victim["id"]))
    new_market = universe.add_market(str(ladder["id"]))
    r2 = p.poll(r1.state)  # incremental: cannot see changes inside old events
    assert r2.deltas == []
    r3 = p.poll(r2.state)  # full reconciliation
    kinds = sorted((d.kind.value, d.closed_market_ids, d.new_market_ids) for d in r3.deltas)
    assert kinds == [("changed", (), (new_market,)), ("market_closed", (str(victim["id"]),), ())]
    r4 = p.poll(p.poll(r3.state).state)  # the next full pass emits nothing again
    assert r4.full and r4.deltas == []


def test_edited_title_is_a_change(gamma: GammaServer, universe: Universe) -> None:
    p = poller(gamma, incremental=False)
    r1 = p.poll(PollerState())
    event = universe.gamma_events()[5]
    universe.edit_title(str(event["id"]), "A completely new title for testing?")
    r2 = p.poll(r1.state)
    assert [(d.kind, d.event.title) for d in r2.deltas] == [(DeltaKind.CHANGED, "A completely new title for testing?")]


def test_429_and_5xx_storms_lose_nothing(gamma: GammaServer, universe: Universe) -> None:
    gamma.faults = GammaFaults(error_rate_429=0.3, retry_after_s=0.01, error_rate_5xx=0.2, truncate_rate=0.1, seed=3)
    p = poller(gamma, incremental=True, full_every=100, attempts=30)
    r = p.poll(PollerState())
    assert {d.event.id for d in r.deltas} == {str(e["id"]) for e in universe.gamma_events() if not e["closed"]}
    assert gamma.stats.faults["429"] > 0 and gamma.stats.faults["5xx"] > 0


def test_give_up_is_a_poll_error_not_a_crash(gamma: GammaServer) -> None:
    gamma.faults = GammaFaults(error_rate_5xx=1.0)
    with pytest.raises(GammaError):
        poller(gamma, attempts=3).poll(PollerState())


def test_schema_drift_skips_only_the_bad_records(gamma: GammaServer, universe: Universe) -> None:
    gamma.faults = GammaFaults(drift_rate=0.2, seed=5)
    p = poller(gamma, incremental=False)
    r1 = p.poll(PollerState())
    all_ids = {str(e["id"]) for e in universe.gamma_events() if not e["closed"]}
    got = {d.event.id for d in r1.deltas}
    assert got < all_ids and len(got) > len(all_ids) * 0.6  # the rest of each page is kept
    gamma.faults = GammaFaults()
    r2 = p.poll(r1.state)  # drift gone: the skipped records arrive, nothing is repeated
    assert {d.event.id for d in r2.deltas} == all_ids - got
    assert all(d.kind is DeltaKind.NEW for d in r2.deltas)


def test_keyset_unavailable_falls_back_to_legacy(gamma: GammaServer, universe: Universe) -> None:
    gamma.faults = GammaFaults(keyset_enabled=False)
    r = poller(gamma, incremental=False).poll(PollerState())
    assert {d.event.id for d in r.deltas} == {str(e["id"]) for e in universe.gamma_events() if not e["closed"]}
    assert gamma.stats.requests["/events"] >= 3


def run_source(url: str, max_polls: int, resume_dir=None) -> list:
    out: list = []
    flow = Dataflow("poller_test")
    source = EventSource(base_url=url, tags=[], poll_interval_s=0.05, incremental=True, full_every=3,
                         stop=threading.Event(), metrics=MetricGroup("poller"), max_polls=max_polls)
    stream = op.input("events", flow, source)
    op.output("out", stream, TestingSink(out))
    run_main(flow, epoch_interval=timedelta(milliseconds=200), recovery_config=resume_dir)
    return out


def test_source_in_a_flow_and_resume_from_snapshot(gamma: GammaServer, universe: Universe, tmp_path) -> None:
    from bytewax.recovery import RecoveryConfig, init_db_dir

    init_db_dir(tmp_path, 1)
    rc = RecoveryConfig(str(tmp_path))
    first = run_source(gamma.url, max_polls=2, resume_dir=rc)
    assert {d.event.id for d in first} == {str(e["id"]) for e in universe.gamma_events() if not e["closed"]}
    new_ids = universe.add_events(4)  # arrives while the flow is down
    second = run_source(gamma.url, max_polls=1, resume_dir=rc)
    assert sorted(d.event.id for d in second) == sorted(new_ids)  # nothing re-emitted, nothing missed


def test_event_leaving_the_open_listing_closes_its_markets_with_tokens(gamma: GammaServer, universe: Universe) -> None:
    p = poller(gamma, incremental=False)
    r1 = p.poll(PollerState())
    single = next(e for e in universe.gamma_events() if universe.event_kind(str(e["id"])) == "single" and not e["closed"])
    m = single["markets"][0]
    universe.close_market(str(m["id"]))  # its only market: the event closes and leaves closed=false listings
    r2 = p.poll(r1.state)
    (delta,) = r2.deltas
    assert delta.kind is DeltaKind.MARKET_CLOSED and delta.closed_market_ids == (str(m["id"]),)
    assert delta.event.markets[0].yes_token == orjson.loads(m["clobTokenIds"])[0] or m.get("version") == "v2"
    assert p.poll(r2.state).deltas == []


def test_an_unreadable_listing_record_is_looked_up_not_closed(gamma: GammaServer, universe: Universe) -> None:
    p = poller(gamma, incremental=False)
    r1 = p.poll(PollerState())
    single = next(e for e in universe.gamma_events() if universe.event_kind(str(e["id"])) == "single" and not e["closed"])
    universe.close_market(str(single["markets"][0]["id"]))  # one event really closes
    # about a fifth of the listed records now carry a mangled id ("evt-123"): unreadable, yet open
    gamma.faults = GammaFaults(drift_rate=0.2, drift_kinds=("text_id",), seed=8)
    r2 = p.poll(r1.state)
    mangled = gamma.stats.faults["drift"]
    assert mangled > 10
    assert gamma.stats.requests["/events/{id}"] == mangled + 1  # each absent event was asked about
    (closed,) = r2.deltas  # only the really closed one
    assert closed.kind is DeltaKind.MARKET_CLOSED and closed.event.id == str(single["id"])
    assert set(r2.state.fingerprints) == set(r1.state.fingerprints) - {str(single["id"])}


def test_a_lookup_that_fails_or_a_cut_listing_closes_nothing(gamma: GammaServer, universe: Universe,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    p = poller(gamma, incremental=False, attempts=2)
    r1 = p.poll(PollerState())
    gamma.faults = GammaFaults(drift_rate=0.2, drift_kinds=("text_id",), seed=8)

    def lookup_fails(self: GammaPoller, event_id: str) -> None:
        raise GammaGaveUp(f"/events/{event_id}", 2, "HTTP 500", 500)

    monkeypatch.setattr(GammaPoller, "_look_up", lookup_fails)
    r2 = p.poll(r1.state)
    assert r2.deltas == [] and r2.state.fingerprints == r1.state.fingerprints
    monkeypatch.undo()
    # the legacy listing stops at its offset cap: what it did not reach is not closed
    import standins.gamma_server as gamma_server

    monkeypatch.setattr(gamma_server, "OFFSET_CAP", 100)
    gamma.faults = GammaFaults(keyset_enabled=False)
    r3 = p.poll(r2.state)
    assert r3.deltas == [] and r3.state.fingerprints == r1.state.fingerprints
    assert gamma.stats.requests["/events/{id}"] == 0


def test_a_change_of_flags_alone_is_a_change() -> None:
    """Switching augmentation on (or a placeholder turning active, or a closed market's
    resolution) changes the covers, so the poller must emit the event again."""
    from dataclasses import replace

    raw = Universe(seed=3, n_events=40).gamma_events()
    event = next(parse_event(r) for r in raw if r.get("negRisk") and len(r["markets"]) > 2)
    base = fingerprint(event)
    assert fingerprint(replace(event, neg_risk_augmented=not event.neg_risk_augmented)) != base
    assert fingerprint(replace(event, neg_risk=not event.neg_risk)) != base
    first = event.markets[0]
    for change in ({"active": not first.active}, {"neg_risk_other": not first.neg_risk_other}):
        assert fingerprint(replace(event, markets=(replace(first, **change),) + event.markets[1:])) != base
    won, lost = (replace(first, closed=True, yes_price=p) for p in (1.0, 0.0))
    assert fingerprint(replace(event, markets=(won,) + event.markets[1:])) != \
        fingerprint(replace(event, markets=(lost,) + event.markets[1:]))
    assert fingerprint(replace(event, markets=(replace(first, yes_price=0.42),) + event.markets[1:])) == base
