"""Format: `<think>…</think>` then a non-empty answer; generation errors; the R2 evolution-chain JSON schema.

Rows synth marked as failed are dropped with a reason whose category follows the failure's kind: "parse
error: …", "truncated: …", "unresolved answer: …", or "transport error: …" (the request got no answer).

The rule and the R2 schema live in `storage.answer` (shared with synth, rewards and the judge). Structure
checks are Arrow regex *matches* of its RE2 patterns over the whole column (no capture groups, so RE2 runs its
DFA); reasons are written only for failing rows (by `storage.answer.check_format`, which agrees with the
patterns), and only R2 answers are parsed in Python, because validating JSON needs a parser; the reason
says exactly which key is missing (`logic_chain.events[1].date`).
"""
from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.base import Filter, FilterContext, FilterParams, Verdicts, register, rows_where
from storage.answer import (
    EMPTY_THINK_PATTERN,
    PLAIN_ANSWER_PATTERN,
    THINK_CLOSE,
    check_format,
    parse_logic_chain,
    think_format_pattern,
)


class FormatParams(FilterParams):
    require_think: Literal["auto", "always", "never"] = "auto"
    """auto: samples with think=True need a non-empty <think> block, think=False ones may have none or an
    empty one; always/never force one behaviour for every sample."""
    drop_errors: bool = True
    allow_text_before_think: bool = False
    r2_levels: list[str] = ["R2"]
    r2_tasks: list[str] = []
    """Samples whose level is in r2_levels, or whose task is in r2_tasks, must answer with the R2 JSON."""


@register
class FormatFilter(Filter[FormatParams], type_name="format", review_label="format"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: FormatParams = self.params
        n = table.num_rows
        comp = table.column("_completion")
        text = pc.fill_null(comp.combine_chunks() if isinstance(comp, pa.ChunkedArray) else comp, "")

        def m(pattern: str) -> np.ndarray:  # anchored/unanchored match without captures: RE2's fast DFA
            return np.asarray(pc.match_substring_regex(text, pattern).to_numpy(zero_copy_only=False), dtype=bool)

        think_shape = m(think_format_pattern(p.allow_text_before_think))
        empty_reasoning = m(EMPTY_THINK_PATTERN)
        plain = m(PLAIN_ANSWER_PATTERN)
        think_col = pc.fill_null(table.column("think"), False).to_numpy(zero_copy_only=False)
        want = {"auto": think_col, "always": np.ones(n, bool), "never": np.zeros(n, bool)}[p.require_think]
        err_col = table.column("error")
        has_error = (pc.fill_null(pc.greater(pc.utf8_length(err_col), 0), False).to_numpy(zero_copy_only=False)
                     if p.drop_errors else np.zeros(n, bool))
        well_formed = (think_shape & (want != empty_reasoning)) | (~want & plain)
        code = np.select([has_error, ~well_formed], [1, 2], 0)
        extra_col = table.column("extra") if "extra" in table.column_names else None
        reasons = _structure_reasons(code, text, err_col, want, p.allow_text_before_think, extra_col)
        # R2 answers (only rows that passed the structure checks) must hold the evolution-chain JSON.
        is_r2 = rows_where(table, "level", p.r2_levels) | rows_where(table, "task", p.r2_tasks)
        check = np.flatnonzero(is_r2 & (code == 0))
        if len(check):
            answers = [t.split(THINK_CLOSE, 1)[-1] for t in pc.take(text, pa.array(check)).to_pylist()]
            for i, a in zip(check, answers):
                _, why = parse_logic_chain(a)
                if why:
                    reasons[i] = why
        return Verdicts.from_reasons(reasons)


# The reason category of a row synth marked as failed follows extra["error_kind"] (synth/tasks/run.py): an
# answer that came back whole but does not parse is the teacher's fault and a prompt/parser question; a cut
# answer wants a larger budget; a request that never got an answer (rate limit, timeout, 5xx, connection) is
# the transport's, and re-running fixes it. Rows without a kind (older data) keep "generation error".
ERROR_CATEGORIES = {"parse": "parse error", "truncated": "truncated", "unresolved": "unresolved answer"}
TRANSPORT = "transport error"


def error_category(kind: str | None) -> str:
    if not kind:
        return "generation error"
    return ERROR_CATEGORIES.get(kind, TRANSPORT)


def _error_kind(extra: str | None) -> str | None:
    try:
        kind = json.loads(extra).get("error_kind") if extra else None
    except (ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def _structure_reasons(code: np.ndarray, text: pa.Array, err_col: pa.ChunkedArray, want: np.ndarray,
                       allow_text_before_think: bool, extra_col: pa.ChunkedArray | None = None
                       ) -> list[str | None]:
    """The reason per failing row (`code` 1 = the row carries an error, 2 = malformed, 0 = fine)."""
    reasons: list[str | None] = [None] * len(code)
    bad = np.flatnonzero(code)
    bad_text = pc.take(text, pa.array(bad, pa.int64())).to_pylist() if len(bad) else []
    for i, t in zip(bad, bad_text):
        if code[i] == 1:
            kind = _error_kind(extra_col[int(i)].as_py()) if extra_col is not None else None
            reasons[i] = f"{error_category(kind)}: {err_col[int(i)].as_py()}"
        else:
            reasons[i] = check_format(t, bool(want[i]), allow_text_before_think=allow_text_before_think)[1]
    return reasons
