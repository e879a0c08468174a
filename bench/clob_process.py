"""Helper for the benchmarks: the CLOB stand-in over a universe in a separate process (so
the server and the client under test do not share one GIL)."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import orjson


def _serve(n_events: int, rate: float, conn: Any) -> None:
    from standins.clob_server import ClobFaults, ClobServer
    from standins.universe import Universe

    universe = Universe(seed=5, n_events=n_events)
    yes = []
    for e in universe.gamma_events():
        for m in e["markets"]:
            if not m["closed"]:
                ids = m["positionIds"] if m.get("version") == "v2" else orjson.loads(m["clobTokenIds"])
                yes.append((str(m["id"]), str(ids[0]), str(ids[1])))
    server = ClobServer(universe, rate=rate, faults=ClobFaults(trade_rate=0.0)).start()
    server.pause()
    conn.send((server.url, yes))
    while True:
        cmd = conn.recv()
        if cmd == "resume":
            server.resume()
        elif cmd == "pause":
            server.pause()
        elif cmd == "stats":
            conn.send({"updates_sent": server.stats.updates_sent, "frames": server.stats.frames_sent})
        elif cmd == "stop":
            server.stop()
            conn.send("stopped")
            return


class ClobProcess:
    def __init__(self, n_events: int, rate: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(n_events, rate, child), daemon=True)
        self.proc.start()
        self.url, self.yes_tokens = self.conn.recv()

    def cmd(self, c: str) -> Any:
        self.conn.send(c)
        return self.conn.recv() if c in ("stats", "stop") else None

    def close(self) -> None:
        try:
            self.cmd("stop")
        finally:
            self.proc.join(timeout=10)
