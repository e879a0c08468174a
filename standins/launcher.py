"""Start any subset of the local stand-ins over one generated universe.

    with StandIns(seed=7, n_events=300) as s:
        s.gamma.url, s.clob.url, s.llm.url          # real loopback servers
        settings = load_settings(**s.settings_overrides())

Used by the demo, the end-to-end tests, the benchmarks and `polyalphascan standins`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from polyalphascan.logs import get_logger
from standins.clob_server import ClobServer
from standins.gamma_server import GammaServer
from standins.llm_server import LLMServer
from standins.universe import FIXED_KINDS, Universe

log = get_logger(__name__)

#: Stand-ins accept any key; this placeholder only switches the LLM path on.
STANDIN_API_KEY = "standin-placeholder-key"


@dataclass
class StandIns:
    seed: int = 7
    n_events: int = 300
    gamma: bool | GammaServer = True
    clob: bool | ClobServer = True
    llm: bool | LLMServer = True
    clob_rate: float = 200.0  # price moves per second across all markets
    universe_kwargs: dict[str, Any] = field(default_factory=dict)
    universe: Universe = field(init=False)

    def start(self) -> "StandIns":
        self.universe = Universe(seed=self.seed, n_events=self.n_events, **self.universe_kwargs)
        if self.gamma is True:
            self.gamma = GammaServer(self.universe).start()
        if self.clob is True:
            self.clob = ClobServer(self.universe, rate=self.clob_rate).start()
        if self.llm is True:
            self.llm = LLMServer(self.universe).start()
        log.info("standins_started", **self.urls())
        return self

    def urls(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in ("gamma", "clob", "llm"):
            server = getattr(self, name)
            if not isinstance(server, bool):
                out[name] = server.url
        return out

    def settings_overrides(self) -> dict[str, Any]:
        """Settings that point the scanner at these stand-ins."""
        out: dict[str, Any] = {}
        if isinstance(self.gamma, GammaServer):
            out["gamma_api_url"] = self.gamma.url
        if isinstance(self.clob, ClobServer):
            out["clob_ws_url"] = self.clob.url
        if isinstance(self.llm, LLMServer):
            out["llm_base_url"] = self.llm.url
            out["openrouter_api_key"] = STANDIN_API_KEY
            out["llm_model"] = "standin/implications"
        return out

    def stop(self) -> None:
        for name in ("llm", "clob", "gamma"):
            server = getattr(self, name)
            if not isinstance(server, bool):
                server.stop()

    def __enter__(self) -> "StandIns":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MarketActivity:
    """Makes the universe live: new events, new markets in existing events, closures.

    Every `interval` seconds one random action; each one is mirrored to the CLOB stand-in
    (`market_resolved` broadcast) so the scanner sees what a real market would show.
    """

    def __init__(self, standins: StandIns, *, interval: float = 5.0, seed: int = 1) -> None:
        self.standins = standins
        self.interval = interval
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="market-activity", daemon=True)
        self.actions: list[tuple[str, str]] = []

    def start(self) -> "MarketActivity":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.act()
            except Exception as exc:  # never kill the demo over a stand-in hiccup
                log.warning("market_activity_failed", error=repr(exc))

    def act(self) -> tuple[str, str]:
        u = self.standins.universe
        roll = self.rng.random()
        if roll < 0.5:
            ids = u.add_events(1)
            action = ("new_event", ids[0])
        elif roll < 0.75:
            events = [e for e in u.gamma_events() if not e.get("closed") and len(e.get("markets") or []) > 1
                      and u.event_kind(str(e["id"])) not in FIXED_KINDS]
            event = self.rng.choice(events)
            action = ("new_market", u.add_market(str(event["id"])))
        else:
            markets = [m for e in u.gamma_events() for m in (e.get("markets") or []) if not m.get("closed")]
            market = self.rng.choice(markets)
            info = u.close_market(str(market["id"]))
            clob = self.standins.clob
            if isinstance(clob, ClobServer):
                clob.broadcast_market_resolved(info)
            action = ("market_closed", str(market["id"]))
        self.actions.append(action)
        log.info("market_activity", action=action[0], id=action[1])
        return action
