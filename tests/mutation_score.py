"""Mutation score per module from `mutmut results --all true` (read on stdin), for `make mutate`.

killed = killed + timeout (a mutant that hangs is caught); survived and "no tests" count
against the score; mutants not yet checked are listed apart.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict


def main() -> None:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for line in sys.stdin:
        m = re.match(r"\s*(\S+?)\.x(?:_|ǁ)\S*: (.+)$", line.rstrip())
        if m:
            by_module[m.group(1)][m.group(2).strip()] += 1
    total_k = total_n = 0
    for module, c in sorted(by_module.items()):
        killed = c["killed"] + c["timeout"]
        checked = sum(v for k, v in c.items() if k != "not checked")
        total_k, total_n = total_k + killed, total_n + checked
        extra = f", {c['not checked']} not checked" if c["not checked"] else ""
        score = f"{100 * killed / checked:.1f} %" if checked else "-"
        print(f"{module:34} {killed:5} / {checked:<5} killed ({score}); survived {c['survived']}, "
              f"no tests {c['no tests']}{extra}")
    if total_n:
        print(f"{'total':34} {total_k:5} / {total_n:<5} killed ({100 * total_k / total_n:.1f} %)")


if __name__ == "__main__":
    main()
