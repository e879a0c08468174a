"""`polyalphascan history`: the opportunity history read from Redis (summary table, CSV), and
the live figures line shown by `polyalphascan top` and the demo."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from typing import IO, Any

import orjson
import redis
from rich.table import Table

from connectors.redis.layout import RedisKeys
from polyalphascan.lives import CSV_COLUMNS, Life, csv_row, summary_rows


def parse_time(value: str | None) -> int | None:
    """'2026-12-01', '2026-12-01T10:00', an epoch in seconds or ms, or '-2h' / '-30m' / '-1d'
    (relative to now) -> epoch ms."""
    if not value:
        return None
    v = value.strip()
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    if v.startswith("-") and v[-1] in "smhd" and v[1:-1].replace(".", "", 1).isdigit():
        unit = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[v[-1]]
        return now_ms - int(float(v[1:-1]) * unit)
    if v.replace(".", "", 1).isdigit():
        n = float(v)
        return int(n if n > 1e11 else n * 1000)
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def read_lives(client: redis.Redis, prefix: str, since_ms: int | None = None, until_ms: int | None = None, *,
               include_open: bool = True) -> list[Life]:
    """Ended lives whose end falls in [since, until], plus (with `include_open`) the open lives
    that started by `until`. Sorted by first seen."""
    keys = RedisKeys(prefix)
    ids = client.zrangebyscore(keys.history_ended, since_ms if since_ms is not None else "-inf",
                               until_ms if until_ms is not None else "+inf")
    lives: list[Life] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        lives.extend(Life.from_json(raw) for raw in client.hmget(keys.history_lives, chunk) if raw)
    if include_open:
        for raw in client.hvals(keys.history_open):
            life = Life.from_json(raw)
            if until_ms is None or life.first_ms <= until_ms:
                lives.append(life)
    return sorted(lives, key=lambda life: life.first_ms)


def write_csv(lives: list[Life], out: IO[str]) -> int:
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for life in lives:
        w.writerow(csv_row(life))
    return len(lives)


def summary_table(lives: list[Life], title: str) -> Table:
    table = Table(title=title)
    for col in ("kind", "lives", "lifetime p50 s", "lifetime p90 s", "peak net p50", "peak net max", "size p50",
                "ended by"):
        table.add_column(col, justify="left" if col in ("kind", "ended by") else "right")
    for row in summary_rows(lives):
        table.add_row(row["kind"], str(row["lives"]), _f(row["lifetime_s_p50"]), _f(row["lifetime_s_p90"]),
                      _f(row["peak_net_p50"]), _f(row["peak_net_max"]), _f(row["size_p50"]),
                      ", ".join(f"{k} {v}" for k, v in row["end_reasons"].items()))
    return table


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def read_figures(client: redis.Redis, prefix: str) -> dict[str, Any] | None:
    raw = client.get(RedisKeys(prefix).history_figures)
    if not raw:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def figures_line(fig: dict[str, Any] | None) -> str:
    """One line of the live figures (empty when no recorder has written any)."""
    if not fig:
        return ""
    window = f"{fig['window_s'] / 60:g} min"
    per_hour = ", ".join(f"{k} {v:g}/h" for k, v in fig["started_per_hour_by_kind"].items()) or "none"
    return (f"history (last {window}): opportunities {per_hour}; open {fig['open']}, ended {fig['ended']}; "
            f"lifetime p50 {_f(fig['lifetime_s_p50'])} s p90 {_f(fig['lifetime_s_p90'])} s; "
            f"detection latency p50 {_f(fig['detect_ms_p50'])} ms p90 {_f(fig['detect_ms_p90'])} ms "
            f"p99 {_f(fig['detect_ms_p99'])} ms")
