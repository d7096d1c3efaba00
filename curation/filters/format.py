"""Format: `<think>…</think>` then a non-empty answer; generation errors; the R2 evolution-chain JSON schema.

Structure checks are Arrow regex *matches* over the whole column (no capture groups, so RE2 runs its DFA:
tens of ms per 100 MB of text); reasons are written only for failing rows, and only R2 answers are parsed in
Python, because validating JSON needs a parser. The R2 schema is a pydantic model so the reason can
say exactly which key is missing (`logic_chain.events[1].date`).
"""
from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, ValidationError

from curation.base import Filter, FilterContext, FilterParams, Verdicts, register, rows_where



class R2Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: str
    logic: str
    date: str


class R2Chain(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    events: list[R2Event]


class R2Answer(BaseModel):
    model_config = ConfigDict(extra="allow")
    logic_chain: R2Chain


_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json_text(answer: str) -> str:
    """The JSON object inside an answer: a ```json fence if present, else from the first '{' to the last '}'."""
    m = _FENCE_RE.search(answer)
    if m:
        return m.group(1).strip()
    i, j = answer.find("{"), answer.rfind("}")
    return answer[i:j + 1] if i >= 0 and j > i else answer.strip()


def _loc(loc: tuple) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse_r2(answer: str | None) -> tuple[dict | None, str | None]:
    """(parsed chain dict, None) or (None, reason) for an R2 answer."""
    if not answer or not answer.strip():
        return None, "invalid R2 JSON: empty answer"
    text = extract_json_text(answer)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid R2 JSON: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    try:
        R2Answer.model_validate(data)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            where = _loc(e["loc"])
            if e["type"] == "missing":
                parts.append(f"missing key '{where}'")
            else:
                parts.append(f"'{where}': {e['msg'].lower()}")
        return None, "invalid R2 JSON: " + "; ".join(parts[:4])
    return data, None


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
class FormatFilter(Filter):
    type_name = "format"
    review_label = "format"
    Params = FormatParams

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: FormatParams = self.params
        n = table.num_rows
        comp = table.column("_completion")
        text = pc.fill_null(comp.combine_chunks() if isinstance(comp, pa.ChunkedArray) else comp, "")

        def m(pattern: str) -> np.ndarray:  # anchored/unanchored match without captures: RE2's fast DFA
            return pc.match_substring_regex(text, pattern).to_numpy(zero_copy_only=False)

        has_open = pc.match_substring(text, "<think>").to_numpy(zero_copy_only=False)
        has_close = pc.match_substring(text, "</think>").to_numpy(zero_copy_only=False)
        two_open, two_close = m(r"<think>[\s\S]*<think>"), m(r"</think>[\s\S]*</think>")
        starts_ok = m(r"^\s*<think>") if not p.allow_text_before_think else has_open
        ordered = m(r"<think>[\s\S]*</think>")
        empty_reasoning = m(r"<think>\s*</think>")
        empty_answer_after = m(r"</think>\s*$")
        empty = m(r"^\s*$")
        think_col = pc.fill_null(table.column("think"), False).to_numpy(zero_copy_only=False)
        want = {"auto": think_col, "always": np.ones(n, bool), "never": np.zeros(n, bool)}[p.require_think]
        err_col = table.column("error")
        has_error = (pc.fill_null(pc.greater(pc.utf8_length(err_col), 0), False).to_numpy(zero_copy_only=False)
                     if p.drop_errors else np.zeros(n, bool))
        no_tags = ~has_open & ~has_close
        conds = [
            has_error,
            empty,
            no_tags & want,
            ~no_tags & (~has_open | ~has_close | two_open | two_close),
            ~no_tags & ~(starts_ok & ordered),
            ~no_tags & want & empty_reasoning,
            ~no_tags & ~want & ~empty_reasoning,
            ~no_tags & empty_answer_after,
        ]
        code = np.select(conds, np.arange(1, len(conds) + 1), 0)
        reasons = _structure_reasons(code, text, err_col)
        # R2 answers (only rows that passed the structure checks) must hold the evolution-chain JSON.
        is_r2 = rows_where(table, "level", p.r2_levels) | rows_where(table, "task", p.r2_tasks)
        check = np.flatnonzero(is_r2 & (code == 0))
        if len(check):
            answers = [t.split("</think>", 1)[-1] for t in pc.take(text, pa.array(check)).to_pylist()]
            for i, a in zip(check, answers):
                _, why = parse_r2(a)
                if why:
                    reasons[i] = why
        return Verdicts.from_reasons(reasons)


def _structure_reasons(code: np.ndarray, text: pa.Array, err_col: pa.ChunkedArray) -> list[str | None]:
    """The reason per row for the first structure check (`code`, 1-based; 0 = fine) it failed."""
    reasons: list[str | None] = [None] * len(code)
    bad = np.flatnonzero(code)
    bad_text = pc.take(text, pa.array(bad, pa.int64())).to_pylist() if len(bad) else []
    for i, t in zip(bad, bad_text):
        c = code[i]
        reasons[i] = (
            f"generation error: {err_col[int(i)].as_py()}" if c == 1 else
            "empty completion: no assistant text" if c == 2 else
            "missing think block: expected <think>…</think> before the answer" if c == 3 else
            f"broken think tags: {t.count('<think>')} <think> and {t.count('</think>')} </think> "
            "(expected one of each)" if c == 4 else
            "broken think tags: </think> before <think> or text before <think>" if c == 5 else
            "empty reasoning: nothing inside <think>…</think>" if c == 6 else
            "unexpected reasoning: a /no_think sample has text inside <think>…</think>" if c == 7 else
            "empty answer: nothing after </think>")
    return reasons
