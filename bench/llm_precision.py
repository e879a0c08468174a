"""Precision and recall of the *published* LLM covers, verification off and on, side by side.

Three configurations over the same catalogue and model, in one run: "no defences" (titles
not screened, no cap per target, no verification: what the scanner did before), "verification
off" (screening and the cap only) and "verification on" (the default).

The full path of the LLM step runs over a catalogue made of the evaluation set's real market
titles (tests/fixtures/llm_eval/pairs.json; one single-market group per title) plus
`--injected` events whose title is a real one with instructions to the model appended:
retrieval → discovery prompt → answer → claim checks → verification rounds → pair expansion
(the operator's `CatalogLogic` and the flow's `pair_covers`, not a re-implementation).

Against the OpenAI-compatible stand-in (default) the model answers from the labels with an
error model: each query (discovery or verification round) is wrong with probability
`--error-rate` (a wrong discovery answer drops a true item or adds a false candidate, a
tempting one first; a wrong round reverses its verdict), and the model obeys instructions
found in titles. A published cover is false when the labels do not say its premise implies
its conclusion (every cover touching an injected event is false). Recall: the labelled true
implications published, out of all of them.

Against a real OpenAI-compatible endpoint (`--base-url URL --model SLUG`, key in the
environment variable OPENROUTER_API_KEY): the same path and table; covers between titles the
set does not label are counted apart (`unlabelled`). Not run in CI (no network there).

    .venv/bin/python -m bench.llm_precision [--error-rate 0.2] [--injected 10] [--seed 1]

Prints per configuration: claims, published implications and covers, false covers and
their share, recall, LLM calls (discovery and verification) per target, LLM covers that
would be tier 1 (must be 0), and wall time; then the goals.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from operators.cover_lifecycle import pair_covers
from operators.llm_step import CatalogLogic, LLMStepConfig, make_client
from operators.pricing import evaluate
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import CoverSpec, Group, ImplicationFound, PriceUpdate, Side
from standins.labelled_oracle import LabelledOracle, LabelledPair, catalogue, load_pairs
from standins.llm_server import INJECTION, LLMFaults, LLMServer

EVAL_SET = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "llm_eval" / "pairs.json"
COVER_PROBABILITY = 0.98


@dataclass
class Outcome:
    name: str
    claims: int = 0
    implications: int = 0
    covers: int = 0
    false_covers: int = 0
    unlabelled_covers: int = 0
    true_published: int = 0
    true_total: int = 0
    discovery_calls: int = 0
    verify_calls: int = 0
    targets: int = 0
    tier1: int = 0
    injected_covers: int = 0
    wall_s: float = 0.0

    @property
    def false_share(self) -> float:
        return self.false_covers / self.covers if self.covers else 0.0

    @property
    def recall(self) -> float:
        return self.true_published / self.true_total if self.true_total else 0.0


def with_injections(groups: list[Group], n: int) -> list[Group]:
    """`n` extra events: real titles (every k-th) with the stand-in's injected instructions."""
    step = max(1, len(groups) // max(n, 1))
    out: list[Group] = []
    for i, g in enumerate(groups[::step][:n], 1):
        market = replace(g.markets[0], market_id=f"xm{i}", yes_token=f"xy{i}", no_token=f"xn{i}",
                         question=g.title + INJECTION)
        out.append(replace(g, event_id=f"x{i}", title=g.title + INJECTION, markets=(market,)))
    return out


def _tier_of_cover(spec: CoverSpec) -> int:
    """The tier pricing gives an LLM cover at prices that make it look excellent."""
    quotes = {}
    for leg in spec.legs:
        if leg.side is Side.YES:
            quotes[leg.yes_token] = PriceUpdate(leg.yes_token, 0.89, 0.90, 100.0, 100.0)
        else:
            quotes[leg.yes_token] = PriceUpdate(leg.yes_token, 0.98, 0.99, 100.0, 100.0)
    quote, _ = evaluate(spec, quotes, min_coverage=0.0, max_cost=10.0)
    return quote.tier if quote is not None else 0


def run_config(name: str, config: LLMStepConfig, groups: list[Group], truth: LabelledOracle,
               injected: set[str], server: LLMServer | None) -> Outcome:
    """One pass of the step over `groups` with a fresh cache; the published covers scored."""
    llm, cache = MetricGroup("llm"), MetricGroup("cache")
    if server is not None:
        server.reset_stats()
    logic = CatalogLogic(config, lambda: make_client(config, llm, cache), None, metrics=llm)
    t0 = time.perf_counter()
    found: list[ImplicationFound] = []
    try:
        for g in groups:
            found += logic.on_item(g)[0]
        found += logic.on_eof()[0]
    finally:
        logic.close()
    wall = time.perf_counter() - t0
    covers_of = pair_covers(COVER_PROBABILITY, llm)
    title = {g.event_id: g.title for g in groups}
    published: dict[str, CoverSpec] = {}
    for f in found:
        for spec in covers_of(f):
            published[spec.id] = spec
    out = Outcome(name, claims=int(llm.get("claims")), implications=len(logic.state.found), covers=len(published),
                  wall_s=wall, targets=int(llm.get("targets_submitted")))
    labelled = truth.true | truth.false
    got: set[tuple[str, str]] = set()
    for spec in published.values():
        p_eid = _event_of(spec.legs[1].market_id)
        c_eid = _event_of(spec.legs[0].market_id)
        pair = (title[p_eid], title[c_eid])
        got.add(pair)
        if p_eid in injected or c_eid in injected:
            out.injected_covers += 1
            out.false_covers += 1
        elif truth.implies(*pair):
            pass
        elif server is not None or pair in labelled:
            out.false_covers += 1
        else:
            out.unlabelled_covers += 1
        if _tier_of_cover(spec) == 1:
            out.tier1 += 1
    titles = set(title.values())
    true_pairs = {pair for pair in truth.true if pair[0] in titles and pair[1] in titles}
    out.true_total = len(true_pairs)
    out.true_published = len(true_pairs & got)
    if server is not None:
        out.discovery_calls = sum(server.stats.targets.values())
        out.verify_calls = server.stats.reviews
    else:
        out.verify_calls = int(llm.get("verify_requests"))
        out.discovery_calls = int(llm.get("requests")) - out.verify_calls
    return out


def _event_of(market_id: str) -> str:
    """Event id of a catalogue market ("m7" → "e7", "xm3" → "x3")."""
    return "x" + market_id[2:] if market_id.startswith("xm") else "e" + market_id[1:]


def print_table(outcomes: list[Outcome]) -> None:
    rows = [
        ("claims (discovery)", lambda o: f"{o.claims}"),
        ("implications published", lambda o: f"{o.implications}"),
        ("LLM covers published", lambda o: f"{o.covers}"),
        ("  of them false", lambda o: f"{o.false_covers} ({o.false_share:.1%})"),
        ("  touching an injected title", lambda o: f"{o.injected_covers}"),
        ("  unlabelled pairs", lambda o: f"{o.unlabelled_covers}"),
        ("recall of true implications", lambda o: f"{o.true_published}/{o.true_total} ({o.recall:.1%})"),
        ("LLM covers priced tier 1", lambda o: f"{o.tier1}"),
        ("discovery calls", lambda o: f"{o.discovery_calls}"),
        ("verification calls", lambda o: f"{o.verify_calls}"),
        ("calls per target", lambda o: f"{(o.discovery_calls + o.verify_calls) / max(o.targets, 1):.2f}"),
        ("wall time", lambda o: f"{o.wall_s:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print("".ljust(width) + "".join(o.name.rjust(22) for o in outcomes))
    for label, cell in rows:
        print(label.ljust(width) + "".join(cell(o).rjust(22) for o in outcomes))


def measure(pairs: list[LabelledPair], *, error_rate: float, injected: int, seed: int,
            base_url: str | None = None, model: str = "standin/eval", api_key: str | None = None,
            candidates: int = 40) -> list[Outcome]:
    """The three configurations over the same catalogue and the same model; the stand-in
    when `base_url` is None."""
    truth = LabelledOracle(pairs)
    groups = catalogue(pairs)
    extra = with_injections(groups, injected)
    all_groups = groups + extra
    server: LLMServer | None = None
    if base_url is None:
        server = LLMServer(truth, faults=LLMFaults(rate_wrong_answer=error_rate, obey_injections=True, seed=seed))
        server.start()
        base_url, api_key = server.url, "standin-placeholder-key"
    try:
        base = LLMStepConfig(base_url=base_url, api_key=api_key, model=model, max_concurrent=10, batch_size=20,
                             candidates_per_target=candidates, timeout_s=60, max_attempts=4, eof_timeout_s=3_600)
        configs = (("no defences", dict(verify=False, screen_titles=False, max_implications_per_target=10_000)),
                   ("verification off", dict(verify=False)),
                   ("verification on", dict(verify=True)))
        return [run_config(name, replace(base, **kw), all_groups, truth, {g.event_id for g in extra}, server)
                for name, kw in configs]
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, default=EVAL_SET)
    ap.add_argument("--error-rate", type=float, default=0.2)
    ap.add_argument("--injected", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--base-url", default=None, help="a real OpenAI-compatible endpoint instead of the stand-in")
    ap.add_argument("--model", default="openai/gpt-4o-mini")
    args = ap.parse_args()
    pairs = load_pairs(args.pairs)
    key = os.environ.get("OPENROUTER_API_KEY") if args.base_url else None
    if args.base_url and not key:
        raise SystemExit("set OPENROUTER_API_KEY to run against a real endpoint")
    where = args.base_url or f"the stand-in, {args.error_rate:.0%} wrong answers per query, obeys injections"
    n_true = sum(p.implies for p in pairs)
    print(f"evaluation set: {len(pairs)} labelled pairs ({n_true} implications, {len(pairs) - n_true} not), "
          f"+{args.injected} injected titles; model: {where}\n")
    outcomes = measure(pairs, error_rate=args.error_rate, injected=args.injected, seed=args.seed,
                       base_url=args.base_url, model=args.model if args.base_url else "standin/eval", api_key=key)
    print_table(outcomes)
    on = outcomes[-1]
    print(f"\ngoals (verification on): false covers ≤ 2 %: {on.false_share:.1%} "
          f"{'OK' if on.false_share <= 0.02 else 'MISSED'}; recall ≥ 90 %: {on.recall:.1%} "
          f"{'OK' if on.recall >= 0.9 else 'MISSED'}; tier-1 LLM covers = 0: {on.tier1} {'OK' if on.tier1 == 0 else 'MISSED'}")


if __name__ == "__main__":
    main()
