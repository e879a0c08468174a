"""Soak: the whole scanner on the stand-ins with every fault knob on, for minutes (not in CI).

The flow runs as its own process (`polyalphascan run`, with a recovery directory) while the
stand-ins inject: dropped connections, silent stalls, malformed/duplicated/reordered
frames, Gamma 429/5xx/drift, LLM 429s and garbage, one Redis restart (comes back empty)
and one kill -9 of the flow process (restarted from its recovery directory). At the end the
faults stop, the walk pauses, and the scanner must converge to the universe's ground truth.

Prints updates processed, faults injected by kind, recoveries, items lost (goal 0), stale
prices at the end (goal 0), peak memory of the flow process and whether it kept growing.

With `--poison` the stand-ins also send hostile but well-formed-enough traffic (every poison
knob of standins/gamma_server.py, clob_server.py and llm_server.py): the run then also prints
what was injected by kind, the rejections by kind from the monitoring JSON's `errors` section,
and the flow's RSS at start and end.

    .venv/bin/python -m bench.soak [--minutes 3] [--events 300] [--poison]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import orjson
import psutil
import redis

from connectors.redis.metrics_writer import read_metrics
from connectors.redis.layout import RedisKeys
from connectors.redis.server import EmbeddedRedis
from polyalphascan_app.monitoring import performance_report
from standins.clob_server import ClobFaults
from standins.gamma_server import GammaFaults
from standins.launcher import MarketActivity, StandIns
from standins.llm_server import LLMFaults

PREFIX = "soak"


def shard_updates(ws: dict[str, float]) -> float:
    return sum(v for k, v in ws.items() if k.startswith("shard") and k.endswith("_updates"))


def start_flow(env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    """The flow as its own process; its warnings and errors go to `log_path` (appended)."""
    with open(log_path, "ab") as log_file:
        return subprocess.Popen([sys.executable, "-m", "polyalphascan_app.cli", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=log_file)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--log", default="soak-flow.log", help="where the flow process writes its warnings")
    ap.add_argument("--poison", action="store_true", help="also every poison knob of the stand-ins")
    a = ap.parse_args()
    duration = a.minutes * 60
    open(a.log, "wb").close()
    keys = RedisKeys(PREFIX)
    with EmbeddedRedis() as rs, StandIns(seed=31, n_events=a.events, clob_rate=300.0) as s, \
            tempfile.TemporaryDirectory() as rec:
        s.gamma.faults = GammaFaults(error_rate_429=0.05, retry_after_s=0.2, error_rate_5xx=0.05, drift_rate=0.01, seed=1)
        s.clob.faults = ClobFaults(malformed_rate=0.01, duplicate_rate=0.02, reorder_rate=0.02, seed=2)
        s.llm.faults = LLMFaults(latency_s=0.05, rate_429=0.1, retry_after_s=0.2, rate_invalid_json=0.05,
                                 rate_error_body=0.05, seed=3)
        if a.poison:
            s.gamma.faults.poison_rate = 1.0
            s.clob.faults.poison_rate = 0.05  # about 5 episodes a second, kinds in turn
            for kind in ("many_items", "huge_reply", "unknown_titles", "injection"):
                setattr(s.llm.faults, f"rate_{kind}", 0.05)
        env = {k: v for k, v in os.environ.items()}
        env.update({k.upper(): str(v) for k, v in s.settings_overrides().items()})
        env.update(REDIS_URL=rs.url, REDIS_KEY_PREFIX=PREFIX, RECOVERY_DIR=rec, SNAPSHOT_INTERVAL_SECONDS="2",
                   POLL_INTERVAL_SECONDS="2", FULL_RECONCILE_EVERY="3", MIN_COVERAGE="0", MAX_COST="100",
                   WS_STALL_TIMEOUT_SECONDS="5", WS_PING_INTERVAL_SECONDS="2", ENABLE_REDIS_CACHE="true",
                   LOG_LEVEL="WARNING")
        flow = start_flow(env, a.log)
        activity = MarketActivity(s, interval=3.0, seed=4).start()
        client = redis.Redis.from_url(rs.url)
        t0 = time.monotonic()
        rss: list[tuple[float, float]] = []
        faults = {"drops": 0, "stalls": 0, "redis_restarts": 0, "process_kills": 0}
        next_drop, next_stall = t0 + 20, t0 + 35
        redis_at, kill_at = t0 + duration * 0.4, t0 + duration * 0.6
        updates_before_kill = 0.0
        before_kill: dict[str, dict[str, float]] = {"ws": {}, "sink": {}}
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            try:
                rss.append((now - t0, psutil.Process(flow.pid).memory_info().rss / 2**20))
            except psutil.NoSuchProcess:
                pass
            if now >= next_drop:
                s.clob.drop_all(); faults["drops"] += 1; next_drop = now + 30
            if now >= next_stall:
                s.clob.stall(True); time.sleep(7); s.clob.stall(False); faults["stalls"] += 1; next_stall = now + 45
            if now >= redis_at:
                rs.restart(downtime=3); faults["redis_restarts"] += 1; redis_at = float("inf")
                client = redis.Redis.from_url(rs.url)
            if now >= kill_at:
                before_kill = {g: read_metrics(client, keys, g) for g in ("ws", "sink")}
                updates_before_kill = shard_updates(before_kill["ws"])
                flow.send_signal(signal.SIGKILL); flow.wait(10); faults["process_kills"] += 1
                flow = start_flow(env, a.log); kill_at = float("inf")
            time.sleep(1.0)
        # quiesce and check convergence against the ground truth
        activity.stop()
        s.gamma.faults = GammaFaults(); s.clob.faults = ClobFaults(); s.llm.faults = LLMFaults(); s.clob.stall(False)
        s.clob.pause()
        truth = s.universe.ground_truth()
        deadline = time.monotonic() + 120
        lost = stale = -1
        while time.monotonic() < deadline:
            ids = [m.decode() for m in client.zrange(keys.ranking, 0, -1)]
            data = {i: orjson.loads(client.hget(keys.portfolio(i), "data") or b"null") for i in ids}
            lost = len(set(truth.covers) - set(data)) + len(set(data) - set(truth.covers))
            stale = sum(1 for i, p in data.items() if p and i in truth.covers and abs(p["cost"] - truth.covers[i].cost) > 1e-9)
            if lost == 0 and stale == 0:
                break
            time.sleep(1.0)
        missing = sorted(set(truth.covers) - set(data))
        extra = sorted(set(data) - set(truth.covers))
        ws = read_metrics(client, keys, "ws")
        sink = read_metrics(client, keys, "sink")
        llm = read_metrics(client, keys, "llm")
        poller = read_metrics(client, keys, "poller")
        join = read_metrics(client, keys, "portfolios")
        monitoring = performance_report(client, PREFIX)
        try:
            rss.append((time.monotonic() - t0, psutil.Process(flow.pid).memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            pass
        flow.send_signal(signal.SIGTERM)
        rc = flow.wait(60)
    half = len(rss) // 2
    first, second = max(r for _, r in rss[:half]), max(r for _, r in rss[half:])
    print(f"soak: {a.minutes:g} min, {a.events} events (+ market activity every 3 s), all fault knobs on"
          + (", poison on" if a.poison else ""))
    print(f"updates processed by the shards: {updates_before_kill + shard_updates(ws):,.0f}")
    print(f"faults injected: CLOB drops {faults['drops']}, stalls {faults['stalls']}, malformed "
          f"{s.clob.stats.faults['malformed']}, duplicated {s.clob.stats.faults['duplicated']}, reordered "
          f"{s.clob.stats.faults['reordered']}; Gamma 429 {s.gamma.stats.faults['429']}, 5xx {s.gamma.stats.faults['5xx']}, "
          f"drift {s.gamma.stats.faults['drift']}; LLM {dict(s.llm.stats.outcomes)}; Redis restarts "
          f"{faults['redis_restarts']}; process kills {faults['process_kills']}")
    total = {k: before_kill["ws"].get(k, 0) + ws.get(k, 0) for k in ("reconnects", "stalls")}
    rewrites = before_kill["sink"].get("restarts_detected", 0) + sink.get("restarts_detected", 0)
    print(f"recoveries: reconnects {total['reconnects']:.0f}, stalls detected {total['stalls']:.0f}, "
          f"Redis restarts noticed and rewritten {rewrites:.0f}, resumed after kill -9 {faults['process_kills']}")
    print("LLM step after the restart: " + ", ".join(
        f"{k} {llm.get(k, 0):.0f}" for k in ("targets_submitted", "implications", "groups_retry_scheduled",
                                             "groups_failed", "backlog")))
    print("Gamma poller after the restart: " + ", ".join(
        f"{k} {poller.get(k, 0):.0f}" for k in ("errors_parse", "closure_lookups", "closure_lookups_failed")))
    print(f"join after the restart: repriced {join.get('repriced', 0):.0f}, "
          f"crossed books {join.get('crossed_book', 0):.0f}")
    print(f"items lost at the end: {lost} (goal 0); stale prices at the end: {stale} (goal 0)")
    for cid in missing:
        c = truth.covers[cid]
        print(f"  missing: {cid} legs {[(leg.market_id, leg.side.value, leg.event_id) for leg in c.legs]}")
    for cid in extra:
        print(f"  extra (no longer a cover): {cid}")
    if a.poison:
        print("poison injected: Gamma " + ", ".join(f"{k[7:]} {v}" for k, v in sorted(s.gamma.stats.faults.items())
                                                   if k.startswith("poison_")))
        print("                 CLOB " + ", ".join(f"{k[7:]} {v}" for k, v in sorted(s.clob.stats.faults.items())
                                                  if k.startswith("poison_")))
        print("                 LLM " + ", ".join(f"{k[7:]} {v}" for k, v in sorted(s.llm.stats.outcomes.items())
                                                 if k.startswith("poison_")))
        print("rejections by kind (monitoring JSON `errors`, processes alive at the end):")
        for group, counters in monitoring["errors"].items():
            print(f"  {group}: " + ", ".join(f"{k} {v:,}" for k, v in counters.items()))
        print("  ws (not in `errors`): " + ", ".join(f"{k} {ws.get(k, 0):,.0f}" for k in ("unknown_token",))
              + "; llm: " + ", ".join(f"{k} {llm.get(k, 0):,.0f}" for k in ("unmatched_titles",))
              + "; poller: " + ", ".join(f"{k} {poller.get(k, 0):,.0f}" for k in ("decoded_tolerantly",))
              + f"; join: crossed_book {join.get('crossed_book', 0):,.0f}")
        print(f"health at the end: {monitoring['health']}")
        started = next((r for t, r in rss if t >= 10.0), rss[0][1])  # once the flow has loaded and polled
        print(f"flow process RSS: start {started:.0f} MiB (10 s in), end {rss[-1][1]:.0f} MiB")
    print(f"flow process RSS: peak {max(r for _, r in rss):.0f} MiB; first half peak {first:.0f}, second half peak "
          f"{second:.0f} ({'growing' if second > first * 1.2 else 'flat'}); exit code on SIGTERM {rc}")


if __name__ == "__main__":
    main()
