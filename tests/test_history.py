"""Opportunity history: the pure life book and figures, the recorder on the embedded Redis
(lives, end reasons, restart without double counting, retention, one active recorder by lease),
and what `polyalphascan history`, `/monitoring/performance` and `top` show."""

from __future__ import annotations

import csv
import io
import time

import orjson
import pytest
import redis
from typer.testing import CliRunner

from connectors.redis.history import HistoryRecorder
from connectors.redis.layout import RedisKeys
from polyalphascan.metrics import MetricGroup
from polyalphascan.lives import Life, LifeBook, figures, percentile
from polyalphascan.opportunities import Change, opportunity_from_data
from polyalphascan_app.history import figures_line, read_lives, write_csv
from polyalphascan_app.monitoring import performance_report
from tests.change_entries import portfolio, remove, upsert
from tests.waiting import wait_for

PREFIX = "pas"
KEYS = RedisKeys(PREFIX)


def _up(cid: str, at: int, **kw) -> Change:  # noqa: ANN003
    return Change(f"{at}-0", at, "upsert", cid, opportunity_from_data(cid, portfolio(cid, **kw)), "")


def test_life_book_starts_updates_and_ends_lives() -> None:
    book = LifeBook()
    assert book.step(_up("a", 1000, profit=-0.01)).open is None  # never profitable: no life
    s = book.step(_up("a", 2000, profit=0.02, size=10, updated_ms=1900))
    assert s.open is not None and s.open.detect_ms == 100 and s.open.first_ms == 2000
    book.step(_up("a", 2500, profit=0.05, size=30))
    book.step(_up("a", 3000, profit=0.01, size=5))
    ended = book.step(_up("a", 4000, profit=0.0)).ended
    assert ended is not None and ended.end_reason == "repriced_away"
    assert (ended.first_net, ended.peak_net, ended.final_net) == (0.02, 0.05, 0.01)
    assert (ended.size, ended.peak_size, ended.updates, ended.lifetime_ms) == (5, 30, 3, 2000)
    book.step(_up("a", 5000))
    removed = book.step(Change("6000-0", 6000, "remove", "a", None, "market_closed")).ended
    assert removed is not None and removed.end_reason == "market_closed" and removed.life_id == "a@5000"
    assert book.step(Change("7000-0", 7000, "remove", "a", None, "filtered")).ended is None
    # schema 2: the net profit, not the per-set profit, makes the life
    s2 = book.step(_up("b", 8000, profit=0.05, net_profit=-0.1))
    assert s2.open is None


def test_figures_per_hour_lifetimes_and_latency() -> None:
    now = 10 * 3_600_000
    ended = [Life(f"e{i}", "all_no", True, now - 1000 * (i + 10), now - 1000 * (i + 5), 10 * i, 0.1, 0.1, 0.1, 5, 5,
                  end_ms=now - 1000 * i, end_reason="repriced_away") for i in range(10)]
    old = Life("old", "timeframe", True, now - 7_200_000, now - 7_100_000, 5, 1, 1, 1, 1, 1, end_ms=now - 7_000_000,
               end_reason="filtered")
    open_lives = [Life("o", "llm", False, now - 60_000, now - 60_000, 400, 1, 1, 1, 1, 1)]
    f = figures(ended + [old], open_lives, now, 1_800_000)
    assert f.started == 11 and f.ended == 10 and f.open == 1
    assert f.started_per_hour_by_kind == {"all_no": 20.0, "llm": 2.0}  # 10 and 1 in half an hour
    assert f.lifetime_s_p50 == 10.0 and f.lifetime_s_p90 == 10.0  # each lived 10 s
    assert f.detect_ms_p50 == pytest.approx(percentile([10 * i for i in range(10)] + [400], 0.5))
    assert f.ended_by_reason == {"repriced_away": 10}
    assert percentile([], 0.5) is None and percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)


def _recorder(url: str, **kw) -> HistoryRecorder:  # noqa: ANN003
    return HistoryRecorder(url, PREFIX, MetricGroup("history"), block_ms=50, figures_every=0.1, **kw)


def _caught_up(r: redis.Redis) -> bool:
    last = r.xinfo_stream(KEYS.changes)["last-generated-id"]
    return any(g["name"] == b"history" and g["last-delivered-id"] == last and g["pending"] == 0
               for g in r.xinfo_groups(KEYS.changes))


def test_recorder_records_lives_restarts_without_double_counting(redis_server, redis_client) -> None:
    r, s = redis_client, KEYS.changes
    now_ms = int(time.time() * 1000)
    upsert(r, s, "cov-a", profit=0.02, updated_ms=now_ms - 30)
    upsert(r, s, "cov-a", profit=0.06, size=80)
    upsert(r, s, "cov-a", profit=-0.01)                       # repriced away
    upsert(r, s, "cov-b", kind="timeframe", profit=0.03)
    remove(r, s, "cov-b", "market_closed")                    # market closed
    upsert(r, s, "cov-c", kind="llm", guaranteed=False, profit=0.01)
    remove(r, s, "cov-c", "crossed_book")
    upsert(r, s, "cov-d", kind="threshold", profit=0.04)      # still open
    r.xadd(s, {"op": "upsert", "id": "cov-x", "data": b"[1,2"})  # malformed: counted, passed
    rec = _recorder(redis_server.url).start()
    try:
        wait_for(lambda: _caught_up(r), 10, "the recorder catching up")
        wait_for(lambda: r.exists(KEYS.history_figures), 5, "figures")
        assert rec.metrics.get("rejected_malformed") == 1
    finally:
        rec.stop()
    lives = {life.id: life for life in read_lives(r, PREFIX)}
    assert set(lives) == {"cov-a", "cov-b", "cov-c", "cov-d"}
    a = lives["cov-a"]
    assert (a.end_reason, a.peak_net, a.final_net, a.peak_size) == ("repriced_away", 0.06, 0.06, 80)
    assert a.detect_ms is not None and 30 <= a.detect_ms < 5000
    assert lives["cov-b"].end_reason == "market_closed" and lives["cov-c"].end_reason == "crossed_book"
    assert lives["cov-d"].end_ms is None
    fig = orjson.loads(r.get(KEYS.history_figures))
    assert fig["started"] == 4 and fig["ended"] == 3 and fig["open"] == 1
    assert set(fig["started_per_hour_by_kind"]) == {"all_no", "timeframe", "llm", "threshold"}

    # a crash after reading, before acknowledging: the entries come back pending; a new recorder
    # applies them once against the committed state (no life counted twice)
    upsert(r, s, "cov-d", kind="threshold", profit=0.09)
    remove(r, s, "cov-d", "filtered")
    upsert(r, s, "cov-a", profit=0.02)                        # a's second life
    r.xreadgroup(KEYS.history_group, "recorder", {s: ">"}, count=10)
    assert r.xpending(s, KEYS.history_group)["pending"] == 3
    rec2 = _recorder(redis_server.url).start()
    try:
        wait_for(lambda: _caught_up(r), 10, "the second recorder catching up")
    finally:
        rec2.stop()
    lives2 = read_lives(r, PREFIX)
    assert sorted(life.life_id.split("@")[0] for life in lives2) == ["cov-a", "cov-a", "cov-b", "cov-c", "cov-d"]
    d = next(life for life in lives2 if life.id == "cov-d")
    assert (d.end_reason, d.peak_net, d.updates) == ("filtered", 0.09, 2)
    assert r.zcard(KEYS.history_ended) == 4 and r.hlen(KEYS.history_open) == 1

    # CSV export for a time range, and the summary
    out = io.StringIO()
    assert write_csv(read_lives(r, PREFIX, since_ms=now_ms - 60_000, include_open=False), out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {row["end_reason"] for row in rows} == {"repriced_away", "market_closed", "crossed_book", "filtered"}
    assert read_lives(r, PREFIX, until_ms=now_ms - 60_000, include_open=False) == []


def test_retention_trims_old_lives(redis_server, redis_client) -> None:
    r = redis_client
    old = Life("z", "all_no", True, 1000, 2000, None, 1, 1, 1, 1, 1, end_ms=3000, end_reason="filtered")
    r.hset(KEYS.history_lives, old.life_id, old.to_json())
    r.zadd(KEYS.history_ended, {old.life_id: 3000})
    rec = _recorder(redis_server.url, retention_s=3600)
    try:
        assert rec.trim() == 1
    finally:
        rec.stop()
    assert r.zcard(KEYS.history_ended) == 0 and r.hlen(KEYS.history_lives) == 0


def test_one_recorder_active_at_a_time(redis_server, redis_client) -> None:
    r, s = redis_client, KEYS.changes
    first, second = _recorder(redis_server.url).start(), _recorder(redis_server.url).start()
    try:
        wait_for(lambda: first.active or second.active, 5, "one recorder active")
        active, standby = (first, second) if first.active else (second, first)
        assert not standby.active
        upsert(r, s, "cov-a")
        wait_for(lambda: r.hexists(KEYS.history_open, "cov-a"), 5, "the life recorded")
        active.stop()  # hands the lease over
        wait_for(lambda: standby.active, 5, "the standby taking over")
        remove(r, s, "cov-a", "market_closed")
        wait_for(lambda: r.zcard(KEYS.history_ended) == 1, 5, "the life ended by the new recorder")
    finally:
        first.stop()
        second.stop()
    assert r.hlen(KEYS.history_open) == 0


def test_monitoring_top_and_cli_show_history(redis_server, redis_client, tmp_path, monkeypatch) -> None:
    from polyalphascan_app.cli import app

    r, s = redis_client, KEYS.changes
    upsert(r, s, "cov-a", profit=0.02)
    upsert(r, s, "cov-a", profit=-0.02)
    upsert(r, s, "cov-b", kind="timeframe")
    rec = _recorder(redis_server.url).start()
    try:
        wait_for(lambda: _caught_up(r) and r.exists(KEYS.history_figures)
                 and orjson.loads(r.get(KEYS.history_figures))["ended"] == 1, 10, "figures")
    finally:
        rec.stop()
    report = performance_report(r, PREFIX)
    assert report["history"]["started"] == 2 and report["history"]["ended_by_reason"] == {"repriced_away": 1}
    line = figures_line(report["history"])
    assert "all_no 1/h" in line and "timeframe 1/h" in line and "lifetime p50" in line
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    runner = CliRunner()
    res = runner.invoke(app, ["history"])
    assert res.exit_code == 0, res.output
    assert "all_no" in res.output and "repriced_away 1" in res.output and "open 1" in res.output
    out = tmp_path / "lives.csv"
    res = runner.invoke(app, ["history", "--csv", str(out), "--since", "-1h"])
    assert res.exit_code == 0, res.output
    assert "2 lives written" in res.output and len(out.read_text().splitlines()) == 3
    res = runner.invoke(app, ["top", "--once"])
    assert res.exit_code == 0 and "history (last 60 min)" in res.output
