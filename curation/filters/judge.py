"""LLM-as-judge: a rubric score 1–5 per sample from a teacher model, through the teacher engine (so judge
requests are cached, retried, rate-limited and accounted like any other request; re-running a chain with a
different threshold costs nothing).

The judge is asked for JSON `{"score": 1-5, "reason": "..."}`. An answer that does not parse, or a request
that failed after retries, is *not* a verdict on the sample: by default it is kept with the reason
'judge unparsable: …' / 'judge error: …' (configurable), so a flaky judge never silently deletes data.

The rubric (the judge's system prompt) is a text/Markdown file: `rubric: path/to/rubric.md` in the chain, or
the shipped default, curation/filters/judge_rubric.md. Any teacher backend judges (openai, vllm, local): the
requests go through the teacher engine; `structured: true` (or null: when the backend supports it) asks for the
score's JSON schema, and a reasoning judge's thinking (a think block or the server's reasoning field) is
skipped before the JSON is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import field_validator

from curation.base import FilterContext, FilterParams, SetFilter, Verdicts, register
from storage.answer import THINK_CLOSE, extract_json_object

DEFAULT_RUBRIC_PATH = Path(__file__).with_name("judge_rubric.md")
DEFAULT_RUBRIC = DEFAULT_RUBRIC_PATH.read_text(encoding="utf-8").strip()
DEFAULT_MAX_TOKENS = 512
JUDGE_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                                 "reason": {"type": "string"}},
                "required": ["score", "reason"]}

TEMPLATE_VERSION = "curation-judge@1"


class JudgeParams(FilterParams):
    teacher: dict[str, Any] | str | None = None
    """A TeacherConfig as a dict, a YAML path, 'backend:model', or None for the embedded local model."""
    rubric: str | None = None
    """Path to the rubric file (text/Markdown: the judge's system prompt); None = the shipped default
    (curation/filters/judge_rubric.md). A relative path is read from the working directory."""
    min_score: int = 3
    max_tokens: int | None = None
    """The judge's token budget; None = the teacher config's max_tokens, else 512 (a reasoning judge thinks
    before it scores: give it more)."""
    temperature: float = 0.0
    seed: int = 0
    structured: bool | None = False
    """Ask the backend for the score's JSON schema (response_format / vLLM structured outputs); the engine then
    retries answers that are not JSON, and one that stays unreadable is a 'judge error', not 'judge
    unparsable'. None = when the teacher's backend supports it (openai, vllm)."""
    on_unparsable: Literal["keep", "drop"] = "keep"
    on_error: Literal["keep", "drop"] = "keep"
    max_prompt_chars: int = 4000
    max_response_chars: int = 6000

    @field_validator("rubric")
    @classmethod
    def _rubric_file(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"rubric file {v!r} not found: give the path of a text/Markdown rubric, or leave "
                             f"rubric out for the default ({DEFAULT_RUBRIC_PATH.name})")
        return v

    def rubric_text(self) -> str:
        if self.rubric is None:
            return DEFAULT_RUBRIC
        return Path(self.rubric).expanduser().read_text(encoding="utf-8").strip()


def parse_judgement(text: str | None) -> tuple[int | None, str]:
    """(score 1–5, reason) or (None, why it could not be read)."""
    if not text or not text.strip():
        return None, "empty answer"
    if THINK_CLOSE in text:                        # a reasoning judge: read the verdict after its thinking
        text = text.split(THINK_CLOSE, 1)[1]
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


def judge_messages(prompt: str, completion: str, p: JudgeParams, rubric: str | None = None) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": rubric if rubric is not None else p.rubric_text()},
        {"role": "user", "content": f"PROMPT:\n{prompt[-p.max_prompt_chars:]}\n\n"
                                    f"RESPONSE:\n{completion[:p.max_response_chars]}\n\n"
                                    'Reply with JSON only: {"score": <1-5>, "reason": "..."}'},
    ]


@register
class JudgeFilter(SetFilter[JudgeParams], type_name="judge", review_label="wrong_logic"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        from synth.teacher.config import TeacherConfig
        from synth.teacher.engine import make_engine
        from synth.teacher.types import ChatRequest, SamplingParams

        p: JudgeParams = self.params
        n = table.num_rows
        msgs = table.column("messages").to_pylist()
        comps = table.column("_completion").to_pylist()
        teacher = TeacherConfig.coerce(p.teacher)
        structured = teacher.structured() if p.structured is None else p.structured
        schema = JUDGE_SCHEMA if structured else None
        params = SamplingParams(temperature=p.temperature, seed=p.seed,
                                max_tokens=p.max_tokens or teacher.max_tokens or DEFAULT_MAX_TOKENS)
        rubric = p.rubric_text()
        requests = []
        for m, c in zip(msgs, comps):
            users = [x["content"] or "" for x in (m or []) if x.get("role") == "user"]
            requests.append(ChatRequest.from_messages(judge_messages(users[-1] if users else "", c or "", p, rubric),
                                                      params, json_schema=schema, template_version=TEMPLATE_VERSION))
        engine = make_engine(teacher, ctx.ws, run_id=ctx.run_id)
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
