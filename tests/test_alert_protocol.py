"""Pure parts of alert delivery: stream entry parsing, filters and de-duplication, the token
bucket, message formatting per sink (escaping, limits, labels, links) and answer classification
(Retry-After in each API's form)."""

from __future__ import annotations

import time
from email.utils import formatdate

import orjson
import pytest

from connectors.alerts.protocol import (DISCORD_MAX, TELEGRAM_MAX, build_request, classify, message_html,
                                        message_markdown, retry_after)
from polyalphascan.alert_policy import AlertGate, SinkFilter, TokenBucket
from polyalphascan.opportunities import Change, MalformedChange, parse_change
from tests.change_entries import portfolio


def _entry(cid: str = "c1", **kw) -> Change:  # noqa: ANN003
    return parse_change("1700000000000-0", {b"op": b"upsert", b"id": cid.encode(),
                                            b"data": orjson.dumps(portfolio(cid, **kw))})


@pytest.mark.parametrize("fields,kind", [
    ({b"op": b"upsert", b"id": b"x", b"data": b"{"}, "bad_json"),
    ({b"op": b"upsert", b"id": b"x", b"data": b"[]"}, "bad_json"),
    ({b"op": b"upsert", b"id": b"x", b"data": b""}, "bad_data"),
    ({b"op": b"upsert", b"id": b"x", b"data": b'{"legs": [], "cost": 1, "profit": 1}'}, "no_legs"),
    ({b"op": b"upsert", b"id": b"x", b"data": b'{"legs": [{}], "cost": 1}'}, "missing_number"),
    ({b"op": b"upsert", b"id": b"x", b"data": b'{"legs": [{}], "cost": 1, "profit": "1"}'}, "missing_number"),
    ({b"op": b"zap", b"id": b"x"}, "bad_op"),
    ({b"op": b"remove"}, "bad_id"),
    ({b"op": b"remove", b"id": b"\xff"}, "bad_encoding"),
])
def test_malformed_entries_are_named(fields, kind) -> None:  # noqa: ANN001
    with pytest.raises(MalformedChange) as err:
        parse_change("1-0", fields)
    assert err.value.kind == kind
    with pytest.raises(MalformedChange):
        parse_change("not-an-id", {b"op": b"remove", b"id": b"x"})


def test_schema_tolerance() -> None:
    v1 = _entry(profit=0.05, size=40).opportunity
    assert v1 is not None and (v1.net_profit, v1.size, v1.net_is_total) == (0.05, 40, False)
    v2 = _entry(profit=0.05, net_profit=2.5, size=40).opportunity
    assert v2 is not None and (v2.net_profit, v2.net_is_total) == (2.5, True)
    data = portfolio("c", profit=0.05)
    data["max_profitable_size"] = 77
    o = parse_change("5-1", {"op": "upsert", "id": "c", "data": orjson.dumps(data)}).opportunity
    assert o is not None and o.size == 77
    removed = parse_change("5-1", {b"op": b"remove", b"id": b"c", b"reason": b"crossed_book"})
    assert (removed.op, removed.reason, removed.entry_ms) == ("remove", "crossed_book", 5)


def test_gate_alerts_once_until_gone_and_ignores_threshold_flapping() -> None:
    gate = AlertGate(SinkFilter(min_net_profit=0.03))
    seq = [(0.01, False), (0.04, True), (0.02, False), (0.05, False), (-0.01, False), (0.035, True)]
    for profit, expected in seq:
        d = gate.decide(_entry(profit=profit))
        assert d.send is expected, profit
        gate.apply(d)
    d = gate.decide(Change("2-0", 2, "remove", "c1", None, "filtered"))
    assert not d.send and d.alerted_remove == "c1"
    gate.apply(d)
    assert gate.decide(_entry(profit=0.04)).send
    f = SinkFilter(kinds=frozenset({"timeframe"}), guaranteed_only=True, min_size=50)
    assert not f.passes(_entry(kind="all_no").opportunity)
    assert not f.passes(_entry(kind="timeframe", size=40).opportunity)
    assert f.passes(_entry(kind="timeframe", size=50).opportunity)
    assert not f.passes(_entry(kind="timeframe", size=60, guaranteed=False).opportunity)


def test_token_bucket_paces_and_honours_blocks() -> None:
    b = TokenBucket(rate=2.0, burst=2)
    assert b.wait(0.0) == 0 and b.wait(0.0) == 0
    assert b.wait(0.0) == pytest.approx(0.5)
    assert b.wait(0.5) == 0
    b.block_until(10.0)
    assert b.wait(1.0) == pytest.approx(9.0)
    assert b.wait(10.0) == 0


def test_retry_after_forms() -> None:
    assert retry_after({}, b'{"ok":false,"error_code":429,"parameters":{"retry_after":15}}') == 15
    assert retry_after({"Retry-After": "1"}, b'{"message":"rate limited","retry_after":0.25,"global":false}') == 0.25
    assert retry_after({"retry-after": "7"}, b"") == 7
    now = time.time()
    assert retry_after({"Retry-After": formatdate(now + 30, usegmt=True)}, b"", now=now) == pytest.approx(30, abs=1.5)
    assert retry_after({"Retry-After": "soon"}, b"") is None
    assert retry_after({"Retry-After": "99999999"}, b"") == 3600  # capped


def test_classify_answers() -> None:
    assert classify("telegram", 200, {}, b'{"ok":true,"result":{}}').outcome == "delivered"
    assert classify("telegram", 200, {}, b'{"ok":false}').outcome == "retry"
    assert classify("telegram", 403, {}, b'{"ok":false,"error_code":403,"description":"bot was blocked"}').outcome \
        == "refused"
    a = classify("discord", 204, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"}, b"")
    assert a.outcome == "delivered" and a.pause == 1.5
    assert classify("webhook", 502, {}, b"bad gateway").outcome == "retry"
    assert classify("webhook", 404, {}, b"").outcome == "refused"
    r = classify("webhook", 429, {"Retry-After": "3"}, b"")
    assert (r.outcome, r.retry_after) == ("retry", 3)


def test_messages_escape_market_text_and_fit_the_limits() -> None:
    evil = 'Will <b>X</b> & "Y" win? @everyone [click](http://evil) </a><script>'
    change = _entry(question=evil, kind="llm", guaranteed=False, slug="x-or-y")
    html = message_html(change, "https://m")
    assert "<script>" not in html and "&lt;script&gt;" in html and "@everyone" in html
    assert "LLM BET (not riskless" in html and "https://polymarket.com/event/x-or-y" in html
    md = message_markdown(change, "https://m")
    assert "\\@everyone" in md and "\\[click\\]\\(http" in md
    req = build_request("discord", change, sink="ops", url="https://d/api/webhooks/1/t", market_url="https://m")
    assert req.json["allowed_mentions"] == {"parse": []}
    # many legs with long questions: cut to the API's limit, whole legs dropped with a note
    data = portfolio("big", question="Q" * 900)
    data["legs"] = data["legs"] * 20
    big = parse_change("1-0", {"op": "upsert", "id": "big", "data": orjson.dumps(data)})
    h, m = message_html(big, "https://m"), message_markdown(big, "https://m")
    assert len(h) <= TELEGRAM_MAX and len(m) <= DISCORD_MAX
    assert "more legs" in h and h.splitlines()[-1].startswith("<code>big</code>")  # the id line is kept
    assert "more legs" in m and m.splitlines()[-1].startswith("`big`")
    tg = build_request("telegram", big, sink="phone", url="https://api.telegram.org/botT", market_url="https://m",
                       chat_id="-1")
    assert tg.url == "https://api.telegram.org/botT/sendMessage" and tg.json["parse_mode"] == "HTML"
