"""Evaluation prompts, rendered with synth's own templates so a model SFT-ed on synth samples sees at test
time exactly the prompt shape it was trained on:

- R3: the `student` part of `synth/prompts/r3_recommend` (history lines `SID title (date)`, oldest first,
  never the target; `history_format` "sid" or "title" shows only the SID or only the title, as synth's option of
  the same name does), plus the Qwen3 soft switch ` /think` or ` /no_think` that synth appends to the user turn;
- R0 grounding: the `user` part of `synth/prompts/r0_grounding` (description → SID), ` /no_think`.

Synth stores a /no_think answer as `<think>\\n\\n</think>\\n\\n{answer}`; evaluation prefills that empty think
block (`NO_THINK_PREFILL`) so the constrained decoder starts right at the SID, as Qwen3 does.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

NO_THINK_PREFILL = "<think>\n\n</think>\n\n"


@functools.cache
def _template(name: str):
    """The latest version of a synth template, read once per process (windows render ~10^5 prompts)."""
    from synth.tasks.templates import load_template

    return load_template(name)


def history_line(title: str | None, sid: str, ts: datetime | None = None, history_format: str = "sid_title") -> str:
    """Same line format as synth's history events: 'SID title (YYYY-MM-DD)' (or 'SID (…)' / 'title (…)')."""
    from synth.tasks.history import history_line as line

    return line(sid, title, f"{ts:%Y-%m-%d}" if ts is not None else None, history_format)


def r3_messages(history: Sequence[tuple], *, think: bool, history_format: str = "sid_title",
                dates: bool = True) -> list[dict[str, str]]:
    """[(title, sid[, ts]), …] oldest first → the student R3 chat (one user turn) with the think switch.
    `history_format` (sid_title | sid | title) and `dates` (synth's option: show interaction dates) must match
    what the model was trained with."""
    from synth.tasks.history import history_fields

    lines = "\n".join(history_line(*h[:2], h[2] if dates and len(h) > 2 else None, history_format=history_format)
                      for h in history)
    user = _template("r3_recommend").render("student", history=lines, domain_note="",
                                            history_fields=history_fields(history_format, dates))
    return [{"role": "user", "content": user + (" /think" if think else " /no_think")}]


def r0_grounding_messages(title: str, description: str | None) -> list[dict[str, str]]:
    """R0 grounding: the item's title and description → its SID."""
    text = f"{title}. {description}" if description else title
    user = _template("r0_grounding").render("user", description=text)
    return [{"role": "user", "content": user + " /no_think"}]


def r2_messages(history_lines: str) -> list[dict[str, str]]:
    """R2 evolution: the `student` part of `synth/prompts/r2_evolve` (answer: a JSON logic chain), /no_think."""
    user = _template("r2_evolve").render("student", history=history_lines)
    return [{"role": "user", "content": user + " /no_think"}]
