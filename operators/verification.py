"""Checks an LLM-claimed implication must pass before it becomes covers (pure; no I/O).

An LLM's "A implies B" is a guess: in the published study of Polymarket arbitrage, under 1 %
of the pairs an LLM called dependent were dependent. So a claim from the discovery question
becomes covers only after:

1. **Title screening** (`suspect_title`): a title that reads like instructions to a model
   ("ignore previous instructions", a role marker such as "system:", a data-block tag, a JSON
   fragment) keeps its event out of every prompt. Real market questions never contain these;
   an attacker's market would.
2. **A cap per target** (`over_target_cap`): an answer claiming more implications for one
   target than `max_per_target` is rejected whole: an honest answer names a few, an answer
   that names every candidate is an injection or a confused model.
3. **Structural checks** (`structural_reason`), which need no model: premise and conclusion
   are two different events, both still have open markets, and the pair expansion licenses at
   least one market pair (dates in order for ladders, matching labels between candidate
   lists, no NO leg on one outcome of an exclusive premise). Two outcomes of one neg-risk
   event are never claimed: claims are between events.
4. **Verification rounds** (`decide`): the joint-outcome question, asked in rounds that vary
   the statements' order and wording; each round agrees (premise YES with conclusion NO is
   impossible) or disagrees. The claim is accepted when agreements lead disagreements by
   `ACCEPT_LEAD`, rejected when disagreements lead by `REJECT_LEAD` or after `MAX_ROUNDS`
   rounds undecided. With independent errors at rate e per round, a false claim passes with
   probability (1 − r³)/(1 − r⁶) for r = (1 − e)/e — 1.5 % at e = 0.2 — and a true one with the
   same formula for r = e/(1 − e): 98.5 % (97.8 % with the cap of 15 rounds; a cap of 9 would
   cost 5 points of recall), in 4.8 rounds on average; one agreeing round alone would pass
   20 % of false claims. A real model's rounds are not independent (the same model reads the same two
   titles): the figures for one are what `bench/llm_precision.py` measures against it.
5. **Confidence** (`confidence`): the share of agreeing rounds; the cover probability is the
   configured ceiling times it, so an implication accepted 3–0 is priced above one accepted 5–2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from operators.pairs import iter_market_pairs
from polyalphascan.records import Group

ACCEPT_LEAD = 3
REJECT_LEAD = 3
MAX_ROUNDS = 15
#: implications one discovery answer may claim for its target before it is rejected whole
MAX_IMPLICATIONS_PER_TARGET = 8

ACCEPT, REJECT, ASK = "accept", "reject", "ask"

_SUSPECT = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|prompts?|system message"
    r"|(rules|text|everything) (above|before))\b"
    r"|\b(previous|prior|above) (instructions|rules|messages)\b"
    r"|\b(system|assistant|developer|user)\s*:"
    r"|\byou are (now|an? (ai|assistant|model|oracle|language model|llm))\b"
    r"|</?\s*(data|system|instructions?|prompt)\s*>"
    r"|```"
    r"|\{\s*\""
    r"|\bend of (the )?(candidates|data|input|list|document)\b"
    r"|\b(implied_by|counterexample_attempt)\b",
    re.IGNORECASE,
)


def suspect_title(title: str) -> bool:
    """True when `title` carries text addressed to a model rather than a market question."""
    return _SUSPECT.search(title[:4_000]) is not None


def over_target_cap(n_claims: int, max_per_target: int = MAX_IMPLICATIONS_PER_TARGET) -> bool:
    return n_claims > max_per_target


def structural_reason(premise: Group, conclusion: Group) -> str | None:
    """Why premise ⇒ conclusion cannot yield a cover, or None when it passes: `same_event`,
    `closed` (a side has no open market) or `no_licensed_pair`."""
    if premise.event_id == conclusion.event_id:
        return "same_event"
    if not premise.markets or not conclusion.markets:
        return "closed"
    if not any(p.market_id != c.market_id for p, c in iter_market_pairs(premise, conclusion)):
        return "no_licensed_pair"
    return None


@dataclass(frozen=True, slots=True)
class Tally:
    """Verification rounds of one claim so far."""

    agree: int = 0
    disagree: int = 0

    @property
    def rounds(self) -> int:
        return self.agree + self.disagree

    def add(self, agrees: bool) -> Tally:
        return Tally(self.agree + 1, self.disagree) if agrees else Tally(self.agree, self.disagree + 1)


def decide(t: Tally, *, accept_lead: int = ACCEPT_LEAD, reject_lead: int = REJECT_LEAD,
           max_rounds: int = MAX_ROUNDS) -> str:
    """ACCEPT, REJECT, or ASK (one more round)."""
    lead = t.agree - t.disagree
    if lead >= accept_lead:
        return ACCEPT
    if -lead >= reject_lead or t.rounds >= max_rounds:
        return REJECT
    return ASK


def confidence(t: Tally) -> float:
    """The share of rounds that agreed (0 before any round)."""
    return t.agree / t.rounds if t.rounds else 0.0
