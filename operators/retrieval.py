"""Candidate retrieval for the LLM step: which groups a target is compared with.

A 5,000-group universe must not put 5,000 titles in every prompt. Candidates are the groups
sharing the most informative words with the target (an inverted index over lower-cased
title words without stop words, weighted by inverse document frequency), at most
`LLM_CANDIDATES_PER_TARGET` (default 40) per prompt; words too common to tell groups apart
only fill the list when the rarer words found fewer than that. Pure, in-memory. A title is
indexed by at most its first `MAX_INDEXED_CHARS` characters and `MAX_WORDS` words, so a 1 MB
title cannot flood the postings.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

_STOP = {
    "will", "the", "a", "an", "of", "in", "on", "by", "be", "to", "and", "or", "for", "at", "is", "its", "who",
    "what", "which", "how", "before", "after", "than", "more", "less", "with", "from", "win", "wins", "winner",
    "2024", "2025", "2026", "2027", "2028", "2029", "2030", "above", "below", "over", "under", "yes", "no", "end",
    "this", "that", "does", "do", "reach", "dip", "hit", "happen", "any", "new",
}
_WORD = re.compile(r"[a-z0-9$][a-z0-9$.'&-]*")
#: characters of a title that are indexed, and the most words kept (in order of appearance)
MAX_INDEXED_CHARS = 1_000
MAX_WORDS = 64


def title_words(title: str) -> set[str]:
    """The informative words of a title: lower case, longer than two characters, no stop words
    (at most `MAX_WORDS`, from its first `MAX_INDEXED_CHARS` characters)."""
    words = dict.fromkeys(w.strip(".'-") for w in _WORD.findall(title[:MAX_INDEXED_CHARS].lower())
                          if len(w) > 2 and w not in _STOP)
    return set(list(words)[:MAX_WORDS])


class RetrievalIndex:
    """Inverted index of group titles for cheap candidate selection."""

    def __init__(self) -> None:
        self.words: dict[str, set[str]] = {}  # event id -> words
        self.postings: dict[str, set[str]] = defaultdict(set)  # word -> event ids

    def upsert(self, event_id: str, title: str) -> None:
        self.remove(event_id)
        words = title_words(title)
        self.words[event_id] = words
        for w in words:
            self.postings[w].add(event_id)

    def remove(self, event_id: str) -> None:
        for w in self.words.pop(event_id, set()):
            ids = self.postings.get(w)
            if ids is not None:
                ids.discard(event_id)
                if not ids:
                    del self.postings[w]

    def candidates(self, event_id: str, k: int) -> list[str]:
        """The `k` groups sharing the most informative words. Words in more than a fifth of
        the catalogue ("trump" among 5,000 political titles) only score groups that rarer
        words already found, unless those are fewer than `k`: then they fill up."""
        words = self.words.get(event_id, set())
        n = max(len(self.words), 1)
        scores: dict[str, float] = defaultdict(float)
        common: list[tuple[int, str]] = []
        for w in words:
            ids = self.postings.get(w, set())
            if len(ids) > max(50, n // 5):
                common.append((len(ids), w))
                continue
            idf = math.log(1 + n / len(ids))
            for other in ids:
                if other != event_id:
                    scores[other] += idf
        for size, w in sorted(common):  # rarest of the common words first
            idf = math.log(1 + n / size)
            fill = len(scores) < k
            for other in self.postings[w]:
                if other != event_id and (fill or other in scores):
                    scores[other] += idf
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [eid for eid, _ in ranked[:k]]
