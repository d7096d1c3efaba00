"""Cognition CoT from each user's TRAIN history (see history.py for the leakage rule):

- r1_derive: latent interest points and item-to-item relations from a noisy history (optionally with injected
  distractor items, recorded in `reference` so curation can score noise detection);
- r2_evolve: interest evolution as {"logic_chain": {"name", "events": [{"action", "logic", "date"}]}}; the
  parsed chain goes to extra["logic_chain"], and a data-derived reference chain (dominant category per
  period) to `reference`;
- r3_recommend: the next item as SID + title, single-domain, and cross-domain when the catalog has several
  domains. Every prompt carries its data-derived cognition skeleton (skeleton.py) in extra["skeleton"]; the
  v2 template (the default; `template_version=1` for the free-form one) asks for the three-level think block
  (Perception → Interest points → Evolution, storage/cognition.py) and gives the teacher the skeleton as
  grounding facts in hint mode. `history_format` (sid_title | sid | title) sets how the student turn shows
  history items.

Modes: `hint` puts the held-out target into the TEACHER's instructions only; the stored sample's user turn is
the `student` template part, built from the history alone, in both modes. In `blind` mode every r3 answer is
resolved to a catalog item (resolve.py: a catalog SID in the answer, else its title matched with rapidfuzz;
ambiguous and unknown titles become the sample's error), recorded in extra["resolution"].

r2_evolve declares its answer's JSON schema (`answer_schema`, built from storage.answer.R2Answer), which run.py
sends to teachers that support structured outputs (`structured_outputs` in the teacher config).
"""
from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from storage.answer import extract_json_object, parse_logic_chain, split_think
from storage.cognition import SKELETON_KEY, split_levels
from storage.errors import ConfigError
from synth.tasks.base import COT_OPTIONS, TEACHER, Option, Parsed, Prompt, Task, TaskContext
from synth.tasks.history import (
    HISTORY_FORMATS,
    Event,
    UserHistory,
    check_history_format,
    history_fields,
    load_histories,
    render_history,
)
from synth.tasks.registry import register
from synth.tasks.resolve import DEFAULT_MARGIN, DEFAULT_THRESHOLD, CatalogResolver, apply_resolution
from synth.tasks.skeleton import compute_skeletons
from synth.teacher.types import r2_json_schema

MODES = ("hint", "blind")


def _mode(ctx: TaskContext) -> str:
    m = ctx.opt("mode")
    if m not in MODES:
        raise ConfigError(f"option mode must be hint or blind, got {m!r}")
    return m


def _catalog_domains(ctx: TaskContext) -> int:
    return ctx.ws.query("SELECT count(DISTINCT i.domain) FROM items i JOIN item_sids s USING (item_id) "
                        "WHERE s.sid_version = ?", [ctx.sid_version])[0][0]


def _noise_pool(ctx: TaskContext) -> list[Event]:
    rows = ctx.ws.query("SELECT i.item_id, s.sid, i.title, i.domain, i.categories FROM items i JOIN item_sids s "
                        "USING (item_id) WHERE s.sid_version = ? ORDER BY i.item_id", [ctx.sid_version])
    return [Event(item_id=r[0], sid=r[1], title=r[2], ts=None, domain=r[3], categories=list(r[4] or [])) for r in rows]


def _inject_noise(ctx: TaskContext, uh: UserHistory, events: list[Event],
                  pool: list[Event]) -> tuple[list[Event], list[Event]]:
    """Insert round(noise * len) random catalog items the user NEVER interacted with (in any split, so no
    valid/test item can sneak in), each dated like its neighbour. Seeded per user."""
    frac = float(ctx.opt("noise"))
    k = int(round(frac * len(events)))
    if k <= 0:
        return events, []
    rng = random.Random(f"{ctx.seed}|noise|{uh.user_id}")
    cands = [e for e in pool if e.item_id not in uh.known_items]
    picks = rng.sample(cands, min(k, len(cands)))
    out = list(events)
    noise = []
    for p in picks:
        pos = rng.randrange(0, len(out) + 1)
        neighbour = out[pos - 1] if pos > 0 else out[0]
        ev = Event(item_id=p.item_id, sid=p.sid, title=p.title, ts=neighbour.ts, domain=p.domain,
                   categories=p.categories)
        out.insert(pos, ev)
        noise.append(ev)
    return out, noise


def reference_chain(user_id: str, events: list[Event], phases: int = 3) -> dict | None:
    """A data-derived evolution chain: the history cut into up to `phases` chronological periods, the
    dominant category of each, and an event for every period ('prefers X' / 'shifts from X to Y'). Gives
    curation something real to score a teacher's chain against (action/logic F1)."""
    evs = [e for e in events if e.categories]
    if len(evs) < 2:
        return None
    n = min(phases, len(evs))
    size = -(-len(evs) // n)
    chain, prev = [], None
    for i in range(0, len(evs), size):
        part = evs[i:i + size]
        cnt = Counter(c for e in part for c in e.categories)
        cat, c = sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        action = f"prefers {cat}" if prev in (None, cat) else f"shifts from {prev} to {cat}"
        last = part[-1].ts
        chain.append({"action": action, "logic": f"{c} of {len(part)} items in this period are {cat}",
                      "date": f"{last:%Y-%m-%d}" if last is not None else ""})
        prev = cat
    return {"logic_chain": {"name": f"interest evolution of user {user_id}", "events": chain}}


def build_history_prompts(ctx: TaskContext, *, noise: bool = False, reference: str | None = None,
                          cross_domain: bool = False, skeleton: bool = False) -> list[Prompt]:
    """Prompts for R1/R2/R3 from users' histories. One single-domain prompt per user (history restricted to
    the target's domain when the catalog has several), plus a cross-domain prompt (history from the OTHER
    domains) when asked and possible. `skeleton`: compute every prompt's cognition skeleton (skeleton.py, one
    query for all prompts) into extra["skeleton"], and into the teacher's hint as grounding facts when the
    template asks for ${skeleton_block}."""
    from synth.tasks.run import prompt_id_of

    tpl, mode = ctx.template, _mode(ctx)
    max_h, min_h = int(ctx.opt("max_history")), int(ctx.opt("min_history"))
    dates = bool(ctx.options.get("dates", True))
    fmt = check_history_format(ctx.options.get("history_format", "sid_title"))
    if fmt != "sid_title" and "history_fields" not in tpl.variables("student"):
        raise ConfigError(f"template {tpl.ref} says 'semantic ID, title' in its student prompt, so it cannot show "
                          f"history_format={fmt}; use a template whose student part has ${{history_fields}} "
                          f"(r3_recommend: template_version=2)")
    three_level = tpl.has("cot_format") and tpl.part("cot_format").strip() == "three_level"
    multi = _catalog_domains(ctx) > 1
    cross_opt = ctx.options.get("cross_domain", "off") if cross_domain else "off"
    if cross_opt not in ("auto", "off", "only"):
        raise ConfigError(f"option cross_domain must be auto, off or only, got {cross_opt!r}")
    pool = _noise_pool(ctx) if noise else []
    chosen: list[tuple[UserHistory, str, list[Event], list[Event]]] = []
    for uh in load_histories(ctx):
        tgt = uh.target
        variants: list[tuple[str, list[Event]]] = []
        if cross_opt != "only":
            same = [e for e in uh.history if e.domain == tgt.domain] if multi else uh.history
            if len(same) >= min_h:
                variants.append(("single", same))
        if multi and cross_opt in ("auto", "only"):
            other = [e for e in uh.history if e.domain != tgt.domain]
            if len(other) >= min_h:
                variants.append(("cross", other))
        for kind, evs in variants:
            evs = evs[-max_h:]
            noise_evs: list[Event] = []
            if noise:
                evs, noise_evs = _inject_noise(ctx, uh, evs, pool)
            chosen.append((uh, kind, evs, noise_evs))
    skeletons: list[dict | None] = [None] * len(chosen)
    if skeleton and chosen:
        # the target is read only in hint mode (which interest point it serves); blind skeletons never see it
        skeletons = compute_skeletons([[e for e in evs if e not in nz] for _, _, evs, nz in chosen],
                                      [uh.target if mode == "hint" else None for uh, _, _, _ in chosen])
    prompts: list[Prompt] = []
    for (uh, kind, evs, noise_evs), skel in zip(chosen, skeletons):
        tgt = uh.target
        domain_note = tpl.render("cross_note", target_domain=tgt.domain) if kind == "cross" else ""
        block = ""
        if skel is not None and mode == "hint":
            block = json.dumps({"skeleton": skel, "target": {"sid": tgt.sid, "title": tgt.title}},
                               ensure_ascii=False, separators=(",", ":"))
        values = {"history": render_history(evs, dates), "target_sid": tgt.sid, "target_title": tgt.title,
                  "target_domain": tgt.domain, "domain_note": domain_note,
                  "history_fields": history_fields(fmt, dates), "skeleton_block": block}
        values["instruction"] = tpl.render(mode, **values)
        teacher_msgs = [{"role": "system", "content": tpl.render("system", **values)},
                        {"role": "user", "content": tpl.render("user", **values)}]
        # the student turn: history only (never the target), its lines in the chosen history_format
        student = tpl.render("student", **{**values, "history": render_history(evs, dates, fmt)})
        ref: Any = None
        if reference == "noise":
            ref = {"noise_item_ids": [e.item_id for e in noise_evs], "noise_sids": [e.sid for e in noise_evs]}
        elif reference == "chain":
            ref = reference_chain(uh.user_id, [e for e in evs if e not in noise_evs])
        extra: dict[str, Any] = {"target_split": ctx.opt("target_split"), "cross_domain": kind == "cross",
                                 "history_len": len(evs), "history_format": fmt}
        if kind == "cross":
            extra["source_domains"] = sorted({e.domain for e in evs})
        if three_level:
            extra["cot_format"] = "three_level"
        if skel is not None:
            extra[SKELETON_KEY] = skel
        prompts.append(Prompt(
            prompt_id=prompt_id_of(ctx, teacher_msgs, student, uh.user_id, tgt.item_id, kind),
            teacher_messages=teacher_msgs, student_user=student, user_id=uh.user_id, domain=tgt.domain,
            history_item_ids=[e.item_id for e in evs], target_item_ids=[tgt.item_id],
            target_sids=[tgt.sid], target_titles=[tgt.title], mode=mode, reference=ref, extra=extra))
    return prompts


# ---------------------------------------------------------------------------------------------- parsers
def _hint_flags(p: Prompt, parsed: Parsed) -> dict[str, Any]:
    """Facts curation's outcome / leakage filters also check, recorded for the viewer."""
    if not p.target_sids:
        return {}
    sid, title = p.target_sids[0], (p.target_titles[0] if p.target_titles else None)
    r = parsed.reasoning or ""
    return {"target_in_answer": sid in (parsed.answer or ""),
            "target_named_in_reasoning": bool(sid in r or (title and title.lower() in r.lower()))}


def parse_r3(p: Prompt, text: str, finish: str | None) -> Parsed:
    """split_think + hint flags; for a three-level template (v2) also extra["levels"]: "ok" or why the
    reasoning is not Perception → Interest points → Evolution (storage.cognition.split_levels). A wrong
    structure is not a parse error: the row parses, and curation's cognition_structure filter rejects it with
    that reason."""
    parsed = split_think(text, finish)
    parsed.extra.update(_hint_flags(p, parsed))
    if p.extra.get("cot_format") == "three_level" and parsed.reasoning is not None:
        levels = split_levels(parsed.reasoning)
        parsed.extra["levels"] = "ok" if isinstance(levels, dict) else levels
    return parsed


def validate_r3(p: Prompt, parsed: Parsed) -> str | None:
    from storage.sid import extract_sids, find_malformed_sids

    if not extract_sids(parsed.answer):
        bad = find_malformed_sids(parsed.answer)
        return "no SID in the answer" + (f" (malformed: {bad[0]})" if bad else "")
    return None


def parse_r1(p: Prompt, text: str, finish: str | None) -> Parsed:
    return split_think(text, finish)


def parse_r2(p: Prompt, text: str, finish: str | None) -> Parsed:
    parsed = split_think(text, finish)
    answer = parsed.answer if parsed.answer is not None else text
    obj, _ = extract_json_object(answer)
    if obj is not None and isinstance(obj.get("logic_chain"), dict):
        parsed.extra["logic_chain"] = obj["logic_chain"]      # kept for the viewer even when invalid
    if parsed.error is None:
        _, parsed.error = parse_logic_chain(answer)          # the same reason curation's format filter gives
    elif parsed.extra.get("format") == "plain" and obj is not None and text.strip().startswith("{"):
        # JSON and nothing else: what a structured-output server returns from a model whose thinking it does
        # not separate (no reasoning field)
        parsed.error += (" (the answer is JSON only: with structured outputs the reasoning must come from the "
                         "server's reasoning field — serve a reasoning model with --reasoning-parser — or set "
                         "structured_outputs: false in the teacher config)")
    return parsed


def r3_resolver(ctx: TaskContext):
    """Blind mode: resolve every answer to a catalog item (resolve.py); hint mode: nothing to resolve."""
    if ctx.options.get("mode") != "blind":
        return None
    resolver = CatalogResolver.from_workspace(ctx.ws, ctx.sid_version,
                                              threshold=float(ctx.opt("resolve_threshold")),
                                              margin=float(ctx.opt("resolve_margin")))

    def resolve(p: Prompt, parsed: Parsed) -> None:
        apply_resolution(resolver, parsed)

    return resolve


COMMON = COT_OPTIONS + (Option("dates", True, "show interaction dates in histories"),)

R1 = register(Task(
    name="r1_derive", level="R1", kind=TEACHER, cot=True, default_dataset="cot",
    description="latent interest points and item-to-item relations from a noisy TRAIN history (teacher CoT)",
    options=COMMON + (Option("noise", 0.2, "fraction of injected distractor items (never the user's own items); "
                                           "listed in `reference`"),),
    build=lambda ctx: build_history_prompts(ctx, noise=True, reference="noise"), parse=parse_r1))

R2 = register(Task(
    name="r2_evolve", level="R2", kind=TEACHER, cot=True, default_dataset="cot",
    description="interest evolution (long/short-term, periodic) as a JSON logic_chain (teacher CoT)",
    options=COMMON,
    build=lambda ctx: build_history_prompts(ctx, reference="chain"), parse=parse_r2,
    answer_schema=r2_json_schema))

R3 = register(Task(
    name="r3_recommend", level="R3", kind=TEACHER, cot=True, default_dataset="cot",
    description="next-item recommendation answered as SID + title, single- and cross-domain (teacher CoT)",
    options=COMMON + (Option("cross_domain", "auto", "auto: add cross-domain prompts when the catalog has "
                                                     "several domains; off; only"),
                      Option("history_format", "sid_title", "how the STUDENT turn shows history items: "
                                                            + " | ".join(HISTORY_FORMATS)
                                                            + " (the teacher always sees SID + title)"),
                      Option("resolve_threshold", DEFAULT_THRESHOLD, "blind mode: lowest rapidfuzz score "
                                                                     "(0-100) for a title to resolve to an item"),
                      Option("resolve_margin", DEFAULT_MARGIN, "blind mode: another item within this many "
                                                               "points of the best makes a title ambiguous")),
    build=lambda ctx: build_history_prompts(ctx, cross_domain=True, skeleton=True), parse=parse_r3,
    validate=validate_r3, resolver=r3_resolver))
