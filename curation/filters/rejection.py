"""Rejection sampling: of the n samples drawn for one prompt (same `prompt_id`), keep the best k correct.

Correct = the outcome check (`curation.filters.outcome`, default: the first answer SID is a target). Best =
highest rank score so far (the sum of the scores earlier filters gave), ties → smallest sample_id. The order
is computed with one DuckDB window over the prompt groups. Samples without targets are not rejection
sampled (kept, no verdict reason).
"""
from __future__ import annotations

from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa

from curation.base import Filter, FilterContext, FilterParams, Verdicts, register
from curation.filters.outcome import OutcomeParams, judge_outcome, predictions


class RejectionParams(FilterParams):
    k: int = 1
    correct: Literal["exact", "topk", "prefix"] = "exact"
    topk: int = 10
    min_prefix_levels: int = 2


@register
class RejectionSamplingFilter(Filter):
    type_name = "rejection_sampling"
    review_label = "other"
    Params = RejectionParams
    only_kept_default = True
    row_local = False

    def apply(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: RejectionParams = self.params
        n = table.num_rows
        if n == 0:
            return Verdicts.all_kept(0)
        op = OutcomeParams(require=p.correct, k=p.topk, min_prefix_levels=p.min_prefix_levels)
        a_sids = table.column("answer_sids").to_pylist()
        answers = table.column("answer").to_pylist()
        comps = table.column("_completion").to_pylist()
        targets = table.column("target_sids").to_pylist()
        has_target = np.array([bool(t) for t in targets])
        correct = np.zeros(n, bool)
        why: list[str | None] = [None] * n
        for i in np.flatnonzero(has_target):
            correct[i], why[i], _ = judge_outcome(predictions(a_sids[i], answers[i], comps[i]), targets[i], op)
        t = pa.table({"_row": pa.array(np.arange(n), pa.int64()), "prompt_id": table.column("prompt_id"),
                      "sample_id": table.column("sample_id"), "correct": pa.array(correct),
                      "has_target": pa.array(has_target),
                      "rank": pa.array(np.nan_to_num(ctx.rank_score, nan=0.0))})
        con = duckdb.connect()
        try:
            con.register("t", t)
            res = con.execute("""
                SELECT _row, row_number() OVER w AS pos, count(*) OVER (PARTITION BY prompt_id) AS n,
                       count(*) FILTER (WHERE correct) OVER (PARTITION BY prompt_id) AS n_correct
                FROM t WHERE has_target AND correct
                WINDOW w AS (PARTITION BY prompt_id ORDER BY rank DESC, sample_id)""").fetchall()
            totals = dict(con.execute("SELECT prompt_id, count(*) FROM t WHERE has_target GROUP BY 1").fetchall())
        finally:
            con.close()
        keep = ~has_target | correct
        reasons: list[str | None] = [None] * n
        score = np.where(has_target, correct.astype(float), np.nan)
        pids = table.column("prompt_id").to_pylist()
        for i in np.flatnonzero(has_target & ~correct):
            reasons[i] = f"rejected (incorrect): {why[i]}"
        for row, pos, _, n_correct in res:
            if pos > p.k:
                keep[row] = False
                reasons[row] = (f"rejected (not in best k): correct, but ranked {pos} of {n_correct} correct "
                                f"among {totals.get(pids[row], 0)} samples for prompt {pids[row]} (k={p.k})")
        return Verdicts(keep, reasons, score)
