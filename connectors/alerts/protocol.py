"""Alert messages and the HTTP requests and answers of each sink type: pure, no I/O.

- `message_text` / `message_html` / `message_markdown`: the text a trader acts on: guaranteed
  arbitrage or LLM bet (labelled so the two are never confused), net profit, size, cost, and
  per leg the side, price, market question, token and a link to the market.
- `build_request(kind, ...)`: the request for one alert:
  - generic webhook: `POST <url>` with a JSON body (`event`, `entry_id`, `id`, `kind`,
    `guaranteed`, `label`, `net_profit`, `size`, `cost`, `payout`, `legs`, `text`, `data`)
    and an `Idempotency-Key` header (sink + stream entry id) so a receiver can drop the rare
    duplicate after a crash between its 2xx and our bookkeeping;
  - Telegram Bot API: `POST <api>/bot<token>/sendMessage` with `chat_id`, `text` (HTML,
    at most 4096 characters), `parse_mode: "HTML"`, `link_preview_options.is_disabled`;
  - Discord webhook (execute webhook): `POST <webhook url>` with `content` (at most 2000
    characters) and `allowed_mentions: {"parse": []}` (market text can never ping anyone).
- `classify(status, headers, body)`: what an answer means: delivered, retry (429 and 5xx,
  with the wait the server asked for: `Retry-After` header in seconds or as an HTTP date,
  Telegram's `parameters.retry_after`, Discord's JSON `retry_after`), or a permanent refusal;
  plus Discord's `X-RateLimit-Remaining` / `X-RateLimit-Reset-After` for pacing.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import orjson

from polyalphascan.opportunities import Change, Leg, Opportunity

SinkKind = Literal["webhook", "telegram", "discord"]
TELEGRAM_MAX = 4096
DISCORD_MAX = 2000
POLYMARKET_EVENT = "https://polymarket.com/event/"
#: the longest wait a server may ask for that we honour as such (longer: capped, retried later)
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    json: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return orjson.dumps(self.json)


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Literal["delivered", "retry", "refused"]
    retry_after: float | None = None  # seconds the server asked us to wait (429 / 503)
    pause: float | None = None  # bucket exhausted: wait this long before the next send (Discord headers)
    detail: str = ""


def label(o: Opportunity) -> str:
    if o.guaranteed:
        return "GUARANTEED ARBITRAGE"
    return "LLM BET (not riskless: an LLM-found implication)"


def market_link(leg: Leg, market_url: str) -> str:
    """polymarket.com/event/<slug> when the data carries the slug, else `market_url` + id."""
    if leg.slug:
        return POLYMARKET_EVENT + leg.slug
    return f"{market_url.rstrip('/')}/{leg.market_id}"


def _money(v: float) -> str:
    return f"{'-' if v < 0 else ''}${abs(v):,.2f}" if abs(v) >= 1 else f"{v:+.4f}"


@dataclass(frozen=True, slots=True)
class LegLine:
    side: str
    price: str
    question: str
    token: str
    link: str


def _leg_lines(o: Opportunity, market_url: str) -> list[LegLine]:
    out = []
    for leg in o.legs:
        if leg.shares is not None and leg.limit is not None:
            price = f"{leg.shares:g} sh, limit {leg.limit:.3f}"
        else:
            price = f"ask {leg.ask:.3f}"
        out.append(LegLine(f"BUY {leg.side}", price, leg.question or f"market {leg.market_id}", leg.token_id,
                           market_link(leg, market_url)))
    return out


def _headline(o: Opportunity) -> tuple[str, str]:
    if o.net_is_total:
        profit = f"net profit {_money(o.net_profit)} buying {o.size:g} share-sets"
    else:
        profit = f"profit {_money(o.net_profit)} per share-set, size {o.size:g}"
    cost = f"cost {o.cost:.4f} per set, pays {o.payout:g}"
    return profit, cost


def _detected(change: Change) -> str:
    o = change.opportunity
    if o is None or not o.updated_ms:
        return ""
    return f" · detected {max(0, change.entry_ms - o.updated_ms) / 1000:.2f} s after the price"


def message_text(change: Change, market_url: str) -> str:
    """Plain text (the generic webhook's `text`)."""
    o = change.opportunity
    assert o is not None
    profit, cost = _headline(o)
    lines = [f"{label(o)} · {o.kind}", f"{profit} ({cost})"]
    for i, leg in enumerate(_leg_lines(o, market_url), 1):
        lines.append(f"{i}. {leg.side} {leg.price}: {leg.question} [token {leg.token}] {leg.link}")
    lines.append(f"id {o.id}{_detected(change)}")
    return "\n".join(lines)


def _cut(lines: list[str], limit: int, more: str) -> str:
    """Join lines, dropping whole leg lines from the end (with a note) to fit `limit`."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    head, legs, tail = lines[:2], lines[2:-1], lines[-1:]
    while legs:
        legs.pop()
        text = "\n".join(head + legs + [more] + tail)
        if len(text) <= limit:
            return text
    return text[:limit]


def message_html(change: Change, market_url: str) -> str:
    """Telegram HTML: market text escaped (it is written by anyone), at most 4096 characters."""
    o = change.opportunity
    assert o is not None
    e = html.escape
    profit, cost = _headline(o)
    icon = "🟢" if o.guaranteed else "⚠️"
    lines = [f"{icon} <b>{e(label(o))}</b> · {e(o.kind)}", f"<b>{e(profit)}</b> ({e(cost)})"]
    for i, leg in enumerate(_leg_lines(o, market_url), 1):
        lines.append(f"{i}. <b>{e(leg.side)}</b> {e(leg.price)}: <a href=\"{e(leg.link, quote=True)}\">"
                     f"{e(leg.question[:300])}</a> <code>{e(leg.token[:80])}</code>")
    lines.append(f"<code>{e(o.id)}</code>{e(_detected(change))}")
    return _cut(lines, TELEGRAM_MAX, "… (more legs)")


_MD_SPECIAL = re.compile(r"([\\*_~`|>\[\]()#@:<-])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def message_markdown(change: Change, market_url: str) -> str:
    """Discord markdown: market text escaped, links in <> (no embeds), at most 2000 characters."""
    o = change.opportunity
    assert o is not None
    profit, cost = _headline(o)
    icon = "🟢" if o.guaranteed else "⚠️"
    lines = [f"{icon} **{_md(label(o))}** · {_md(o.kind)}", f"**{_md(profit)}** ({_md(cost)})"]
    for i, leg in enumerate(_leg_lines(o, market_url), 1):
        lines.append(f"{i}. **{leg.side}** {_md(leg.price)}: {_md(leg.question[:200])} "
                     f"`{leg.token[:80].replace('`', '')}` <{leg.link}>")
    lines.append(f"`{o.id.replace('`', '')}`{_md(_detected(change))}")
    return _cut(lines, DISCORD_MAX, "… (more legs)")


def _legs_json(o: Opportunity, market_url: str) -> list[dict[str, Any]]:
    return [{"side": leg.side, "market_id": leg.market_id, "token_id": leg.token_id, "question": leg.question,
             "ask": leg.ask, "shares": leg.shares, "limit": leg.limit, "link": market_link(leg, market_url)}
            for leg in o.legs]


def build_request(kind: SinkKind, change: Change, *, sink: str, url: str, market_url: str,
                  chat_id: str = "", data: dict[str, Any] | None = None) -> HttpRequest:
    """The request announcing `change` (an upsert) on a sink of type `kind`. `url` is the
    webhook URL, or for Telegram the API base with the bot token (`<api>/bot<token>`)."""
    o = change.opportunity
    if o is None:
        raise ValueError("only an upsert carries an opportunity")
    if kind == "telegram":
        return HttpRequest("POST", f"{url}/sendMessage", {
            "chat_id": chat_id, "text": message_html(change, market_url), "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True}})
    if kind == "discord":
        return HttpRequest("POST", url, {"content": message_markdown(change, market_url),
                                          "allowed_mentions": {"parse": []}})
    body = {
        "event": "opportunity", "sink": sink, "entry_id": change.entry_id, "id": o.id, "kind": o.kind,
        "guaranteed": o.guaranteed, "label": label(o), "net_profit": o.net_profit,
        "net_profit_is_total": o.net_is_total, "size": o.size, "cost": o.cost, "payout": o.payout,
        "updated_ms": o.updated_ms, "stream_ms": change.entry_ms, "legs": _legs_json(o, market_url),
        "text": message_text(change, market_url), "data": data,
    }
    return HttpRequest("POST", url, body, {"Idempotency-Key": f"{sink}:{change.entry_id}"})


def _seconds(value: Any, *, now: float | None = None) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return min(MAX_RETRY_AFTER, max(0.0, float(value))) if value == value else None
    if isinstance(value, str):
        v = value.strip()
        try:
            return _seconds(float(v))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(v).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        if now is None:
            return None
        return min(MAX_RETRY_AFTER, max(0.0, when - now))
    return None


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def retry_after(headers: dict[str, str], body: bytes, *, now: float | None = None) -> float | None:
    """The wait a server asked for: Telegram `parameters.retry_after`, Discord JSON
    `retry_after`, else the `Retry-After` header (seconds, or an HTTP date given `now`)."""
    doc = _json(body)
    if isinstance(doc, dict):
        params = doc.get("parameters")
        if isinstance(params, dict) and _seconds(params.get("retry_after")) is not None:
            return _seconds(params.get("retry_after"))
        if _seconds(doc.get("retry_after")) is not None:
            return _seconds(doc.get("retry_after"))
    h = {k.lower(): v for k, v in headers.items()}
    return _seconds(h.get("retry-after"), now=now) if "retry-after" in h else None


def classify(kind: SinkKind, status: int, headers: dict[str, str], body: bytes, *, now: float | None = None) -> Answer:
    """What the answer to one send means (see the module docstring)."""
    h = {k.lower(): v for k, v in headers.items()}
    pause = None
    if kind == "discord" and h.get("x-ratelimit-remaining", "").strip() == "0":
        pause = _seconds(h.get("x-ratelimit-reset-after", ""))
    if 200 <= status < 300:
        if kind == "telegram":
            doc = _json(body)
            if not (isinstance(doc, dict) and doc.get("ok") is True):
                return Answer("retry", detail="telegram answered 2xx without ok=true")
        return Answer("delivered", pause=pause)
    detail = body[:300].decode("utf-8", "replace")
    if status == 429 or status >= 500 or status == 408:
        return Answer("retry", retry_after=retry_after(headers, body, now=now), pause=pause,
                      detail=f"{status} {detail}")
    return Answer("refused", detail=f"{status} {detail}")
