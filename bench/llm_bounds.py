"""How long the bounded LLM reply path takes on hostile input (issue 14): a reply with 200k
items, a reply over the byte cap, a prompt with a 1 MB title among the candidates, and pair
expansion over two 60-outcome events. Prints the figures; asserts nothing.

    .venv/bin/python -m bench.llm_bounds
"""

from __future__ import annotations

import time
from collections import Counter

import orjson

from connectors.llm.protocol import (
    MAX_REPLY_BYTES,
    LLMAnswerError,
    build_messages,
    item_cap,
    match_answer,
    read_answer,
)
from operators.pairs import expand_implication
from polyalphascan.records import Group, GroupImplication, GroupMarket, PartitionType


def timed(label: str, fn) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<55} {1000 * (time.perf_counter() - t0):8.2f} ms   {out}")


def main() -> None:
    cands = [f"Will candidate number {i} win the 2028 election?" for i in range(40)]
    by_id = {str(i): t for i, t in enumerate(cands, 1)}  # the ids the prompt gives the candidates
    cap = item_cap(len(cands))
    reply = orjson.dumps({"implied_by": ["2"] + ["u"] * 200_000}).decode()

    def read_and_match() -> str:
        rejected: Counter[str] = Counter()
        answer = read_answer(reply, max_items=cap, rejected=rejected)
        matched, unmatched = match_answer(answer, by_id, max_items=cap, rejected=rejected)
        return f"matched={sum(map(len, matched.values()))} unmatched={unmatched} {dict(rejected)}"

    timed(f"reply with 200k items ({len(reply) // 1024} KiB)", read_and_match)
    big = '{"implies": [], "pad": "' + "x" * (20 * MAX_REPLY_BYTES) + '"}'

    def refuse() -> str:
        try:
            read_answer(big)
        except LLMAnswerError as exc:
            return type(exc).__name__
        return "read"

    timed("reply of 20 MiB (refused unread)", refuse)
    huge = "Will it happen " + "\x00 word " * 150_000
    timed("prompt with a 1 MB title among 40 candidates",
          lambda: f"{len(build_messages(huge, [huge] + cands)[1]['content'])} chars")

    def wide(eid: str, kind: PartitionType) -> Group:
        return Group(eid, eid, kind, tuple(GroupMarket(f"{eid}{i}", "q", f"o{i}", "y", "n") for i in range(60)))

    timed("pairs over two 60-outcome events",
          lambda: f"{len(expand_implication(GroupImplication('p', 'c', 'implies', 'p'), wide('p', PartitionType.CANDIDATE), wide('c', PartitionType.TIMEFRAME), 0.9))} covers")  # noqa: E501


if __name__ == "__main__":
    main()
