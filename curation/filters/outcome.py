"""Outcome: is the answer right? Exact SID hit, prefix match per level, top-k hit for ranked answers.

The arithmetic lives in `curation.rewards` (shared with the RL trainers: a correct SID is correct in both
places); this filter only applies it to the sample columns `answer_sids` (falling back to the SIDs found in
the answer text) and `target_sids`, for samples whose answer is a SID (level R3 and any listed tasks by
default). Other samples (item descriptions, alignment titles, R1/R2 chains) are kept and unscored.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa

from curation.base import FilterParams, RowFilter, RowVerdict, register, rows_nonempty, rows_where
from curation.rewards import exact_hit, ndcg_at_k, prefix_match_levels, prefix_partial_reward
from storage.answer import reasoning_and_answer
from storage.sid import SidFormatError, extract_sids, parse_sid


class OutcomeParams(FilterParams):
    require: Literal["exact", "topk", "prefix", "none"] = "exact"
    """exact: the first answer SID is a target; topk: a target is among the first k answer SIDs; prefix: the
    first answer SID shares at least `min_prefix_levels` leading codes with a target; none: score only."""
    k: int = 10
    min_prefix_levels: int = 2
    levels: list[str] = ["R3"]
    tasks: list[str] = []
    """Checked samples: level in `levels` or task in `tasks` (e.g. r0_grounding, whose answer is a SID), and
    with target SIDs. Alignment answers such as titles carry the item's SID as target but answer in text."""
    score: Literal["prefix_partial", "ndcg"] = "prefix_partial"
    """Score per sample: SIDReasoner's prefix-partial reward of the first answer SID (best over targets), or
    NDCG@k of the ranked answer."""


def _n_codes(sid: str) -> int:
    try:
        return len(parse_sid(sid))
    except SidFormatError:
        return 0


def predictions(answer_sids: list[str] | None, answer: str | None, completion: str | None) -> list[str]:
    if answer_sids:
        return list(answer_sids)
    if answer:
        return extract_sids(answer)
    return extract_sids(reasoning_and_answer(completion or "")[1])


def judge_outcome(preds: list[str], targets: list[str], p: OutcomeParams) -> tuple[bool, str | None, float]:
    """(correct under p.require, reason when not, score)."""
    first = preds[0] if preds else None
    levels = max((prefix_match_levels(first, t) for t in targets), default=0)
    full = max((_n_codes(t) for t in targets), default=0)  # codes in the longest target SID
    if p.score == "ndcg":
        score = ndcg_at_k(preds, targets, p.k)
    else:
        score = max((prefix_partial_reward(first, t) for t in targets), default=0.0)
    if p.require == "none":
        return True, None, score
    if not preds:
        return False, f"no answer SID: the answer names no well-formed SID (target {targets[0]})", score
    if p.require == "exact":
        ok = exact_hit(preds, targets, 1)
    elif p.require == "topk":
        ok = exact_hit(preds, targets, p.k)
    else:
        ok = levels >= p.min_prefix_levels
    if ok:
        return True, None, score
    where = {"exact": "as the first answer", "topk": f"in the top {p.k}",
             "prefix": f"with ≥ {p.min_prefix_levels} matching levels"}[p.require]
    return False, (f"wrong answer: predicted {first}, target {targets[0]} not hit {where} "
                   f"(first answer matches {levels}/{full} levels)"), score


@register
class OutcomeFilter(RowFilter[OutcomeParams], type_name="outcome", review_label="wrong_logic",
                    columns=("answer_sids", "answer", "_completion", "target_sids")):
    def applies_to(self, table: pa.Table) -> np.ndarray:
        p: OutcomeParams = self.params
        chosen = rows_where(table, "level", p.levels) | rows_where(table, "task", p.tasks)
        return chosen & rows_nonempty(table, "target_sids")

    def check_row(self, row: dict[str, Any]) -> RowVerdict:
        preds = predictions(row["answer_sids"], row["answer"], row["_completion"])
        return judge_outcome(preds, row["target_sids"], self.params)
