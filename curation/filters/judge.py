"""LLM-as-judge: a rubric score 1–5 per sample from a teacher model, through the teacher engine (so judge
requests are cached, retried, rate-limited and accounted like any other request; re-running a chain with a
different threshold costs nothing).

The judge is asked for JSON `{"score": 1-5, "reason": "..."}`. An answer that does not parse, or a request
that failed after retries, is *not* a verdict on the sample: by default it is kept with the reason
'judge unparsable: …' / 'judge error: …' (configurable), so a flaky judge never silently deletes data.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa

from curation.base import FilterContext, FilterParams, SetFilter, Verdicts, register
from storage.answer import extract_json_object

DEFAULT_RUBRIC = """You grade training data for a recommender that reasons before answering. Items are named by
semantic IDs like <|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>.
Score the RESPONSE from 1 (useless) to 5 (excellent) on: the reasoning uses the user's history, is coherent and
specific, does not invent facts, and the answer follows from it.
Reply with JSON only: {"score": <integer 1-5>, "reason": "<one sentence>"}"""

TEMPLATE_VERSION = "curation-judge@1"


class JudgeParams(FilterParams):
    teacher: dict[str, Any] | str | None = None
    """A TeacherConfig as a dict, a YAML path, 'backend:model', or None for the embedded local model."""
    rubric: str = DEFAULT_RUBRIC
    min_score: int = 3
    max_tokens: int = 200
    temperature: float = 0.0
    seed: int = 0
    structured: bool = False
    """Ask the backend for JSON output (response_format); the engine then retries answers that are not JSON."""
    on_unparsable: Literal["keep", "drop"] = "keep"
    on_error: Literal["keep", "drop"] = "keep"
    max_prompt_chars: int = 4000
    max_response_chars: int = 6000


def parse_judgement(text: str | None) -> tuple[int | None, str]:
    """(score 1–5, reason) or (None, why it could not be read)."""
    if not text or not text.strip():
        return None, "empty answer"
    data, why = extract_json_object(text)
    if data is None:
        return None, f"{why} in {text[:80]!r}"
    if "score" not in data:
        return None, f"no 'score' key in {text[:80]!r}"
    try:
        score = float(data["score"])
    except (TypeError, ValueError):
        return None, f"score {data['score']!r} is not a number"
    if score != int(score) or not 1 <= score <= 5:
        return None, f"score {data['score']!r} is not an integer 1-5"
    return int(score), str(data.get("reason", "")).strip()


def judge_messages(prompt: str, completion: str, p: JudgeParams) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": p.rubric},
        {"role": "user", "content": f"PROMPT:\n{prompt[-p.max_prompt_chars:]}\n\n"
                                    f"RESPONSE:\n{completion[:p.max_response_chars]}\n\n"
                                    'Reply with JSON only: {"score": <1-5>, "reason": "..."}'},
    ]


@register
class JudgeFilter(SetFilter[JudgeParams], type_name="judge", review_label="wrong_logic"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        from synth.teacher.engine import make_engine
        from synth.teacher.types import ChatRequest, SamplingParams

        p: JudgeParams = self.params
        n = table.num_rows
        msgs = table.column("messages").to_pylist()
        comps = table.column("_completion").to_pylist()
        schema = ({"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                                    "reason": {"type": "string"}},
                   "required": ["score", "reason"]} if p.structured else None)
        params = SamplingParams(temperature=p.temperature, max_tokens=p.max_tokens, seed=p.seed)
        requests = []
        for m, c in zip(msgs, comps):
            users = [x["content"] or "" for x in (m or []) if x.get("role") == "user"]
            requests.append(ChatRequest.from_messages(judge_messages(users[-1] if users else "", c or "", p), params,
                                                      json_schema=schema, template_version=TEMPLATE_VERSION))
        engine = make_engine(p.teacher, ctx.ws, run_id=ctx.run_id)
        try:
            responses = engine.run(requests, progress=ctx.progress)
            ctx.record_teacher_stats(self.label, engine.stats)
        finally:
            engine.close()
        keep = np.ones(n, bool)
        reasons: list[str | None] = [None] * n
        score = np.full(n, np.nan)
        for i, r in enumerate(responses):
            if not r.ok:
                reasons[i] = f"judge error: {r.error_kind}: {r.error}"
                keep[i] = p.on_error == "keep"
                continue
            s, why = parse_judgement(r.choices[0] if r.choices else None)
            if s is None:
                reasons[i] = f"judge unparsable: {why}"
                keep[i] = p.on_unparsable == "keep"
                continue
            score[i] = s
            if s < p.min_score:
                keep[i] = False
                reasons[i] = f"judge score low: {s}/5 (min {p.min_score}): {why}"
            else:
                reasons[i] = f"judge score {s}/5: {why}"
        return Verdicts(keep, reasons, score)
