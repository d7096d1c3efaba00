"""Narrative alignment tasks (teacher, no reasoning block):

- align_item_narrative: SID + title + categories -> a short description; the stored sample is
  "Describe the item <sid>." -> the description (one per item, `limit` caps);
- align_sequence_narrative: a user's TRAIN history (all train items, most recent `max_history` shown) -> a
  short description of the user's current need (one per user, `users` caps).
"""
from __future__ import annotations

from storage.answer import plain_answer
from synth.tasks.base import TEACHER, Option, Parsed, Prompt, Task, TaskContext
from synth.tasks.history import load_histories, render_history
from synth.tasks.perception import build_item_prompts
from synth.tasks.registry import register


def _parse(p: Prompt, text: str, finish: str | None) -> Parsed:
    return plain_answer(text, finish)


def build_sequence_prompts(ctx: TaskContext) -> list[Prompt]:
    from synth.tasks.run import prompt_id_of

    tpl = ctx.template
    max_h = int(ctx.opt("max_history"))
    dates = bool(ctx.opt("dates"))
    out = []
    for uh in load_histories(ctx, need_target=False):
        evs = uh.history[-max_h:]
        v = {"history": render_history(evs, dates)}
        msgs = [{"role": "system", "content": tpl.render("system", **v)},
                {"role": "user", "content": tpl.render("user", **v)}]
        student = tpl.render("student", **v)
        out.append(Prompt(prompt_id=prompt_id_of(ctx, msgs, student, uh.user_id), teacher_messages=msgs,
                          student_user=student, user_id=uh.user_id, domain=uh.domain,
                          history_item_ids=[e.item_id for e in evs], extra={"history_len": len(evs)}))
    return out


ITEM_NARRATIVE = register(Task(
    name="align_item_narrative", level="alignment", kind=TEACHER,
    description="item narrative: SID + title + categories -> a short teacher-written description",
    options=(Option("max_tokens", 96, "teacher max new tokens"),),
    build=build_item_prompts, parse=_parse))

SEQUENCE_NARRATIVE = register(Task(
    name="align_sequence_narrative", level="alignment", kind=TEACHER,
    description="sequence narrative: a user's TRAIN history -> a short description of the user's need",
    options=(Option("users", 0, "at most this many users (seeded order; 0 = all)"),
             Option("max_history", 10, "history length shown (most recent kept)"),
             Option("min_history", 3, "users need at least this many train items"),
             Option("dates", True, "show interaction dates"),
             Option("max_tokens", 96, "teacher max new tokens")),
    build=build_sequence_prompts, parse=_parse))
