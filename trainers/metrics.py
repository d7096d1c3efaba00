"""Evaluation metrics, as pure functions (no model, no I/O), with the OneReason benchmark's definitions
(`Kuaishou-OneRec/OneReason_Eval_Benchmark`) where it has one.

Recommendation (ranked SIDs vs the held-out target SID or SIDs):
- HR@K (= OneReason's pass@K): 1 when any target is in the top K; Recall@K (= OneReason's recall@K): the
  share of the targets in the top K (= HR@K with one target); NDCG@K: binary relevance, ideal DCG from the
  number of targets. Duplicated SIDs in a ranked list count once (`curation.rewards`).
- **Race mode** (`race_merge`): OneReason scores 64 candidates made of 32 thinking and 32 non-thinking
  samples, merged thinking first, duplicates dropped; here a list of N = the largest K is the first ⌈N/2⌉
  think SIDs followed by the first ⌊N/2⌋ no-think SIDs, deduplicated in that order (no refill).
- `per_domain`: the same metrics per catalog domain of the target item, when the catalog has several.

Perception (SID → caption; OneReason uses an LLM judge over weighted information points, recot a deterministic
stand-in): `caption_f1` is word-level F1 (lower-case words, English stopwords and SIDs dropped) of the
caption against the item's title and categories.

Evolution:
- action selection (`selection_prf`): set precision / recall / F1 of the selected items against the gold set;
- topic generation (`topic_generation_scores`): events aligned *in order* (maximum-weight ordered matching on
  the action-similarity matrix, OneReason's `dtw_max_alignment`); action similarity = F1 of exact-matching
  sub-actions (split on `;`, `；`, `/`, `、`, case and spacing normalized); action_f1 = F1 of
  (aligned total / gold events, aligned total / predicted events); logic on the aligned pairs: token F1
  (`logic_token_f1`) and OneReason's mixed 0.5·token F1 + 0.5·ROUGE-L (`logic_f1`), aggregated the same way.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from curation.rewards import hit_at_k, ndcg_at_k, recall_at_k
from curation.scoring import f1, ordered_alignment, rouge_l_f1, set_prf, token_f1, tokens

Target = str | Sequence[str]


# ---------------------------------------------------------------------------------------------------------
# recommendation
# ---------------------------------------------------------------------------------------------------------

def ranking_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[Target], ks: Sequence[int]) -> dict[str, float]:
    """Mean HR@K, Recall@K and NDCG@K over users (`ranked[i]` against `targets[i]`, one SID or several)."""
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists for {len(targets)} targets")
    n = len(targets)
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = sum(hit_at_k(r, t, k) for r, t in zip(ranked, targets)) / n if n else 0.0
        out[f"Recall@{k}"] = sum(recall_at_k(r, t, k) for r, t in zip(ranked, targets)) / n if n else 0.0
        out[f"NDCG@{k}"] = sum(ndcg_at_k(r, t, k) for r, t in zip(ranked, targets)) / n if n else 0.0
    return out


def race_merge(think: Sequence[str], no_think: Sequence[str], n: int) -> list[str]:
    """OneReason's race candidates: the first ⌈n/2⌉ thinking SIDs, then the first ⌊n/2⌋ non-thinking ones,
    duplicates dropped (first occurrence kept). May be shorter than n."""
    out: list[str] = []
    for s in list(think[:math.ceil(n / 2)]) + list(no_think[:n // 2]):
        if s not in out:
            out.append(s)
    return out


def per_domain(ranked: Sequence[Sequence[str]], targets: Sequence[Target], domains: Sequence[str],
               ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """`ranking_metrics` per domain (of each user's target item), plus the user count `n` per domain."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(domains):
        groups[d].append(i)
    return {d: {**ranking_metrics([ranked[i] for i in idx], [targets[i] for i in idx], ks), "n": float(len(idx))}
            for d, idx in sorted(groups.items())}


# ---------------------------------------------------------------------------------------------------------
# perception
# ---------------------------------------------------------------------------------------------------------

def _words(text: str | None) -> list[str]:
    return [t for t in tokens(text) if not t.startswith("<|")]


def caption_f1(caption: str | None, title: str | None, categories: Iterable[str] = ()) -> float:
    """Word-level F1 of a caption against the item's title and categories (SIDs and stopwords ignored; a
    `<think>` block, if any, is not part of the caption)."""
    text = caption or ""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    ref = _words(" ".join([title or "", *categories]))
    pred = _words(text)
    if not ref or not pred:
        return 0.0
    return token_f1(pred, ref)


# ---------------------------------------------------------------------------------------------------------
# evolution
# ---------------------------------------------------------------------------------------------------------

def selection_prf(selected: Iterable[str], gold: Iterable[str]) -> dict[str, float]:
    """Action selection: precision / recall / F1 of the selected set against the gold set."""
    return set_prf(selected, gold)


_SUB_SPLIT = re.compile(r"[;；/、]")


def sub_actions(action: Any) -> list[str]:
    """An action string split into normalized sub-actions (lower-case, single spaces, no end punctuation)."""
    parts = action if isinstance(action, list) else _SUB_SPLIT.split(str(action or ""))
    out = []
    for p in parts:
        s = re.sub(r"\s+", " ", str(p)).strip().strip(".,:!").lower()
        if s:
            out.append(s)
    return out


def action_similarity(gold: Any, pred: Any) -> float:
    """F1 of exactly matching sub-actions of two actions (0.0 when either has none)."""
    g, p = sub_actions(gold), sub_actions(pred)
    if not g or not p:
        return 0.0
    matched = sum(1 for s in g if s in p)
    return f1(matched / len(p), matched / len(g))


def _events(chain: Any) -> list[Mapping[str, Any]]:
    from curation.filters.r2_score import events_of

    return list(events_of(chain) or [])


def topic_generation_scores(pred: Any, gold: Any) -> dict[str, float]:
    """Evolution topic generation: a predicted logic chain (JSON text, dict or event list) against the gold
    chain → action_f1, logic_f1 (0.5·token F1 + 0.5·ROUGE-L on aligned pairs), logic_token_f1, aligned."""
    g, p = _events(gold), _events(pred)
    if not g:
        raise ValueError("the gold chain has no events")
    zero = {"action_f1": 0.0, "logic_f1": 0.0, "logic_token_f1": 0.0, "aligned": 0.0}
    if not p:
        return zero
    sim = [[action_similarity(ge.get("action"), pe.get("action")) for pe in p] for ge in g]
    total, pairs = ordered_alignment(sim)
    if not pairs:
        return zero
    mixed = tok = 0.0
    for i, j in pairs:
        a = tokens(str(g[i].get("logic") or ""), stopwords=True)
        b = tokens(str(p[j].get("logic") or ""), stopwords=True)
        t = token_f1(b, a) if a and b else 0.0
        tok += t
        mixed += 0.5 * t + 0.5 * rouge_l_f1(a, b)
    ng, npred = len(g), len(p)
    return {"action_f1": f1(total / npred, total / ng), "logic_f1": f1(mixed / npred, mixed / ng),
            "logic_token_f1": f1(tok / npred, tok / ng), "aligned": float(len(pairs))}


def mean_of(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Key-wise mean of metric dicts (keys of the first row), plus `n`."""
    if not rows:
        return {"n": 0.0}
    return {**{k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}, "n": float(len(rows))}
