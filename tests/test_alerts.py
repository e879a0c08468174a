"""Alert delivery against local HTTP receivers speaking the real request formats and rate-limit
answers of a generic webhook, the Telegram Bot API (sendMessage) and a Discord webhook, with the
embedded Redis: filters, de-duplication, 429 with Retry-After, a failing sink while the others
deliver, restart without loss or duplicates, malformed entries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis
from aiohttp import web

from connectors.alerts.consumer import CONSUMER, AlertService
from connectors.redis.layout import RedisKeys
from polyalphascan.alert_settings import SinkSettings, load_sinks
from polyalphascan.metrics import MetricGroup
from tests.change_entries import remove, upsert
from tests.waiting import wait_for_async

PREFIX = "pas"
KEYS = RedisKeys(PREFIX)
TOKEN = "123456:SECRET-bot-token"


@dataclass
class Hit:
    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """One stand-in API: records every request; answers from `script` first (status, headers,
    body), then `default`."""

    kind: str
    script: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    default: tuple[int, dict[str, str], Any] | None = None
    hits: list[Hit] = field(default_factory=list)
    url: str = ""

    def ok(self) -> tuple[int, dict[str, str], Any]:
        if self.kind == "telegram":
            return 200, {}, {"ok": True, "result": {"message_id": len(self.hits)}}
        if self.kind == "discord":
            return 204, {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1"}, None
        return 200, {}, {"received": True}

    async def handle(self, request: web.Request) -> web.Response:
        status, headers, body = self.script.pop(0) if self.script else (self.default or self.ok())
        self.hits.append(Hit(time.monotonic(), request.path, dict(request.headers), await request.json(), status))
        if body is None:
            return web.Response(status=status, headers=headers)
        return web.Response(status=status, headers=headers, body=orjson.dumps(body), content_type="application/json")

    def delivered(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    def ids(self) -> list[str]:
        """The opportunity ids of the alerts this receiver accepted, in order."""
        out = []
        for h in self.delivered():
            if self.kind == "webhook":
                out.append(h.body["id"].removeprefix("cov-"))
            else:
                text = h.body["text"] if self.kind == "telegram" else h.body["content"]
                out.append(next(w for w in ("A", "B", "C", "L", "X", "Y") if f"cov-{w}" in text))
        return out


@pytest.fixture()
async def receivers() -> AsyncIterator[dict[str, Receiver]]:
    recs = {k: Receiver(k) for k in ("webhook", "telegram", "discord")}
    app = web.Application()
    app.router.add_post("/hook", recs["webhook"].handle)
    app.router.add_post(f"/bot{TOKEN}/sendMessage", recs["telegram"].handle)
    app.router.add_post("/api/webhooks/42/discord-token", recs["discord"].handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    base = f"http://127.0.0.1:{port}"
    recs["webhook"].url = f"{base}/hook"
    recs["telegram"].url = base
    recs["discord"].url = f"{base}/api/webhooks/42/discord-token"
    yield recs
    await runner.cleanup()


def sinks(recs: dict[str, Receiver], **per_sink: dict[str, Any]) -> list[SinkSettings]:
    base: dict[str, dict[str, Any]] = {
        "hook": {"type": "webhook", "url": recs["webhook"].url, "guaranteed_only": False},
        "phone": {"type": "telegram", "api_url": recs["telegram"].url, "bot_token": TOKEN, "chat_id": "-100777",
                  "min_net_profit": 0.02},
        "ops": {"type": "discord", "url": recs["discord"].url, "kinds": "all_no,timeframe"},
    }
    for name, cfg in base.items():
        cfg.setdefault("rate_per_second", 1000)
        cfg.setdefault("burst", 100)
        cfg.update(per_sink.get(name, {}))
    return load_sinks(**base)


class Running:
    def __init__(self, service: AlertService, task: asyncio.Task[None], metrics: MetricGroup) -> None:
        self.service, self.task, self.metrics = service, task, metrics

    async def stop(self) -> None:
        self.service.stop()
        await asyncio.wait_for(self.task, 10)


def start(redis_url: str, sink_list: list[SinkSettings], **kw: Any) -> Running:
    metrics = MetricGroup("alerts")
    service = AlertService(sink_list, redis_url, PREFIX, market_url="https://gamma.example/markets", metrics=metrics,
                           block_ms=50, backoff_initial=0.05, backoff_max=0.2, **kw)
    return Running(service, asyncio.ensure_future(service.run()), metrics)


async def groups_ready(client: redis.Redis, n: int) -> None:
    await wait_for_async(lambda: client.exists(KEYS.changes) and len(client.xinfo_groups(KEYS.changes)) == n,
                         5, "consumer groups")


async def test_formats_filters_and_deduplication(redis_server, redis_client, receivers) -> None:
    r, s = redis_client, KEYS.changes
    running = start(redis_server.url, sinks(receivers))
    await groups_ready(r, 3)
    upsert(r, s, "cov-A", profit=0.05, slug="alice-or-bob")       # all sinks
    upsert(r, s, "cov-A", profit=0.06)                           # repriced, still alive: no repeat
    upsert(r, s, "cov-L", kind="llm", guaranteed=False)          # LLM bet: only the webhook (guaranteed_only=false)
    upsert(r, s, "cov-B", kind="threshold", profit=0.01)         # below the phone's minimum, not a kind of ops
    upsert(r, s, "cov-C", profit=-0.01)                          # not profitable: nobody
    upsert(r, s, "cov-A", profit=-0.02)                          # went away (unprofitable) ...
    upsert(r, s, "cov-A", profit=0.04)                           # ... and came back: alert again
    remove(r, s, "cov-A")                                        # went away (removed) ...
    upsert(r, s, "cov-A", profit=0.03)                           # ... and came back: alert again
    upsert(r, s, "cov-B", kind="threshold", profit=0.005)        # still alive for the webhook: no repeat
    hook, phone, ops = receivers["webhook"], receivers["telegram"], receivers["discord"]
    await wait_for_async(lambda: len(hook.hits) >= 5 and len(phone.hits) >= 3 and len(ops.hits) >= 3, 10, "alerts")
    # every entry handled (acknowledged by each group) before judging that nothing more came
    await wait_for_async(lambda: all(g["pending"] == 0 and g["last-delivered-id"] == r.xinfo_stream(s)["last-generated-id"]
                                     for g in r.xinfo_groups(s)), 5, "all groups caught up")
    await running.stop()
    assert hook.ids() == ["A", "L", "B", "A", "A"]
    assert phone.ids() == ["A", "A", "A"]
    assert ops.ids() == ["A", "A", "A"]

    # generic webhook: JSON body with the trader's fields and an idempotency key
    first = hook.hits[0]
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Idempotency-Key"] == f"hook:{first.body['entry_id']}"
    assert first.body["guaranteed"] is True and first.body["label"] == "GUARANTEED ARBITRAGE"
    assert first.body["net_profit"] == pytest.approx(0.05) and first.body["size"] == 40
    assert [leg["link"] for leg in first.body["legs"]] == ["https://polymarket.com/event/alice-or-bob"] * 2
    assert first.body["data"]["explanation"] == "rule all_no"
    llm = hook.hits[1].body
    assert llm["guaranteed"] is False and llm["label"].startswith("LLM BET (not riskless")
    # Telegram sendMessage: chat id, HTML text with the legs and links, no preview
    tg = phone.hits[0]
    assert tg.path == f"/bot{TOKEN}/sendMessage"
    assert tg.body["chat_id"] == "-100777" and tg.body["parse_mode"] == "HTML"
    assert tg.body["link_preview_options"] == {"is_disabled": True}
    assert "GUARANTEED ARBITRAGE" in tg.body["text"] and "BUY NO" in tg.body["text"]
    assert 'href="https://polymarket.com/event/alice-or-bob"' in tg.body["text"]
    assert "https://gamma.example/markets/m1" in phone.hits[1].body["text"]  # no slug: the market id link
    # Discord execute webhook: content under 2000 characters, mentions disabled
    dc = ops.hits[0].body
    assert dc["allowed_mentions"] == {"parse": []} and len(dc["content"]) <= 2000
    assert "<https://polymarket.com/event/alice-or-bob>" in dc["content"]
    # the delivery log and the de-duplication set in Redis
    assert r.xlen(KEYS.alerts_log("hook")) == 5
    assert r.smembers(KEYS.alerts_alerted("hook")) == {b"cov-A", b"cov-B", b"cov-L"}
    assert running.metrics.get("delivered_phone") == 3
    assert running.metrics.get("delivery_latency_ms_phone_count") == 3


async def test_schema2_net_profit_and_size_filters(redis_server, redis_client, receivers) -> None:
    """With issue 16's fields the filters read `net_profit` (dollars at the executable size),
    not the per-set `profit`."""
    r, s = redis_client, KEYS.changes
    running = start(redis_server.url, sinks(receivers, phone={"min_net_profit": 1.0, "min_size": 20}))
    await groups_ready(r, 3)
    upsert(r, s, "cov-X", profit=0.05, net_profit=0.5, size=40)   # net below 1 $: not on the phone
    upsert(r, s, "cov-Y", profit=0.01, net_profit=2.0, size=10)   # too small
    upsert(r, s, "cov-A", profit=0.01, net_profit=3.0, size=300)  # yes
    phone = receivers["telegram"]
    await wait_for_async(lambda: len(receivers["webhook"].hits) == 3, 10, "webhook alerts")
    await wait_for_async(lambda: r.xinfo_groups(s)[1]["pending"] == 0 and len(phone.hits) >= 1, 5, "phone")
    await running.stop()
    assert phone.ids() == ["A"]
    assert "net profit $3.00 buying 300 share-sets" in phone.hits[0].body["text"]
    assert "300 sh, limit 0.400" in phone.hits[0].body["text"]


async def test_429_retry_after_is_honoured(redis_server, redis_client, receivers) -> None:
    """Each API's own 429: Telegram `parameters.retry_after`, Discord JSON `retry_after` with the
    `Retry-After` header, a webhook's `Retry-After` header; the retry waits at least that long."""
    r, s = redis_client, KEYS.changes
    receivers["telegram"].script = [(429, {}, {"ok": False, "error_code": 429,
                                               "description": "Too Many Requests: retry after 1",
                                               "parameters": {"retry_after": 1}})]
    receivers["discord"].script = [(429, {"Retry-After": "1", "X-RateLimit-Scope": "shared"},
                                    {"message": "You are being rate limited.", "retry_after": 0.6, "global": False})]
    receivers["webhook"].script = [(429, {"Retry-After": "1"}, {"error": "slow down"})]
    running = start(redis_server.url, sinks(receivers))
    await groups_ready(r, 3)
    upsert(r, s, "cov-A")
    await wait_for_async(lambda: all(len(rec.hits) == 2 for rec in receivers.values()), 10, "retries")
    await running.stop()
    waited = {k: rec.hits[1].at - rec.hits[0].at for k, rec in receivers.items()}
    assert waited["telegram"] >= 0.95 and waited["webhook"] >= 0.95
    assert waited["discord"] >= 0.55  # the JSON body's retry_after (0.6) is the precise one
    assert all(w < 5 for w in waited.values()), waited
    assert running.metrics.get("rate_limited_phone") == 1 and running.metrics.get("rate_limited_ops") == 1
    assert [rec.ids() for rec in receivers.values()] == [["A"]] * 3  # the same alert, retried, delivered once


async def test_discord_headers_pace_the_next_send(redis_server, redis_client, receivers) -> None:
    """`X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After` holds the next send back."""
    r, s = redis_client, KEYS.changes
    receivers["discord"].default = (204, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.7"}, None)
    running = start(redis_server.url, sinks(receivers))
    await groups_ready(r, 3)
    upsert(r, s, "cov-A")
    upsert(r, s, "cov-C")
    ops = receivers["discord"]
    await wait_for_async(lambda: len(ops.hits) == 2, 10, "two discord alerts")
    await running.stop()
    assert ops.hits[1].at - ops.hits[0].at >= 0.65


async def test_failing_sink_never_blocks_the_others_and_loses_nothing(redis_server, redis_client, receivers) -> None:
    r, s = redis_client, KEYS.changes
    hook = receivers["webhook"]
    hook.default = (503, {}, {"error": "down"})
    running = start(redis_server.url, sinks(receivers, hook={"max_attempts": 2}))
    await groups_ready(r, 3)
    ids = [f"cov-{i}" for i in range(20)]
    for cid in ids:
        upsert(r, s, cid, profit=0.05)
    phone, ops = receivers["telegram"], receivers["discord"]
    t0 = time.monotonic()
    await wait_for_async(lambda: len(phone.hits) == 20 and len(ops.hits) == 20, 10, "the healthy sinks")
    healthy_s = time.monotonic() - t0
    await wait_for_async(lambda: running.metrics.get("failures_unavailable_hook") >= 1, 5, "the webhook failing")
    assert {g["name"].decode(): g["pending"] for g in r.xinfo_groups(s)}["alerts:hook"] >= 1
    assert not receivers["webhook"].delivered()
    hook.default = None  # the webhook comes back: every alert arrives, in order, once
    await wait_for_async(lambda: len(hook.delivered()) >= 20 and r.xinfo_groups(s)[0]["pending"] == 0, 20,
                         "the webhook catching up")
    await running.stop()
    assert [h.body["id"] for h in hook.delivered()] == ids  # in stream order, once each
    assert r.xlen(KEYS.alerts_log("hook")) == 20
    assert healthy_s < 5


async def test_restart_resumes_without_loss_or_duplicates(redis_server, redis_client, receivers) -> None:
    r, s = redis_client, KEYS.changes
    running = start(redis_server.url, sinks(receivers))
    await groups_ready(r, 3)
    upsert(r, s, "cov-A")
    hook = receivers["webhook"]
    await wait_for_async(lambda: len(hook.hits) == 1, 10, "first alert")
    await running.stop()
    # while the process is down: A is repriced (alive: no repeat), B and C appear, and a crash
    # is simulated: the webhook's group already read C (pending, never acknowledged)
    upsert(r, s, "cov-A", profit=0.07)
    upsert(r, s, "cov-B", kind="timeframe")
    upsert(r, s, "cov-C", kind="timeframe")
    got = r.xreadgroup(KEYS.alerts_group("hook"), CONSUMER, {s: ">"}, count=3)
    assert len(got[0][1]) == 3 and r.xpending(s, KEYS.alerts_group("hook"))["pending"] == 3
    running = start(redis_server.url, sinks(receivers))
    await wait_for_async(lambda: len(hook.hits) == 3 and len(receivers["discord"].hits) == 3, 10, "resumed alerts")
    await wait_for_async(lambda: all(g["pending"] == 0 for g in r.xinfo_groups(s)), 5, "acknowledged")
    upsert(r, s, "cov-B", kind="timeframe", profit=0.09)  # still alive after the restart: no repeat
    last = r.xinfo_stream(s)["last-generated-id"]
    await wait_for_async(lambda: all(g["last-delivered-id"] == last and g["pending"] == 0
                                     for g in r.xinfo_groups(s)), 5, "the last entry handled")
    await running.stop()
    assert hook.ids() == ["A", "B", "C"]
    assert receivers["discord"].ids() == ["A", "B", "C"]
    assert receivers["telegram"].ids() == ["A", "B", "C"]


async def test_malformed_entries_and_refusals_are_counted_and_passed(redis_server, redis_client, receivers) -> None:
    r, s = redis_client, KEYS.changes
    receivers["telegram"].script = [(400, {}, {"ok": False, "error_code": 400,
                                               "description": "Bad Request: chat not found"})]
    running = start(redis_server.url, sinks(receivers))
    await groups_ready(r, 3)
    r.xadd(s, {"op": "upsert", "id": "cov-X", "data": b"{not json"})
    r.xadd(s, {"op": "explode", "id": "cov-Y"})
    r.xadd(s, {"op": "upsert", "id": "cov-Y", "data": orjson.dumps({"kind": "all_no", "legs": []})})
    upsert(r, s, "cov-A")  # refused by Telegram (permanent): counted, not retried, marked alerted
    upsert(r, s, "cov-C")
    await wait_for_async(lambda: len(receivers["telegram"].hits) == 2 and len(receivers["webhook"].hits) == 2
                         and all(g["pending"] == 0 for g in r.xinfo_groups(s)), 10,
                         "the good entries")
    await running.stop()
    assert [h.status for h in receivers["telegram"].hits] == [400, 200]  # the refusal is not retried
    assert receivers["telegram"].ids() == ["C"] and receivers["webhook"].ids() == ["A", "C"]
    assert running.metrics.get("rejected_malformed_hook") == 3
    assert running.metrics.get("failures_refused_phone") == 1
    assert b"cov-A" in r.smembers(KEYS.alerts_alerted("phone"))


def test_sink_settings_mask_secrets_and_name_bad_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyalphascan.settings import SettingsError

    monkeypatch.setenv("ALERT_SINKS", "phone,ops")
    monkeypatch.setenv("ALERT_PHONE_TYPE", "telegram")
    monkeypatch.setenv("ALERT_PHONE_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ALERT_PHONE_CHAT_ID", "42")
    monkeypatch.setenv("ALERT_PHONE_KINDS", "all_no, timeframe")
    monkeypatch.setenv("ALERT_OPS_TYPE", "discord")
    monkeypatch.setenv("ALERT_OPS_URL", "https://discord.com/api/webhooks/1/very-secret")
    phone, ops = load_sinks()
    assert phone.kinds == ["all_no", "timeframe"] and phone.guaranteed_only is True and phone.rate == (1.0, 1)
    assert TOKEN not in repr(phone) and "very-secret" not in repr(ops)
    monkeypatch.setenv("ALERT_OPS_URL", "ftp://very-secret@x")
    monkeypatch.setenv("ALERT_PHONE_MIN_NET_PROFIT", "-1")
    with pytest.raises(SettingsError) as err:
        load_sinks()
    text = str(err.value)
    assert "ALERT_PHONE_MIN_NET_PROFIT='-1' is invalid" in text and "ALERT_OPS_URL is invalid" in text
    assert "very-secret" not in text
