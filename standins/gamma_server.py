"""Gamma REST stand-in (aiohttp) over any `GammaStore` (e.g. the generated `Universe`).

Endpoints, as the real Gamma API serves them:
- `GET /events/keyset`: `{"events": [...], "next_cursor": "..."}`; cursor sent back as
  `after_cursor`; `next_cursor` absent on the last page; `limit` clamped to 100 (default
  20); `order` (camelCase field: id, createdAt, updatedAt, endDate, volume, liquidity;
  snake_case → 422), `ascending` (default true), `closed`, `tag_slug`, `tag_id`; `offset` → 422.
- `GET /events`, `GET /markets`: legacy offset paging, a bare JSON array, deprecation
  headers, 422 past offset 2000; `/markets` defaults to `closed=false`.
- `GET /events/{id}`, `GET /tags`, `GET /status`.

Fault knobs (`GammaFaults`, mutable at runtime): latency, 429 with `Retry-After`, 5xx,
truncated bodies, schema drift in individual records, keyset unavailable (503), and poison.

Poison (`poison_rate`, `poison_kinds`): hostile records added to the first page of a listing
(`/events/keyset` without a cursor, `/events` at offset 0), at seeded positions among the real
events of that page, which are all still served. They are not part of the store (its ground
truth never holds them; `/events/{id}` does not know them) and each one injected is counted
in `stats.faults["poison_<kind>"]`. Kinds (`POISON_KINDS`): a date ladder labelled
"Q1 0000"/"Q2 0000", `endDate` as a number, `markets: ["x"]`, `tags: 5`, an id "²", an id
of 5,000 digits, a valid-looking id 10**18 far above the rest, a title holding the JSON
escape \\ud800 (written raw into the body bytes), a 1 MB title, a question with rich markup
("[/bold]"). The parseable ones carry asset ids no order book has (`poison-...`), so they
never get a price.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from polyalphascan.http_thread import ThreadedHttpServer
from standins.protocols import GammaStore

OFFSET_CAP = 2000
MAX_LIMIT = 100
ORDER_FIELDS = {"id", "createdAt", "updatedAt", "endDate", "startDate", "volume", "liquidity"}


DRIFT_KINDS = ("no_title", "text_id", "broken_tokens", "markets_object", "harmless")
POISON_KINDS = ("label_q1_0000", "end_date_number", "markets_strings", "tags_number", "id_superscript",
                "id_5000_digits", "id_jump", "surrogate_title", "huge_title", "markup_question")
#: Stands in the dumped body where the raw escape \\ud800 goes (orjson cannot write a lone surrogate).
_SURROGATE_MARK = "@@POISON_SURROGATE@@"
#: Parseable poison records get plausible ids just below the universe's (events from 100,001, markets
#: from 1,000,001), so only the `id_jump` record is an id far above the rest.
POISON_ID_BASE = 90_000
POISON_MARKET_ID_BASE = 900_000


@dataclass
class GammaFaults:
    latency_s: float = 0.0
    error_rate_429: float = 0.0
    retry_after_s: float = 1.0
    error_rate_5xx: float = 0.0
    truncate_rate: float = 0.0
    drift_rate: float = 0.0  # per record: a renamed/missing field, a wrong type
    drift_kinds: tuple[str, ...] = DRIFT_KINDS  # which of them (default: any)
    keyset_enabled: bool = True
    poison_rate: float = 0.0  # per first page of a listing: the poison records are added (1.0: always)
    poison_kinds: tuple[str, ...] = POISON_KINDS  # which of them
    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


def _poison_market(kind: str, n: int, question: str, label: str = "", i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"id": str(POISON_MARKET_ID_BASE + 10 * n + i), "question": question, "slug": f"poison-{kind}-{n}-{i}",
            "conditionId": f"0xpoison{n:04d}{i:02d}", "groupItemTitle": label,
            "clobTokenIds": orjson.dumps([f"poison-{kind}-{i}-yes", f"poison-{kind}-{i}-no"]).decode(),
            "outcomes": '["Yes", "No"]', "outcomePrices": '["0.5", "0.5"]', "active": True, "closed": False,
            "endDate": "2030-12-31T00:00:00Z", "liquidityNum": 1000, "volumeNum": 1000, **extra}


def poison_event(kind: str) -> dict[str, Any]:
    """One hostile listing record of `kind` (see `POISON_KINDS`); deterministic."""
    n = POISON_KINDS.index(kind) + 1
    eid = str(POISON_ID_BASE + n)
    title = f"Will the poison record {n} resolve?"
    base: dict[str, Any] = {"id": eid, "slug": f"poison-{kind}", "title": title, "description": "poison",
                            "endDate": "2030-12-31T00:00:00Z", "createdAt": "2025-01-01T00:00:00Z",
                            "active": True, "closed": False, "negRisk": False,
                            "tags": [{"id": "1", "slug": "poison", "label": "Poison"}]}
    if kind == "label_q1_0000":  # a cumulative-wording ladder whose dates are year 0000
        base["title"] = f"Poison ladder {n} by ...?"
        base["markets"] = [_poison_market(kind, n, f"Poison ladder {n} by {q} 0000?", f"{q} 0000", i)
                           for i, q in enumerate(("Q1", "Q2"))]
        return base
    if kind == "end_date_number":
        base["endDate"] = 1767225600
        base["markets"] = [_poison_market(kind, n, f"{title} (numeric end date)", endDate=1767225600.5)]
        return base
    base["markets"] = [_poison_market(kind, n, title)]
    if kind == "markets_strings":
        base["markets"] = ["x"]
    elif kind == "tags_number":
        base["tags"] = 5
    elif kind == "id_superscript":
        base["id"] = "\u00b2"
    elif kind == "id_5000_digits":
        base["id"] = "9" * 5000
    elif kind == "id_jump":
        base["id"] = str(10**18)
    elif kind == "surrogate_title":
        base["title"] = f"Poison title {n} {_SURROGATE_MARK} with a lone surrogate"
    elif kind == "huge_title":
        base["title"] = f"Poison huge title {n} " + "x" * (1 << 20)
    elif kind == "markup_question":
        base["markets"] = [_poison_market(kind, n, f"Will [/bold] [red]poison {n}[/red] [link=x] happen?")]
    return base


@dataclass
class GammaStats:
    requests: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    faults: Counter[str] = field(default_factory=Counter)


def _sort_value(event: dict[str, Any], order: str) -> Any:
    if order == "id":
        return int(event["id"])
    value = event.get(order)
    if order in ("volume", "liquidity"):
        try:
            return float(value or 0)
        except (TypeError, ValueError):
            return 0.0
    return value or ""


def _encode_cursor(key: tuple[Any, int]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode()


def _decode_cursor(cursor: str) -> tuple[Any, int] | None:
    try:
        value, ident = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return value, int(ident)
    except Exception:
        return None


def _drift(record: dict[str, Any], rng: random.Random, kinds: tuple[str, ...]) -> dict[str, Any]:
    """One kind of schema drift, as seen in the wild."""
    rec = copy.deepcopy(record)
    choice = rng.choice(kinds)
    raw_markets = rec.get("markets")
    # a poison record may hold anything there: drift only touches market objects
    markets = [m for m in raw_markets if isinstance(m, dict)] if isinstance(raw_markets, list) else []
    if choice == "no_title":
        rec.pop("title", None)  # missing required field
    elif choice == "text_id":
        rec["id"] = f"evt-{rec.get('id')}"  # non-numeric id
    elif choice == "broken_tokens" and markets:
        markets[0]["clobTokenIds"] = "[not json"  # broken JSON-encoded string
        markets[0]["positionIds"] = "[not json"
    elif choice == "markets_object":
        rec["markets"] = {"unexpected": "object"}  # wrong type
    else:
        for m in markets:  # harmless drift: numbers as strings, extra fields
            m["liquidityNum"] = str(m.get("liquidityNum", "0"))
            m["newUndocumentedField"] = {"x": 1}
    return rec


class GammaServer(ThreadedHttpServer):
    name = "gamma-standin"

    def __init__(self, store: GammaStore, host: str = "127.0.0.1", port: int = 0,
                 faults: GammaFaults | None = None) -> None:
        super().__init__(host, port)
        self.store = store
        self.faults = faults or GammaFaults()
        self.stats = GammaStats()
        self._version: Any = object()
        self._events: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        self._sorted: dict[str, list[dict[str, Any]]] = {}
        self._index_lock = threading.Lock()

    # ------------------------------------------------------------------ index
    def _index(self) -> None:
        version = getattr(self.store, "version", None)
        with self._index_lock:
            if version is not None and version == self._version:
                return
            self._events = self.store.gamma_events()
            self._by_id = {str(e["id"]): e for e in self._events}
            self._sorted = {}
            self._version = version if version is not None else object()

    def _ordered(self, order: str, ascending: bool) -> list[dict[str, Any]]:
        key = f"{order}:{ascending}"
        with self._index_lock:
            got = self._sorted.get(key)
            if got is None:
                got = sorted(self._events, key=lambda e: (_sort_value(e, order), int(e["id"])), reverse=not ascending)
                self._sorted[key] = got
            return got

    @staticmethod
    def _filter(events: list[dict[str, Any]], q: Any) -> list[dict[str, Any]]:
        closed = q.get("closed")
        tag_slugs = set(q.getall("tag_slug", []))
        tag_ids = set(q.getall("tag_id", []))
        out = events
        if closed is not None:
            want = closed.lower() == "true"
            out = [e for e in out if bool(e.get("closed")) == want]
        if tag_slugs or tag_ids:
            out = [e for e in out if any(t.get("slug") in tag_slugs or str(t.get("id")) in tag_ids
                                         for t in e.get("tags") or [])]
        return out

    # ------------------------------------------------------------------ faults
    async def _fault(self, path: str) -> web.Response | None:
        f = self.faults
        if f.latency_s > 0:
            await asyncio.sleep(f.latency_s)
        if f.error_rate_429 and f.rng.random() < f.error_rate_429:
            self.stats.faults["429"] += 1
            return web.json_response({"error": "Too Many Requests"}, status=429,
                                     headers={"Retry-After": f"{f.retry_after_s:g}"})
        if f.error_rate_5xx and f.rng.random() < f.error_rate_5xx:
            self.stats.faults["5xx"] += 1
            return web.json_response({"error": "upstream error"}, status=f.rng.choice([500, 502, 503]))
        return None

    def _poison(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`records` (a first page) with the poison records at seeded positions, when the knob says so."""
        f = self.faults
        if not (f.poison_rate and f.poison_kinds) or f.rng.random() >= f.poison_rate:
            return records
        out = list(records)
        for kind in f.poison_kinds:
            out.insert(f.rng.randint(0, len(out)), poison_event(kind))
            self.stats.faults[f"poison_{kind}"] += 1
        return out

    def _body(self, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
        f = self.faults
        if f.drift_rate:
            records = payload.get("events") if isinstance(payload, dict) else payload
            if isinstance(records, list):
                for i, rec in enumerate(records):
                    if f.rng.random() < f.drift_rate:
                        records[i] = _drift(rec, f.rng, f.drift_kinds)
                        self.stats.faults["drift"] += 1
        body = orjson.dumps(payload)
        if _SURROGATE_MARK.encode() in body:  # the raw JSON escape of a lone surrogate, as a hostile server sends it
            body = body.replace(_SURROGATE_MARK.encode(), b"\\ud800")
        if f.truncate_rate and f.rng.random() < f.truncate_rate:
            self.stats.faults["truncated"] += 1
            body = body[: max(1, len(body) // 2)]
        return web.Response(body=body, content_type="application/json", headers=headers)

    # ------------------------------------------------------------------ handlers
    def _order_params(self, q: Any) -> tuple[str, bool] | web.Response:
        order = q.get("order", "id")
        if order not in ORDER_FIELDS:
            return web.json_response({"type": "validation error", "error": "order fields are not valid"}, status=422)
        ascending = q.get("ascending", "true").lower() != "false"
        return order, ascending

    def _limit(self, q: Any, default: int = 20) -> int:
        try:
            return max(1, min(MAX_LIMIT, int(q.get("limit", default))))
        except ValueError:
            return default

    async def events_keyset(self, request: web.Request) -> web.Response:
        self.stats.requests["/events/keyset"] += 1
        if (fault := await self._fault("/events/keyset")) is not None:
            return fault
        if not self.faults.keyset_enabled:
            return web.json_response({"error": "keyset pagination is not configured"}, status=503)
        q = request.query
        if "offset" in q:
            return web.json_response({"error": "offset is not allowed on keyset endpoints"}, status=422)
        parsed = self._order_params(q)
        if isinstance(parsed, web.Response):
            return parsed
        order, ascending = parsed
        limit = self._limit(q)
        self._index()
        events = self._filter(self._ordered(order, ascending), q)
        start = 0
        cursor = q.get("after_cursor")
        if cursor:
            after = _decode_cursor(cursor)
            if after is not None:
                # first item strictly after the cursor's (value, id) in this order
                for i, e in enumerate(events):
                    k = (_sort_value(e, order), int(e["id"]))
                    if (k > tuple(after)) if ascending else (k < tuple(after)):
                        start = i
                        break
                else:
                    start = len(events)
        page = events[start : start + limit]
        payload: dict[str, Any] = {"events": copy.deepcopy(page) if self.faults.drift_rate else page}
        if start + limit < len(events) and page:
            last = page[-1]
            payload["next_cursor"] = _encode_cursor((_sort_value(last, order), int(last["id"])))
        if not cursor:
            payload["events"] = self._poison(payload["events"])
        self.stats.pages += 1
        return self._body(payload)

    async def events_legacy(self, request: web.Request) -> web.Response:
        self.stats.requests["/events"] += 1
        if (fault := await self._fault("/events")) is not None:
            return fault
        q = request.query
        parsed = self._order_params(q)
        if isinstance(parsed, web.Response):
            return parsed
        order, ascending = parsed
        offset = int(q.get("offset", 0) or 0)
        if offset > OFFSET_CAP:
            return web.json_response({"type": "validation error",
                                      "error": "offset too large, use /events/keyset for deeper pagination"}, status=422)
        limit = self._limit(q)
        self._index()
        events = self._filter(self._ordered(order, ascending), q)
        page = events[offset : offset + limit]
        self.stats.pages += 1
        if offset == 0:
            page = self._poison(page)
        return self._body(copy.deepcopy(page) if self.faults.drift_rate else page,
                          headers={"deprecation": "true", "sunset": "Fri, 01 May 2026 00:00:00 GMT"})

    async def markets_legacy(self, request: web.Request) -> web.Response:
        self.stats.requests["/markets"] += 1
        if (fault := await self._fault("/markets")) is not None:
            return fault
        q = request.query
        offset = int(q.get("offset", 0) or 0)
        if offset > OFFSET_CAP:
            return web.json_response({"type": "validation error",
                                      "error": "offset too large, use /markets/keyset for deeper pagination"}, status=422)
        self._index()
        want_closed = q.get("closed", "false").lower() == "true"
        markets = [dict(m, events=[{"id": e["id"], "slug": e["slug"], "title": e["title"]}])
                   for e in self._ordered("id", True) for m in e.get("markets") or []
                   if bool(m.get("closed")) == want_closed]
        return self._body(markets[offset : offset + self._limit(q)],
                          headers={"deprecation": "true", "sunset": "Fri, 01 May 2026 00:00:00 GMT"})

    async def event_by_id(self, request: web.Request) -> web.Response:
        self.stats.requests["/events/{id}"] += 1
        if (fault := await self._fault("/events/{id}")) is not None:
            return fault
        self._index()
        event = self._by_id.get(request.match_info["id"])
        if event is None:
            return web.json_response({"error": "not found"}, status=404)
        return self._body(event)

    async def tags(self, request: web.Request) -> web.Response:
        self.stats.requests["/tags"] += 1
        tags = self.store.gamma_tags()
        offset = int(request.query.get("offset", 0) or 0)
        return web.json_response(tags[offset : offset + self._limit(request.query, 100)])

    async def status(self, _request: web.Request) -> web.Response:
        return web.Response(text="OK")

    # ------------------------------------------------------------------ app
    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/events/keyset", self.events_keyset)
        app.router.add_get("/events", self.events_legacy)
        app.router.add_get("/events/{id}", self.event_by_id)
        app.router.add_get("/markets", self.markets_legacy)
        app.router.add_get("/tags", self.tags)
        app.router.add_get("/status", self.status)
        return app
