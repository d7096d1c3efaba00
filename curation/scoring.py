"""Text-overlap scores shared by curation (the R2 chain filter) and trainers (OneReason-style benchmark
metrics): one implementation of tokenization, token F1, set precision/recall/F1 and event alignment.

Pure functions, no I/O. curation must not import trainers, so trainers import these from here.

- `tokens`: lower-case words (a SID counts as one token), English stopwords dropped;
- `token_f1`: bag-of-tokens F1 (SQuAD style); two empty inputs agree (1.0);
- `matched_f1`: F1 of a greedy one-to-one matching by token F1 ≥ threshold (recot's R2 filter, order-free);
- `set_prf`: precision / recall / F1 of two deduplicated sets (OneReason's action selection);
- `ordered_alignment`: the maximum-weight matching whose pairs keep both sequences' order (a weighted LCS, as
  OneReason's topic-generation scorer aligns events);
- `rouge_l_f1`: ROUGE-L F1 over tokens (longest common subsequence).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from storage.sid import SID_RE

_WORD_RE = re.compile(r"[a-z0-9]+")


def tokens(text: str | None, *, stopwords: bool = False) -> list[str]:
    """Lower-case word tokens of `text`; each well-formed SID is one token (first, in order). English stopwords
    are dropped unless `stopwords=True`."""
    if not text:
        return []
    sids = [m.group(0) for m in SID_RE.finditer(text)]
    rest = SID_RE.sub(" ", text).lower()
    words = _WORD_RE.findall(rest)
    if stopwords:
        return sids + words
    # imported here: curation.filters imports this module (r2_score), so a top-level import would be circular
    from curation.filters.quality import STOPWORDS_EN

    return sids + [w for w in words if w not in STOPWORDS_EN]


def f1(precision: float, recall: float) -> float:
    """Harmonic mean, 0.0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def token_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """Bag-of-tokens F1 of two token lists (clipped counts); both empty → 1.0, one empty → 0.0."""
    if not a or not b:
        return 1.0 if not a and not b else 0.0
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    return f1(common / len(a), common / len(b))


def matched_f1(pred: Sequence[str], ref: Sequence[str], threshold: float) -> float:
    """F1 of a greedy one-to-one matching of predicted to reference strings by token F1 ≥ threshold."""
    if not pred and not ref:
        return 1.0
    if not pred or not ref:
        return 0.0
    pt, rt = [tokens(x) for x in pred], [tokens(x) for x in ref]
    cands = sorted(((token_f1(a, b), i, j) for i, a in enumerate(pt) for j, b in enumerate(rt)),
                   key=lambda x: (-x[0], x[1], x[2]))
    used_p: set[int] = set()
    used_r: set[int] = set()
    matches = 0
    for s, i, j in cands:
        if s < threshold:
            break
        if i in used_p or j in used_r:
            continue
        used_p.add(i)
        used_r.add(j)
        matches += 1
    if matches == 0:
        return 0.0
    return f1(matches / len(pred), matches / len(ref))


def set_prf(pred: Iterable[str], gold: Iterable[str]) -> dict[str, float]:
    """Precision, recall and F1 of two sets (duplicates and blank entries ignored; an empty prediction has
    precision 0, an empty reference recall 0)."""
    p = {str(x).strip() for x in pred if x is not None and str(x).strip()}
    g = {str(x).strip() for x in gold if x is not None and str(x).strip()}
    hits = len(p & g)
    precision = hits / len(p) if p else 0.0
    recall = hits / len(g) if g else 0.0
    return {"precision": precision, "recall": recall, "f1": f1(precision, recall)}


def ordered_alignment(sim: Sequence[Sequence[float]]) -> tuple[float, list[tuple[int, int]]]:
    """Maximum total similarity over one-to-one pairs (i, j) with both i and j strictly increasing, for an
    n_ref × n_pred similarity matrix; returns (total, pairs). Events matched out of order do not count."""
    n = len(sim)
    m = len(sim[0]) if n else 0
    if not n or not m:
        return 0.0, []
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best[i][j] = max(best[i - 1][j], best[i][j - 1], best[i - 1][j - 1] + sim[i - 1][j - 1])
    pairs: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 and j > 0:       # backtrack, preferring a match when it explains the optimum
        if best[i][j] == best[i - 1][j - 1] + sim[i - 1][j - 1] and sim[i - 1][j - 1] > 0:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif best[i][j] == best[i - 1][j]:
            i -= 1
        else:
            j -= 1
    pairs.reverse()
    return best[n][m], pairs


def rouge_l_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 of two token lists (longest common subsequence); 0.0 when either is empty."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    lcs = prev[-1]
    return f1(lcs / len(b), lcs / len(a))
