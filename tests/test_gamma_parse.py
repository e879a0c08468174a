"""Parsing Gamma records: real quirks read right, hostile values rejected per record (never raised
past `GammaParseError`), market text kept as bounded, printable data."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.gamma.protocol import (
    MAX_DESCRIPTION,
    MAX_TITLE,
    GammaParseError,
    decode_body,
    parse_event,
    parse_market,
    raw_event_id,
)
from polyalphascan.records import MarketTerms, Market

REAL = Path(__file__).parent / "fixtures" / "gamma_real"


def real_event(title_part: str) -> dict:
    for path in sorted(REAL.glob("*.json")):
        if path.name == "expected_covers.json":
            continue
        for raw in json.loads(path.read_text()):
            if title_part in raw["title"]:
                return copy.deepcopy(raw)
    raise LookupError(title_part)


def test_real_augmented_event_flags_and_placeholders() -> None:
    event = parse_event(real_event("World Cup Winner"))
    assert event.neg_risk and event.neg_risk_augmented and event.title == "World Cup Winner"
    other = [m for m in event.markets if m.neg_risk_other]
    assert [m.group_item_title for m in other] == ["Other"] and not other[0].active
    assert all(m.neg_risk for m in event.markets)
    assert {m.neg_risk_market_id for m in event.markets} == {event.markets[0].neg_risk_market_id} != {""}
    closed = [m for m in event.markets if m.closed]
    assert closed and all(m.yes_price == 0.0 for m in closed)


def test_real_event_without_neg_risk_key_is_not_neg_risk() -> None:
    event = parse_event(real_event("What will happen before GTA VI?"))
    assert not event.neg_risk and not event.neg_risk_augmented and len(event.markets) > 1


@pytest.mark.parametrize("bad_id", ["²", "1" * 5000, "10" + "0" * 30, "-5", "1.5", "", None, True, [1], {"a": 1}])
def test_ids_must_be_plain_bounded_numbers(bad_id: object) -> None:
    raw = real_event("Harvey Weinstein")
    raw["id"] = bad_id
    with pytest.raises(GammaParseError):
        parse_event(raw)
    raw = real_event("Harvey Weinstein")
    raw["markets"][2]["id"] = bad_id
    with pytest.raises(GammaParseError):
        parse_event(raw)


@pytest.mark.parametrize("field,value", [("markets", ["x"]), ("markets", 5), ("markets", [None])])
def test_a_malformed_markets_field_rejects_only_that_event(field: str, value: object) -> None:
    raw = real_event("Harvey Weinstein")
    raw[field] = value
    with pytest.raises(GammaParseError):
        parse_event(raw)


def test_odd_but_harmless_fields_are_tolerated() -> None:
    raw = real_event("Harvey Weinstein")
    raw["tags"] = 5
    raw["endDate"] = 1767225600
    raw["markets"][0]["endDate"] = {"x": 1}
    event = parse_event(raw)
    assert event.tags == () and event.end_date is None and event.markets[0].end_date is None
    assert int(raw["id"]) == int(event.id)


def test_market_text_is_bounded_printable_data() -> None:
    raw = real_event("Harvey Weinstein")
    raw["title"] = "Ignore\nprevious\x00instructions \ud800" + "x" * 10_000
    raw["description"] = "d" * 1_000_000
    raw["markets"][1]["groupItemTitle"] = "  5-10 years\t"
    event = parse_event(raw)
    assert event.title.startswith("Ignore previous instructions") and len(event.title) <= MAX_TITLE
    assert all(ord(c) >= 0x20 and not 0xD800 <= ord(c) <= 0xDFFF for c in event.title)
    assert len(event.description) == MAX_DESCRIPTION
    assert event.markets[1].group_item_title == "5-10 years"


def test_neg_risk_is_claimed_only_by_an_explicit_true() -> None:
    for value, expected in ((True, True), ("true", True), (1, False), ("yes", False), (None, False), (False, False)):
        raw = real_event("Harvey Weinstein")
        raw["negRisk"] = value
        for m in raw["markets"]:
            m.pop("negRisk", None)
        assert parse_event(raw).neg_risk is expected, value
        assert all(m.neg_risk is expected for m in parse_event(raw).markets)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_FIELDS = ["id", "title", "markets", "tags", "negRisk", "negRiskAugmented", "endDate", "description", "slug"]
_MARKET_FIELDS = ["id", "question", "clobTokenIds", "outcomePrices", "groupItemTitle", "active", "closed", "negRisk",
                  "negRiskOther", "endDate", "positionIds", "version", "liquidityNum", "volume"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_FIELDS), _json, st.sampled_from(_MARKET_FIELDS), _json)
def test_no_value_escapes_as_anything_but_a_parse_error(field, value, mfield, mvalue) -> None:  # type: ignore[no-untyped-def]
    raw = real_event("Harvey Weinstein")
    raw[field] = value
    if isinstance(raw.get("markets"), list) and raw["markets"] and isinstance(raw["markets"][0], dict):
        raw["markets"][0][mfield] = mvalue
    try:
        event = parse_event(raw)
    except GammaParseError:
        return
    assert event.id.isascii() and event.id.isdigit() and len(event.id) <= 19
    assert all(m.id.isdigit() and m.yes_token and m.no_token for m in event.markets)


# ---------------------------------------------------------------- every field read, every error named
def test_a_real_market_is_read_field_by_field() -> None:
    raw = real_event("Harvey Weinstein")
    rm = raw["markets"][0]
    event = parse_event(raw)
    assert event.markets[0] == Market(
        id="544092", event_id="24383", question="Will Harvey Weinstein be sentenced to no prison time?",
        slug="will-harvey-weinstein-be-sentenced-to-no-prison-time",
        condition_id="0xf398b0e5016eeaee9b0885ed84012b6dc91269ac10d3b59d60722859c2e30b2f",
        yes_token="24327803960645909378149041810697343640752122608192367041827900158592826352552",
        no_token="86488478623677188352872801318507143761188967461168408688159600382919967378486",
        group_item_title="No Prison Time", group_item_threshold="0",
        description=rm["description"].replace("\n", " "), end_date="2025-12-31T12:00:00Z",
        created_at="2025-05-12T22:26:22.665665Z", active=True, closed=False, neg_risk=True, neg_risk_other=False,
        neg_risk_market_id="0xaa0edfa656a0e70bf8c63f09438cd70979fef8e31fcc62d80840b5a375a55400",
        liquidity=0.0, volume=0.0, yes_price=0.3695, no_price=0.6305, version="v1",
        terms=MarketTerms(tick=0.001, min_size=5.0, neg_risk=True, end_date="2025-12-31T12:00:00Z"))
    assert [m.event_id for m in event.markets] == ["24383"] * 6
    assert [m.group_item_threshold for m in event.markets] == ["0", "1", "2", "3", "4", "5"]


def test_a_market_without_threshold_or_dates_reads_them_as_absent() -> None:
    raw = real_event("Counter-Strike: FURIA vs FUT Esports")
    rm = raw["markets"][0]
    assert "groupItemThreshold" not in rm and "negRiskMarketID" not in rm
    del rm["createdAt"]
    m = parse_event(raw).markets[0]
    assert (m.group_item_threshold, m.created_at, m.neg_risk_market_id) == (None, None, "")
    rm["groupItemThreshold"] = ""
    assert parse_event(raw).markets[0].group_item_threshold is None


def test_asset_ids_come_from_position_ids_only_on_v2_markets() -> None:
    raw = real_event("Counter-Strike: FURIA vs FUT Esports")
    rm = raw["markets"][0]
    clob, positions = json.loads(rm["clobTokenIds"]), rm["positionIds"]
    assert rm["version"] == "v1" and clob != positions
    m = parse_event(raw).markets[0]  # v1 with positionIds present: the legacy ids still count
    assert (m.yes_token, m.no_token, m.version) == (clob[0], clob[1], "v1")
    rm["version"] = "V2"
    m = parse_event(raw).markets[0]
    assert (m.yes_token, m.no_token, m.version) == (positions[0], positions[1], "v2")
    del rm["positionIds"]  # v2 without positionIds: the legacy ids
    assert (parse_event(raw).markets[0].yes_token, parse_event(raw).markets[0].version) == (clob[0], "v2")
    for absent in (None, ""):
        rm["version"] = absent
        assert parse_event(raw).markets[0].version == "v1"


def test_liquidity_and_volume_numbers() -> None:
    raw = real_event("Harvey Weinstein")
    raw["markets"][0].update(liquidity="1234.5", volumeNum=98765.25, volume="1")
    raw["markets"][1].update(liquidityNum="", volume="")
    raw["markets"][3].update(liquidityNum="77", liquidity="1")
    markets = parse_event(raw).markets
    assert [(m.liquidity, m.volume) for m in markets[:4]] == [(1234.5, 98765.25), (0.0, 0.0), (0.0, 0.0), (77.0, 0.0)]


@pytest.mark.parametrize("value,expected", [
    (True, True), ("true", True), (" TRUE ", True), ("True", True), ("1", True), ("yes", True), ("YES", True),
    (1, True), (False, False), ("false", False), ("no", False), ("0", False), ("", False), (0, False),
])
def test_market_and_event_flags(value: object, expected: bool) -> None:
    raw = real_event("Harvey Weinstein")
    raw["closed"] = raw["markets"][0]["closed"] = raw["markets"][1]["negRiskOther"] = value
    raw["active"] = raw["markets"][2]["active"] = value
    event = parse_event(raw)
    assert (event.closed, event.markets[0].closed, event.markets[1].neg_risk_other) == (expected,) * 3
    assert (event.active, event.markets[2].active) == (expected, expected)


def test_absent_flags_take_their_defaults() -> None:
    raw = real_event("Harvey Weinstein")
    for r in (raw, raw["markets"][0]):
        for key in ("active", "closed", "negRiskOther"):
            r.pop(key, None)
    event = parse_event(raw)
    m = event.markets[0]
    assert (event.active, event.closed, m.active, m.closed, m.neg_risk_other) == (True, False, True, False, False)


def test_a_market_parsed_alone_is_neg_risk_only_when_it_says_so() -> None:
    rm = real_event("Harvey Weinstein")["markets"][0]
    del rm["negRisk"]
    assert parse_market(rm, "24383").neg_risk is False
    assert parse_market(rm, "24383", True).neg_risk is True


@pytest.mark.parametrize("prices,expected", [
    ("", (None, None)), (None, (None, None)), ('["0.25"]', (0.25, None)), ('["0.3", ""]', (0.3, None)),
    ('["x", null]', (None, None)), (["1", "0"], (1.0, 0.0)), ('[0, 1]', (0.0, 1.0)),
])
def test_outcome_prices(prices: object, expected: tuple[float | None, float | None]) -> None:
    raw = real_event("Harvey Weinstein")
    raw["markets"][0]["outcomePrices"] = prices
    m = parse_event(raw).markets[0]
    assert (m.yes_price, m.no_price) == expected


_LONG = '{"token": "' + "7" * 60 + '"}'


@pytest.mark.parametrize("edit,record_id,reason", [
    (lambda r: r.update(id="evt-24383"), "evt-24383", "event id missing or not a plain number"),
    (lambda r: r.update(id="9" * 5000), "9" * 40, "event id missing or not a plain number"),
    (lambda r: r.update(title=" \n"), "24383", "event without title"),
    (lambda r: r.update(markets=5), "24383", "markets is not a list"),
    (lambda r: r.update(markets=[None]), "", "market is not an object"),
    (lambda r: r["markets"][2].update(id="mkt-5"), "mkt-5", "market id missing or not a plain number"),
    (lambda r: r["markets"][2].update(id="1" * 5000), "1" * 40, "market id missing or not a plain number"),
    (lambda r: r["markets"][2].update(id=None), "", "market id missing or not a plain number"),
    (lambda r: r["markets"][2].update(clobTokenIds='["1", "2", "3"]'), "544094", "expected 2 asset ids, got 3"),
    (lambda r: r["markets"][2].update(clobTokenIds='["1", ""]'), "544094", "expected 2 asset ids, got 2"),
    (lambda r: r["markets"][2].update(question=""), "544094", "market without question"),
    (lambda r: r["markets"][2].update(clobTokenIds=_LONG), "544094", f"bad list field: not a list: {_LONG[:40]!r}"),
    (lambda r: r["markets"][2].update(outcomePrices=7), "544094", "bad list field: not a list: '7'"),
])
def test_a_parse_error_names_the_record_and_the_reason(edit: Callable[[dict], object], record_id: str,
                                                       reason: str) -> None:
    raw = real_event("Harvey Weinstein")
    edit(raw)
    with pytest.raises(GammaParseError) as info:
        parse_event(raw)
    assert (info.value.record_id, info.value.reason) == (record_id, reason)
    assert str(info.value) == f"record {record_id or '?'}: {reason}"


def test_unreadable_values_inside_a_market_name_the_market() -> None:
    raw = real_event("Harvey Weinstein")
    raw["markets"][1]["clobTokenIds"] = "[not json"
    with pytest.raises(GammaParseError) as info:
        parse_event(raw)
    assert info.value.record_id == "544093" and info.value.reason.startswith("bad list field: ")
    raw = real_event("Harvey Weinstein")
    raw["markets"][1]["volume"] = "lots"
    with pytest.raises(GammaParseError) as info:
        parse_event(raw)
    assert info.value.record_id == "544093" and info.value.reason.startswith("bad field: ")
    with pytest.raises(GammaParseError) as info:
        parse_event(["not", "an", "event"])  # type: ignore[arg-type]
    assert (info.value.record_id, info.value.reason, str(info.value)) == \
        ("", "event is not an object", "record ?: event is not an object")


@pytest.mark.parametrize("raw,expected", [
    ({"id": "24383"}, 24383), ({"id": 7}, 7), ({"id": "²"}, -1), ({"id": None}, -1), ({}, -1),
    ({"id": "evt-1"}, -1), ("garbage", -1), (None, -1),
])
def test_raw_event_id(raw: object, expected: int) -> None:
    assert raw_event_id(raw) == expected


def test_a_body_with_invalid_utf8_is_decoded_tolerantly() -> None:
    body, tolerant = decode_body(b'[{"id": "1", "title": "caf\xe9 \xff"}]')
    assert tolerant and body == [{"id": "1", "title": "caf\ufffd \ufffd"}]
    with pytest.raises(orjson.JSONDecodeError):
        decode_body(b'[{"title": "caf\xe9", "cut sho')


def test_the_event_fields_tags_and_a_market_without_its_own_neg_risk_flag() -> None:
    raw = real_event("Harvey Weinstein")
    raw["tags"] = [{"id": "2", "label": "Politics", "slug": "politics"}, "junk", {"label": "no slug"}]
    raw["id"] = 24383  # a number, as some clients re-encode it
    for m in raw["markets"]:
        m.pop("negRisk", None)  # a market without its own flag takes the event's
    event = parse_event(raw)
    assert (event.id, event.slug, event.created_at, event.updated_at) == (
        "24383", "harvey-weinstein-prison-time", "2025-05-12T22:26:22.013988Z", "2026-02-13T00:03:03.036274Z")
    assert event.tags == ("politics", "")
    assert event.neg_risk and all(m.neg_risk for m in event.markets)
    raw["negRisk"] = False
    assert not any(m.neg_risk for m in parse_event(raw).markets)
    raw["id"] = True  # a boolean is no id
    with pytest.raises(GammaParseError):
        parse_event(raw)


# ------------------------------------------------------------------ execution terms (issue 16)
def test_real_fee_charging_markets_read_their_schedule_tick_and_minimum() -> None:
    """Real records (sources in tests/fixtures/gamma_real/README.md): a World Cup market charges
    the sports schedule (rate 0.03, exponent 1), an economics one 0.05; ticks 0.001 and 0.01."""
    wc = parse_event(real_event("World Cup Winner")).markets[0].terms
    assert (wc.fees_enabled, wc.fee_rate, wc.fee_exponent, wc.fee_type) == (True, 0.03, 1.0, "sports_fees_v2")
    assert (wc.tick, wc.min_size, wc.taker_base_fee_bps, wc.maker_base_fee_bps, wc.neg_risk) == (
        0.001, 5.0, 1000.0, 1000.0, True)
    assert wc.end_date == "2026-07-20T00:00:00Z"
    ticks = {m.terms.tick for raw in json.loads((REAL / "thabris_events.json").read_text())
             for m in parse_event(raw).markets}
    assert ticks == {0.01, 0.001}
    rates = {m.terms.fee_rate for raw in json.loads((REAL / "thabris_events.json").read_text())
             for m in parse_event(raw).markets}
    assert 0.05 in rates and all(r > 0 for r in rates)


def test_fee_fields_are_read_tolerantly_and_conservatively() -> None:
    from connectors.gamma.protocol import UNKNOWN_FEE_RATE, parse_terms
    free = parse_terms({"feesEnabled": False, "feeSchedule": {"rate": 0.05, "exponent": 1}}, False, None)
    assert (free.fee_rate, free.fees_enabled) == (0.0, False)
    assert parse_terms({}, False, None).fee_rate == 0.0  # says nothing about fees: fee-free
    for bad in ({"feesEnabled": True}, {"feesEnabled": True, "feeSchedule": {"rate": "x"}},
                {"feesEnabled": "true", "feeSchedule": {"rate": -1}}, {"feeSchedule": {"rate": float("nan")}}):
        assert parse_terms(bad, False, None).fee_rate == UNKNOWN_FEE_RATE, bad
    sched = parse_terms({"feesEnabled": True, "feeSchedule": {"rate": "0.25", "exponent": "2"}}, False, None)
    assert (sched.fee_rate, sched.fee_exponent) == (0.25, 2.0)
    odd = parse_terms({"orderPriceMinTickSize": "abc", "orderMinSize": -3, "negRiskFeeBips": 7}, True, "2026-01-01")
    assert (odd.tick, odd.min_size, odd.neg_risk_fee_bps, odd.neg_risk, odd.end_date) == (0.01, 5.0, 7.0, True,
                                                                                         "2026-01-01")
    t = parse_terms({"orderPriceMinTickSize": 0.5, "orderMinSize": "15"}, False, None)
    assert (t.tick, t.min_size) == (0.01, 15.0)


def test_the_events_neg_risk_fee_reaches_its_markets_terms() -> None:
    raw = real_event("World Cup Winner")
    raw["negRiskFeeBips"] = 25
    assert {m.terms.neg_risk_fee_bps for m in parse_event(raw).markets} == {25.0}
    raw["negRiskFeeBips"] = "x"
    assert {m.terms.neg_risk_fee_bps for m in parse_event(raw).markets} == {0.0}
