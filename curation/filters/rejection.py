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

from curation.base import FilterContext, FilterParams, SetFilter, Verdicts, register, rows_nonempty
from curation.filters.outcome import OutcomeParams, judge_outcome, predictions


class RejectionParams(FilterParams):
    k: int = 1
    correct: Literal["exact", "topk", "prefix"] = "exact"
    topk: int = 10
    min_prefix_levels: int = 2


@register
class RejectionSamplingFilter(SetFilter[RejectionParams], type_name="rejection_sampling",
                              review_label="other"):
    def applies_to(self, table: pa.Table) -> np.ndarray:
        return rows_nonempty(table, "target_sids")  # samples without targets are not rejection sampled

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: RejectionParams = self.params
        n = table.num_rows
        op = OutcomeParams(require=p.correct, k=p.topk, min_prefix_levels=p.min_prefix_levels)
        a_sids = table.column("answer_sids").to_pylist()
        answers = table.column("answer").to_pylist()
        comps = table.column("_completion").to_pylist()
        targets = table.column("target_sids").to_pylist()
        correct = np.zeros(n, bool)
        why: list[str | None] = [None] * n
        for i in range(n):
            correct[i], why[i], _ = judge_outcome(predictions(a_sids[i], answers[i], comps[i]), targets[i], op)
        t = pa.table({"_row": pa.array(np.arange(n), pa.int64()), "prompt_id": table.column("prompt_id"),
                      "sample_id": table.column("sample_id"), "correct": pa.array(correct),
                      "rank": pa.array(np.nan_to_num(ctx.rank_score, nan=0.0))})
        con = duckdb.connect()
        try:
            con.register("t", t)
            res = con.execute("""
                SELECT _row, row_number() OVER w AS pos, count(*) FILTER (WHERE correct) OVER (PARTITION BY prompt_id)
                FROM t WHERE correct
                WINDOW w AS (PARTITION BY prompt_id ORDER BY rank DESC, sample_id)""").fetchall()
            totals = dict(con.execute("SELECT prompt_id, count(*) FROM t GROUP BY 1").fetchall())
        finally:
            con.close()
        keep = correct.copy()
        reasons: list[str | None] = [f"rejected (incorrect): {w}" if not c else None for c, w in zip(correct, why)]
        pids = table.column("prompt_id").to_pylist()
        for row, pos, n_correct in res:
            if pos > p.k:
                keep[row] = False
                reasons[row] = (f"rejected (not in best k): correct, but ranked {pos} of {n_correct} correct "
                                f"among {totals.get(pids[row], 0)} samples for prompt {pids[row]} (k={p.k})")
        return Verdicts(keep, reasons, correct.astype(float))
