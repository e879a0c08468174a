"""What the stand-in servers need from a market universe (so each server can be built and
tested with a tiny hand-made source, and the generated `Universe` plugs into all three).

Prices and sizes are floats here; servers render them as the decimal strings the real
protocols use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    asset_id: str
    market: str  # condition id "0x..."
    bids: tuple[tuple[float, float], ...]  # (price, size), any order
    asks: tuple[tuple[float, float], ...]
    tick_size: float = 0.01


@dataclass(frozen=True, slots=True)
class LevelChange:
    asset_id: str
    price: float
    size: float  # new aggregate size at that level (0 = removed)
    side: str  # "BUY" (bid book) | "SELL" (ask book)
    best_bid: float | None
    best_ask: float | None


@dataclass(frozen=True, slots=True)
class PriceChange:
    """One `price_change` message: level changes of one market (usually both tokens)."""

    market: str  # condition id
    changes: tuple[LevelChange, ...]


class GammaStore(Protocol):
    """Current state of every event (open and closed), already in Gamma's JSON shape."""

    def gamma_events(self) -> list[dict[str, Any]]: ...

    def gamma_tags(self) -> list[dict[str, Any]]: ...


class MarketFeed(Protocol):
    """Order books of every open token and a price process over them."""

    def token_ids(self) -> list[str]: ...

    def book(self, token_id: str) -> BookSnapshot | None: ...

    def step(self, n: int) -> list[PriceChange]:
        """Advance the price process by `n` moves; return the resulting messages."""
        ...


class ImplicationOracle(Protocol):
    """Answers an implication prompt from ground truth: given the target group's title and
    the candidate titles shown to the LLM, return
    {"implied_by": [{"title", "explanation", "counterexample_attempt"}...], "implies": [...]}
    (titles exactly as given among the candidates). An oracle may also have
    `implies(premise_title, conclusion_title) -> bool` (see `oracle_implies`) and
    `tempting(target_title, candidate_titles) -> list[str]`: the candidates a model is most
    likely to claim wrongly (the stand-in's wrong answers prefer them)."""

    def answer_implications(self, target_title: str, candidate_titles: list[str]) -> dict[str, Any]: ...


def oracle_implies(oracle: ImplicationOracle, premise_title: str, conclusion_title: str) -> bool:
    """Ground truth for a verification question: the oracle's own `implies` when it has one,
    else whether its discovery answer for the premise lists the conclusion under `implies`."""
    implies = getattr(oracle, "implies", None)
    if callable(implies):
        return bool(implies(premise_title, conclusion_title))
    answer = oracle.answer_implications(premise_title, [conclusion_title])
    return any(isinstance(i, dict) and i.get("title") == conclusion_title for i in answer.get("implies") or [])
