"""Change detection on recorded Gamma pages, no server: the real events of
tests/fixtures/gamma_real/ listed, edited the way Gamma edits them, and listed again.

The pure functions (`diff_listing`, `settle_absent`) are driven directly; the last tests run the
real `GammaPoller` over a stub client that serves the same recorded pages (keyset paging,
`/events/{id}` lookups), so paging, lookups and the decisions are exercised without HTTP."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from connectors.gamma.changes import PollerState, diff_listing, settle_absent
from connectors.gamma.client import GammaGaveUp, GammaHTTPError
from connectors.gamma.poller import GammaPoller
from connectors.gamma.protocol import parse_event
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import DeltaKind, Event, EventDelta, Market

REAL = Path(__file__).parent / "fixtures" / "gamma_real"
WORLD_CUP = "30615"  # neg-risk, augmented: 60 markets, 18 closed, 10 inactive placeholders ("Team AM")
FED = "75478"  # neg-risk, not augmented, 3 open markets


def recorded_listing() -> list[dict[str, Any]]:
    """Every open recorded event once (the fullest record of an id), newest first, as
    `/events/keyset?closed=false&order=id&ascending=false` lists them."""
    by_id: dict[str, dict[str, Any]] = {}
    for path in sorted(REAL.glob("*.json")):
        if path.name == "expected_covers.json":
            continue
        for raw in json.loads(path.read_text()):
            eid = str(raw["id"])
            if not raw.get("closed") and len(raw.get("markets") or []) > len(by_id.get(eid, {}).get("markets", [])):
                by_id[eid] = raw
    return sorted(by_id.values(), key=lambda r: int(r["id"]), reverse=True)


@pytest.fixture()
def listing() -> list[dict[str, Any]]:
    return copy.deepcopy(recorded_listing())


def known(listing: list[dict[str, Any]]) -> PollerState:
    state = PollerState()
    diff_listing(state, listing, full=True)
    return state


def record(listing: list[dict[str, Any]], eid: str) -> dict[str, Any]:
    return next(r for r in listing if str(r["id"]) == eid)


def test_the_recorded_corpus_is_a_usable_listing(listing: list[dict[str, Any]]) -> None:
    assert len(listing) > 30 and len({r["id"] for r in listing}) == len(listing)
    world_cup = parse_event(record(listing, WORLD_CUP))
    assert world_cup.neg_risk_augmented and sum(not m.active for m in world_cup.markets) == 10
    fed = parse_event(record(listing, FED))
    assert fed.neg_risk and not fed.neg_risk_augmented and not any(m.closed for m in fed.markets)


def test_first_listing_is_all_new_then_the_same_listing_is_nothing(listing: list[dict[str, Any]]) -> None:
    state = PollerState()
    first = diff_listing(state, listing, full=True)
    assert [d.kind for d in first.deltas] == [DeltaKind.NEW] * len(listing)
    assert [d.event.id for d in first.deltas] == [str(r["id"]) for r in listing]
    for d in first.deltas:
        assert d.new_market_ids == tuple(m.id for m in d.event.markets) and d.closed_market_ids == ()
    assert first.processed == len(listing) and first.skipped == [] and first.absent == []
    assert state.watermark == max(int(r["id"]) for r in listing)
    assert set(state.fingerprints) == {str(r["id"]) for r in listing}
    world_cup = parse_event(record(listing, WORLD_CUP))
    assert state.market_closed[WORLD_CUP] == {m.id: m.closed or not m.active for m in world_cup.markets}
    assert state.market_tokens[world_cup.markets[0].id] == (world_cup.markets[0].yes_token,
                                                            world_cup.markets[0].no_token)

    before = state.copy()
    again = diff_listing(state, copy.deepcopy(listing), full=True)
    assert again.deltas == [] and again.absent == [] and again.processed == len(listing)
    assert state == before
    # the same events under two tags, in another order: still nothing, each looked at once
    twice = diff_listing(state, listing[::-1] + listing, full=True)
    assert twice.deltas == [] and twice.processed == len(listing)
    # incremental: everything is at or below the watermark, so nothing is even parsed
    incremental = diff_listing(state, listing, full=False)
    assert incremental.deltas == [] and incremental.processed == 0 and incremental.absent == []


def test_a_market_closing_is_market_closed_only(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    event = record(listing, WORLD_CUP)
    spain = next(m for m in event["markets"] if m.get("groupItemTitle") == "Spain")
    assert spain["active"] and not spain["closed"]
    spain["closed"] = True
    diff = diff_listing(state, listing, full=True)
    (delta,) = diff.deltas
    assert delta.kind is DeltaKind.MARKET_CLOSED and delta.event.id == WORLD_CUP
    assert delta.closed_market_ids == (str(spain["id"]),) and delta.new_market_ids == ()
    assert state.market_closed[WORLD_CUP][str(spain["id"])] is True
    assert diff_listing(state, listing, full=True).deltas == []  # once


def test_a_placeholder_turned_active_is_a_content_change(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    event = record(listing, WORLD_CUP)
    placeholder = next(m for m in event["markets"] if m.get("groupItemTitle") == "Team AM")
    assert placeholder["active"] is False and "outcomePrices" not in placeholder
    assert state.market_closed[WORLD_CUP][str(placeholder["id"])] is True  # inactive counts as closed
    placeholder.update(active=True, groupItemTitle="Wales", question="Will Wales win the 2026 FIFA World Cup?",
                       outcomePrices='["0.001", "0.999"]')
    (delta,) = diff_listing(state, listing, full=True).deltas
    assert (delta.kind, delta.changed_fields, delta.new_market_ids, delta.closed_market_ids) == \
        (DeltaKind.CHANGED, ("content",), (), ())
    assert state.market_closed[WORLD_CUP][str(placeholder["id"])] is False
    assert any(m.group_item_title == "Wales" and m.active for m in delta.event.markets)


def test_augmentation_switched_on_is_a_content_change(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    fed = record(listing, FED)
    fed["negRiskAugmented"] = True
    (delta,) = diff_listing(state, listing, full=True).deltas
    assert (delta.kind, delta.event.id, delta.changed_fields) == (DeltaKind.CHANGED, FED, ("content",))
    assert delta.event.neg_risk_augmented
    # a live price move alone changes nothing that covers depend on
    fed["markets"][0]["outcomePrices"] = '["0.5", "0.5"]'
    assert diff_listing(state, listing, full=True).deltas == []


def test_a_new_market_and_a_closed_one_in_the_same_event(listing: list[dict[str, Any]]) -> None:
    event = record(listing, WORLD_CUP)
    late = next(m for m in event["markets"] if m.get("groupItemTitle") == "Sweden")
    event["markets"].remove(late)  # not there at first: it arrives later
    state = known(listing)
    event["markets"].append(late)
    england = next(m for m in event["markets"] if m.get("groupItemTitle") == "England")
    england["closed"] = True
    deltas = diff_listing(state, listing, full=True).deltas
    assert [(d.kind, d.changed_fields, d.new_market_ids, d.closed_market_ids) for d in deltas] == [
        (DeltaKind.MARKET_CLOSED, ("closed",), (), (str(england["id"]),)),
        (DeltaKind.CHANGED, ("markets",), (str(late["id"]),), ()),
    ]


def test_incremental_listing_takes_only_events_above_the_watermark(listing: list[dict[str, Any]]) -> None:
    older, newest = listing[3:], listing[:3]
    state = known(older)
    watermark = state.watermark
    diff = diff_listing(state, listing, full=False)  # newest first, then the known ones
    assert [d.event.id for d in diff.deltas] == [str(r["id"]) for r in newest]
    assert all(d.kind is DeltaKind.NEW for d in diff.deltas) and diff.processed == 3
    assert state.watermark == int(newest[0]["id"]) > watermark
    assert diff.absent == []  # an incremental listing never infers a closure


def test_an_event_missing_from_a_complete_listing_closes_only_on_the_lookups_word(
        listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    gone = record(listing, FED)
    rest = [r for r in listing if r is not gone]
    diff = diff_listing(state, rest, full=True)
    assert diff.deltas == [] and diff.absent == [FED]
    assert FED in state.fingerprints  # nothing decided before the lookup

    # the lookup finds it still open and unchanged: nothing, still known
    assert settle_absent(state, FED, parse_event(gone)) == [] and FED in state.fingerprints
    # the lookup finds it closed: every market still open closes, with its tokens; it is forgotten
    fed = parse_event(gone)
    for looked_up in (parse_event(dict(gone, closed=True)), None):  # closed, or 404
        trial = state.copy()
        (delta,) = settle_absent(trial, FED, looked_up)
        assert delta.kind is DeltaKind.MARKET_CLOSED and delta.event.id == FED and delta.event.closed
        assert delta.closed_market_ids == tuple(m.id for m in fed.markets)
        assert [(m.yes_token, m.no_token) for m in delta.event.markets] == \
            [(m.yes_token, m.no_token) for m in fed.markets]
        assert FED not in trial.fingerprints and FED not in trial.market_closed
        assert not any(m.id in trial.market_tokens for m in fed.markets)
        assert diff_listing(trial, rest, full=True).absent == []  # asked once


def test_an_event_closing_with_some_markets_already_closed_closes_the_rest(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    world_cup = parse_event(record(listing, WORLD_CUP))
    (delta,) = settle_absent(state, WORLD_CUP, None)
    still_open = tuple(m.id for m in world_cup.markets if m.active and not m.closed)
    assert delta.closed_market_ids == still_open and len(still_open) == 60 - 18 - 10


def test_a_cut_listing_closes_nothing(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    diff = diff_listing(state, listing[:10], full=True, complete=False)
    assert diff.deltas == [] and diff.absent == [] and diff.unchecked == len(listing) - 10


def test_an_unreadable_record_is_no_closure(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    before = state.copy()
    broken = record(listing, FED)
    broken["title"] = ""  # schema drift: the event cannot be read, yet it is listed
    listing.append({"id": None, "title": "?"})  # and records that are not events at all
    listing.append("garbage")
    diff = diff_listing(state, listing, full=True)
    assert diff.deltas == [] and diff.absent == []  # listed, only unreadable: not absent, nothing closes
    assert [e.record_id for e in diff.skipped] == [FED, "", ""]
    assert state == before

    # a mangled id ("evt-75478") hides which event it is: the event is absent, and looked up;
    # the lookup finds it open, so nothing closes
    broken["title"] = record(recorded_listing(), FED)["title"]
    broken["id"] = f"evt-{FED}"
    diff = diff_listing(state, listing[:-2], full=True)
    assert diff.deltas == [] and diff.absent == [FED] and diff.skipped[0].record_id == f"evt-{FED}"
    assert settle_absent(state, FED, parse_event(dict(broken, id=FED))) == []
    assert state == before

    # an unreadable market names the market, not its event: the event is looked up too
    broken["id"] = FED
    broken["markets"][0]["clobTokenIds"] = "[not json"
    diff = diff_listing(state, listing[:-2], full=True)
    assert diff.deltas == [] and diff.absent == [FED] and diff.skipped[0].record_id == str(broken["markets"][0]["id"])


# ---------------------------------------------------------------------------- the poller, stub client
class RecordedGamma:
    """Serves recorded pages the way Gamma does: `/events/keyset` 100 per page with a cursor,
    `/events/{id}` from `lookups` (a raw event, or an exception to raise)."""

    def __init__(self, listing: list[dict[str, Any]]) -> None:
        self.listing = listing
        self.lookups: dict[str, Any] = {}
        self.requests: list[str] = []

    def get_json(self, path: str, params: list[tuple[str, Any]]) -> Any:
        self.requests.append(path)
        if path == "/events/keyset":
            limit = dict(params)["limit"]
            start = int(dict(params).get("after_cursor", 0))
            page = self.listing[start:start + limit]
            more = start + limit < len(self.listing)
            return {"events": copy.deepcopy(page), "next_cursor": str(start + limit) if more else None}
        eid = path.rsplit("/", 1)[1]
        answer = self.lookups.get(eid, GammaHTTPError(path, 404))
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)


def recorded_poller(gamma: RecordedGamma, **kw: Any) -> tuple[GammaPoller, MetricGroup]:
    group = MetricGroup("poller")
    return GammaPoller(gamma, metrics=group, **kw), group  # type: ignore[arg-type]


def test_poller_over_recorded_pages_new_then_nothing_then_incremental(listing: list[dict[str, Any]]) -> None:
    gamma = RecordedGamma(listing)
    poller, _ = recorded_poller(gamma, incremental=True, full_every=100)
    first = poller.poll(PollerState())
    assert first.pages == 1 and first.fetched == len(listing)
    assert first.full and {d.event.id for d in first.deltas} == {str(r["id"]) for r in listing}
    assert all(d.kind is DeltaKind.NEW for d in first.deltas)
    second = poller.poll(first.state)
    assert not second.full and second.deltas == [] and second.pages == 1 and second.processed == 0


def test_poller_closes_an_absent_event_only_when_the_lookup_says_so(listing: list[dict[str, Any]]) -> None:
    gamma = RecordedGamma(listing)
    poller, group = recorded_poller(gamma, incremental=False)
    r1 = poller.poll(PollerState())
    fed = record(listing, FED)
    gamma.listing = [r for r in listing if r is not fed]

    gamma.lookups[FED] = GammaGaveUp(f"/events/{FED}", 5, "HTTP 500", 500)  # cannot tell
    r2 = poller.poll(r1.state)
    assert r2.deltas == [] and FED in r2.state.fingerprints
    assert group.get("closure_lookups_failed") == 1

    gamma.lookups[FED] = fed  # still open (Gamma's listing just missed it)
    r3 = poller.poll(r2.state)
    assert r3.deltas == [] and FED in r3.state.fingerprints and group.get("closure_lookups") == 1

    gamma.lookups[FED] = dict(fed, closed=True)
    r4 = poller.poll(r3.state)
    (delta,) = r4.deltas
    assert delta.kind is DeltaKind.MARKET_CLOSED and delta.event.id == FED and FED not in r4.state.fingerprints
    assert gamma.requests.count(f"/events/{FED}") == 3

    del gamma.lookups[FED]  # 404: the same closure
    (delta404,) = poller.poll(r3.state).deltas
    assert delta404 == delta
    assert poller.poll(r4.state).deltas == []  # forgotten: not asked again
    assert gamma.requests.count(f"/events/{FED}") == 4


def test_poller_counts_an_unreadable_record_and_closes_nothing(listing: list[dict[str, Any]]) -> None:
    gamma = RecordedGamma(listing)
    poller, group = recorded_poller(gamma, incremental=False)
    r1 = poller.poll(PollerState())
    record(listing, FED)["title"] = ""  # unreadable now
    r2 = poller.poll(r1.state)
    assert r2.deltas == [] and r2.state == replace(r1.state.copy(), polls=r1.state.polls + 1)
    assert group.get("errors_parse") == 1
    assert not any(p.startswith("/events/") and p != "/events/keyset" for p in gamma.requests)
    # an unreadable market: the event is looked up, and the lookup (just as unreadable) decides nothing
    record(listing, FED)["title"] = record(recorded_listing(), FED)["title"]
    record(listing, FED)["markets"][0]["clobTokenIds"] = "[not json"
    gamma.lookups[FED] = record(listing, FED)
    r3 = poller.poll(r2.state)
    assert r3.deltas == [] and FED in r3.state.fingerprints
    assert group.get("errors_parse") == 2 and group.get("closure_lookups_failed") == 1



# ---------------------------------------------------------------- hostile ids and bodies
def test_an_id_far_above_the_rest_does_not_move_the_watermark(listing: list[dict[str, Any]]) -> None:
    from connectors.gamma.changes import MAX_ID_STEP, plausible_watermark

    real_top = max(int(r["id"]) for r in listing)
    poison = copy.deepcopy(record(listing, FED))
    poison["id"] = str(10**18)
    for m in poison["markets"]:
        m["id"] = str(int(m["id"]) + 10**9)
    state = PollerState()
    diff = diff_listing(state, [poison, *listing], full=True)
    assert state.watermark == real_top and diff.implausible == [10**18]
    assert str(10**18) in state.fingerprints  # the event itself is still delivered
    # the next incremental listing still sees a real new event just above the real top
    fresh = copy.deepcopy(record(listing, FED))
    fresh["id"] = str(real_top + 7)
    for m in fresh["markets"]:
        m["id"] = str(int(m["id"]) + 10**8)
    nxt = diff_listing(state, [poison, fresh, *listing], full=False)
    assert [d.event.id for d in nxt.deltas] == [str(real_top + 7)] and state.watermark == real_top + 7
    # the rule itself: a run of steps of at most MAX_ID_STEP from the old watermark
    assert plausible_watermark(0, [5, 9, 9 + MAX_ID_STEP, 10**12]) == (9 + MAX_ID_STEP, [10**12])
    assert plausible_watermark(100, [50, 100 + MAX_ID_STEP + 1]) == (100, [100 + MAX_ID_STEP + 1])


def test_a_lone_surrogate_in_one_title_costs_nothing_but_that_text() -> None:
    from connectors.gamma.protocol import decode_body, parse_event

    page = json.dumps(recorded_listing()[:5]).replace('"title": "', '"title": "\\ud800', 1).encode()
    with pytest.raises(ValueError):
        import orjson

        orjson.loads(page)
    body, tolerant = decode_body(page)
    assert tolerant and len(body) == 5
    events = [parse_event(raw) for raw in body]
    assert all("\ud800" not in e.title for e in events) and len(events) == 5
    assert decode_body(b"[1, 2]") == ([1, 2], False)
    with pytest.raises(ValueError):
        decode_body(b'[{"title": "cut sho')


def test_an_unreadable_id_on_the_first_page_does_not_cut_incremental_paging_short(
        listing: list[dict[str, Any]]) -> None:
    """Newest first, 100 a page: 150 new events above the known ones, with a record whose id is
    unreadable ("²") on the first page. Paging must go on to the second page."""
    gamma = RecordedGamma(listing)
    poller, _ = recorded_poller(gamma, incremental=True, full_every=100)
    state = poller.poll(PollerState()).state
    top = state.watermark
    fed = record(listing, FED)
    new = []
    for i in range(150):
        ev = copy.deepcopy(fed)
        ev["id"] = str(top + 150 - i)
        for j, m in enumerate(ev["markets"]):
            m["id"] = str(10**8 + i * 10 + j)
        new.append(ev)
    bad = copy.deepcopy(fed)
    bad["id"] = "²"
    gamma.listing = new[:50] + [bad] + new[50:] + listing
    result = poller.poll(state)
    assert result.pages == 2 and len({d.event.id for d in result.deltas}) == 150
    assert result.state.watermark == top + 150


# ---------------------------------------------------------------- exact deltas, fingerprints, watermark
def test_the_fingerprint_format_is_stable(listing: list[dict[str, Any]]) -> None:
    """The poller state (fingerprints included) is resumed from snapshots: a new fingerprint
    format would re-announce every known event as CHANGED after an upgrade. (Changed once, on
    purpose, with the Redis schema 2: markets' execution terms joined it, so a new fee or tick
    re-prices their covers.)"""
    from connectors.gamma.changes import fingerprint

    assert fingerprint(parse_event(record(listing, WORLD_CUP))) == "e6869f360b1943f58073"
    assert fingerprint(parse_event(record(listing, FED))) == "7425f7bbefda2b369b81"


def test_only_the_first_200_characters_of_a_description_count(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    fed = record(listing, FED)
    assert len(fed["description"]) > 201
    fed["description"] = fed["description"][:200] + "#" + fed["description"][201:]
    assert diff_listing(state, listing, full=True).deltas == []
    fed["description"] = fed["description"][:199] + "#" + fed["description"][200:]
    (delta,) = diff_listing(state, listing, full=True).deltas
    assert (delta.kind, delta.event.id, delta.changed_fields) == (DeltaKind.CHANGED, FED, ("content",))


def test_a_closed_market_resolving_the_other_way_is_a_content_change(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    event = record(listing, WORLD_CUP)
    haiti = next(m for m in event["markets"] if m.get("groupItemTitle") == "Haiti")
    assert haiti["closed"] and haiti["outcomePrices"] == '["0", "1"]'
    haiti["outcomePrices"] = '["1", "0"]'
    (delta,) = diff_listing(state, listing, full=True).deltas
    assert (delta.kind, delta.changed_fields, delta.new_market_ids, delta.closed_market_ids) == \
        (DeltaKind.CHANGED, ("content",), (), ())


def test_new_deltas_carry_the_markets_and_nothing_else(listing: list[dict[str, Any]]) -> None:
    (delta,) = diff_listing(PollerState(), [record(listing, FED)], full=True).deltas
    fed = parse_event(record(listing, FED))
    assert delta == EventDelta(DeltaKind.NEW, fed, (), tuple(m.id for m in fed.markets), ())


def test_a_new_market_that_arrives_closed_is_new_and_closed(listing: list[dict[str, Any]]) -> None:
    event = record(listing, WORLD_CUP)
    late = next(m for m in event["markets"] if m.get("groupItemTitle") == "Sweden")
    event["markets"].remove(late)
    state = known(listing)
    late["closed"] = True
    event["markets"].append(late)
    deltas = diff_listing(state, listing, full=True).deltas
    assert [(d.kind, d.changed_fields, d.new_market_ids, d.closed_market_ids) for d in deltas] == [
        (DeltaKind.MARKET_CLOSED, ("closed",), (), (str(late["id"]),)),
        (DeltaKind.CHANGED, ("markets",), (str(late["id"]),), ()),
    ]
    assert state.market_closed[WORLD_CUP][str(late["id"])] is True


def test_the_watermark_run_starts_at_the_lowest_id_from_zero() -> None:
    from connectors.gamma.changes import MAX_ID_STEP, plausible_watermark

    far = 3 * MAX_ID_STEP
    assert plausible_watermark(0, [far + 2, far]) == (far + 2, [])
    assert plausible_watermark(1, [2 + MAX_ID_STEP]) == (1, [2 + MAX_ID_STEP])
    assert plausible_watermark(1, [1 + MAX_ID_STEP]) == (1 + MAX_ID_STEP, [])
    assert plausible_watermark(9, [3, 9, 10]) == (10, [])


def test_incremental_listings_of_several_tags_take_the_new_events_of_each(listing: list[dict[str, Any]]) -> None:
    """Each tag's listing is newest first; concatenated, a known record of the first tag is
    followed by the new records of the next: the pass skips the known one and goes on."""
    state = known(listing[2:])
    tag_a = [listing[0], *listing[2:10]]
    tag_b = [listing[1], *listing[10:]]
    diff = diff_listing(state, tag_a + tag_b, full=False)
    assert [d.event.id for d in diff.deltas] == [str(listing[0]["id"]), str(listing[1]["id"])]
    assert diff.processed == 2 and diff.unchecked == 0 and diff.absent == []


def test_an_event_listed_under_two_tags_does_not_hide_the_next(listing: list[dict[str, Any]]) -> None:
    state = known(listing[1:])
    diff = diff_listing(state, [*listing[1:4], listing[2], listing[0], *listing[4:]], full=True)
    assert [d.event.id for d in diff.deltas] == [str(listing[0]["id"])]
    assert diff.processed == len(listing) and diff.absent == [] and diff.unchecked == 0


def test_closing_an_event_emits_stub_markets_with_their_tokens(listing: list[dict[str, Any]]) -> None:
    state = known(listing)
    fed = parse_event(record(listing, FED))
    (delta,) = settle_absent(state, FED, None)
    stubs = tuple(Market(id=m.id, event_id=FED, question="", slug="", condition_id="", yes_token=m.yes_token,
                         no_token=m.no_token, closed=True) for m in fed.markets)
    assert delta == EventDelta(DeltaKind.MARKET_CLOSED, Event(id=FED, slug="", title="", closed=True, markets=stubs),
                               ("closed",), (), tuple(m.id for m in fed.markets))
    # closing it again (a second lookup's answer): nothing, and nothing raised
    before = state.copy()
    assert settle_absent(state, FED, None) == [] and state == before


def test_closing_with_tokens_not_recorded_emits_empty_tokens(listing: list[dict[str, Any]]) -> None:
    """A state resumed without the market tokens (kept only since a later version)."""
    full = known(listing)
    state = PollerState(full.watermark, full.fingerprints, full.market_closed, full.polls)
    fed = parse_event(record(listing, FED))
    (delta,) = settle_absent(state, FED, None)
    assert [(m.id, m.yes_token, m.no_token, m.closed) for m in delta.event.markets] == \
        [(m.id, "", "", True) for m in fed.markets]
    assert FED not in state.fingerprints and FED not in state.market_closed and state.market_tokens == {}


def test_a_known_event_without_market_records_counts_its_markets_as_new(listing: list[dict[str, Any]]) -> None:
    """A state resumed with fingerprints but without per-market records."""
    full = known(listing)
    state = PollerState(full.watermark, full.fingerprints, {}, full.polls, full.market_tokens)
    fed = record(listing, FED)
    fed["title"] = "Fed decision in April (edited)?"
    (delta,) = diff_listing(state, [fed], full=True).deltas
    assert (delta.kind, delta.changed_fields, delta.new_market_ids, delta.closed_market_ids) == \
        (DeltaKind.CHANGED, ("markets",), tuple(str(m["id"]) for m in fed["markets"]), ())


def test_a_fee_or_tick_change_on_gamma_changes_the_fingerprint(listing: list[dict[str, Any]]) -> None:
    from connectors.gamma.changes import fingerprint

    raw = record(listing, WORLD_CUP)
    base = fingerprint(parse_event(raw))
    for field, value in (("orderPriceMinTickSize", 0.01), ("orderMinSize", 15), ("feeSchedule", {"rate": 0.05})):
        changed = copy.deepcopy(raw)
        changed["markets"][0][field] = value
        assert fingerprint(parse_event(changed)) != base, field
