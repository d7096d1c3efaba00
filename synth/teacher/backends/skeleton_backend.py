"""The skeleton teacher (`backend: skeleton`, model `v1`, teacher id `skeleton:v1`): no model at all. It reads
the cognition skeleton that a hint-mode r3_recommend v2 prompt carries as grounding facts (the
`<skeleton>{"skeleton": …, "target": {"sid", "title"}}</skeleton>` block, see synth/tasks/skeleton.py) and
puts it into words as a three-level think block (Perception → Interest points → Evolution,
storage/cognition.py), then answers with the held-out target.

What it is for: a CPU-only corpus whose traces are structurally right and grounded in data — every claim is a
fact of the skeleton — as a baseline and a demonstration of the format. It is not a reasoner: it says nothing
the skeleton does not hold, and it only works in hint mode (it needs the target). Being a backend, it goes
through the same engine as model teachers: durable cache, accounting, and the `teacher` column/lineage.

Phrasing varies: each level picks among several sentence patterns with an RNG seeded by (request seed,
prompt, choice index), so a corpus is not one fixed template, and the same request always gives the same text.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from typing import Any

from storage.errors import ConfigError
from synth.teacher.backends.base import Backend, Completion
from synth.teacher.config import TeacherConfig
from synth.teacher.errors import TeacherAttemptError
from synth.teacher.types import ChatRequest, Usage

MODELS = ("v1",)
BLOCK_RE = re.compile(r"<skeleton>(.*?)</skeleton>", re.S)
PERCEPTION_ITEMS = 6     # history items described one by one (the latest of each interest point, then the latest)


class SkeletonBackend(Backend):
    name = "skeleton"
    network = False

    def __init__(self, config: TeacherConfig):
        if config.model not in MODELS:
            raise ConfigError(f"the skeleton teacher has versions {', '.join(MODELS)}, not {config.model!r} "
                             f"(use model: v1, or --teacher skeleton:v1)")
        self.config = config

    async def complete(self, request: ChatRequest) -> Completion:
        skeleton, target = read_block(request)
        seed = request.params.seed if request.params.seed is not None else 0
        digest = request.messages_digest()
        choices = [verbalize(skeleton, target, random.Random(f"skeleton|{seed}|{digest}|{i}"))
                   for i in range(max(1, request.params.n))]
        return Completion(choices, ["stop"] * len(choices), Usage(0, 0))


def read_block(request: ChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(skeleton, target) from the request's `<skeleton>` block, or TeacherAttemptError('other') naming
    what to change."""
    for _, content in reversed(request.messages):
        m = BLOCK_RE.search(content or "")
        if not m:
            continue
        try:
            block = json.loads(m.group(1))
        except json.JSONDecodeError as exc:
            raise TeacherAttemptError("other", f"the <skeleton> block is not valid JSON: {exc}") from None
        sk, tgt = block.get("skeleton"), block.get("target")
        if not isinstance(sk, dict) or not isinstance(tgt, dict) or not tgt.get("sid"):
            raise TeacherAttemptError("other", "the <skeleton> block needs a 'skeleton' object and a 'target' "
                                               "with a 'sid'")
        return sk, tgt
    raise TeacherAttemptError("other", "the skeleton teacher answers only prompts that carry a <skeleton> block: "
                                       "r3_recommend with template_version 2 (the default) in hint mode")


# ---------------------------------------------------------------------------------------------- wording
def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s and s[0].islower() else s


def _join(rng: random.Random, words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return rng.choice([", ".join(words[:-1]) + " and " + words[-1], " / ".join(words), ", ".join(words)])


def _prefix_text(sid_prefix: str | None) -> str:
    from synth.tasks.skeleton import prefix_text

    return prefix_text(sid_prefix)


def _pct(share: float) -> str:
    return f"{round(100 * float(share))}%"


def _perception(sk: dict, target: dict, rng: random.Random) -> str:
    items = sk.get("perception") or []
    n = len(items)
    if not n:
        return "The history is empty."
    tsid, ttitle = target.get("sid") or "", (target.get("title") or "").strip().lower()

    def safe(i: int) -> bool:      # never cite the target itself (a repeat) in the reasoning
        it = items[i]
        return it["sid"] != tsid and not (ttitle and ttitle in (it.get("title") or "").lower())

    by_sid: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_sid.setdefault(it["sid"], []).append(i)
    picks: list[int] = []
    for p in sk.get("interest_points") or []:          # the latest member of every interest point …
        idx = [i for s in p.get("sids") or [] for i in by_sid.get(s, []) if safe(i)]
        if idx and max(idx) not in picks:
            picks.append(max(idx))
    for i in range(n - 1, -1, -1):                      # … then the latest items
        if len(picks) >= PERCEPTION_ITEMS:
            break
        if i not in picks and safe(i):
            picks.append(i)
    picks = sorted(picks[:PERCEPTION_ITEMS])

    dates = [it["date"] for it in items if it.get("date")]
    if dates and dates[0] == dates[-1]:
        intro = rng.choice([f"{n} items, all on {dates[0]}.", f"The history holds {n} items, all from {dates[0]}."])
    elif dates:
        intro = rng.choice([f"{n} items from {dates[0]} to {dates[-1]}.",
                            f"The history holds {n} items ({dates[0]} to {dates[-1]}).",
                            f"{n} interactions, the oldest on {dates[0]}, the latest on {dates[-1]}."])
    else:
        intro = rng.choice([f"{n} items.", f"The history holds {n} items."])
    clauses = []
    for i in picks:
        it = items[i]
        cats = list(it.get("categories") or [])[:3]
        if cats:
            c = _join(rng, cats)
            what = rng.choice([f"tagged {c}", f"filed under {c}", f"in {c}"])
        else:
            what = rng.choice(["with no category", "uncategorized"])
        sid, title = it["sid"], it.get("title") or "an untitled item"
        when = f" ({it['date']})" if it.get("date") and rng.random() < 0.4 else ""
        clauses.append(rng.choice([f"{sid} is {title}, {what}{when}",
                                   f"{sid} ({title}) is {what}{when}",
                                   f"{sid} {title}: {what}{when}",
                                   f"{title} is {sid}, {what}{when}"]))
    text = intro + " " + _cap("; ".join(clauses)) + "."
    cat_counts = Counter(c for it in items for c in dict.fromkeys(it.get("categories") or []))
    if cat_counts and rng.random() < 0.6:
        top = sorted(cat_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        parts = [f"{c} ({k})" for c, k in top]
        text += " " + rng.choice([f"Across all {n} items the most frequent categories are {_join(rng, parts)}.",
                                  f"Category counts over the whole history: {_join(rng, parts)}."])
    return text


def _recent_phrase(p: dict, rng: random.Random) -> str:
    r, c = int(p.get("recent_count") or 0), int(p.get("count") or 0)
    if r == 0:
        return rng.choice(["none in the recent part", "absent lately", "nothing recent"])
    if r == c:
        return rng.choice(["all of them recent", "every one in the recent part"])
    return rng.choice([f"{r} in the recent part", f"{r} of them recent"])


def _interest_points(sk: dict, target: dict, rng: random.Random) -> str:
    points = sk.get("interest_points") or []
    n = len(sk.get("perception") or [])
    if not points:
        return rng.choice(["No category or SID prefix is shared by two or more items, so there is no clear "
                           "interest point; the history is scattered.",
                           "None stands out: no two items share a category or a SID prefix."])
    k = len(points)
    intro = rng.choice([f"{k} interest point{'s' if k > 1 else ''} stand{'' if k > 1 else 's'} out.",
                        f"The items group into {k} interest{'s' if k > 1 else ''}.",
                        f"Grouping items by shared categories and SID prefixes gives {k} point{'s' if k > 1 else ''}."])
    clauses = []
    for p in points:
        head = f"({p['id']}) {p['label']}"
        recent = _recent_phrase(p, rng)
        pre = _prefix_text(p.get("sid_prefix"))
        prefix = ""
        if pre and "SID prefix" not in p["label"] and rng.random() < 0.7:
            prefix = rng.choice([f", their semantic IDs share the prefix {pre}", f", all under SID prefix {pre}"])
        examples = [s for s in p.get("sids") or [] if s != target.get("sid")]
        example = f", e.g. {examples[-1]}" if examples and rng.random() < 0.5 else ""
        last = f", last on {p['last_date']}" if p.get("last_date") and rng.random() < 0.6 else ""
        clauses.append(rng.choice([
            f"{head}: {p['count']} of {n} items ({_pct(p['share'])}){prefix}, {recent}{last}{example}",
            f"{head} with {p['count']}/{n} items{prefix}; {recent}{last}{example}",
            f"{head}, {_pct(p['share'])} of the history ({p['count']} items){prefix}, {recent}{example}{last}",
        ]))
    text = intro + " " + "; ".join(clauses) + "."
    rest = n - sum(int(p.get("count") or 0) for p in points)
    if rest > 0 and rng.random() < 0.7:
        text += " " + rng.choice([f"The other {rest} item{'s fit' if rest > 1 else ' fits'} no point.",
                                  f"{rest} item{'s stay' if rest > 1 else ' stays'} outside these groups."])
    return text


def _evolution(sk: dict, rng: random.Random) -> str:
    ev = sk.get("evolution") or {}
    labels = {p["id"]: f"({p['id']}) {p['label']}" for p in sk.get("interest_points") or []}
    periods = ev.get("periods") or []
    parts = []
    ordinals = ["first", "second", "third", "fourth", "fifth", "sixth"]
    doms = {per.get("dominant") for per in periods}
    if len(periods) > 1 and len(doms) == 1 and None not in doms:       # one lead throughout: say it once
        lead = labels[doms.pop()]
        parts.append(rng.choice([f"{lead} leads in all {len(periods)} parts of the history",
                                 f"every part of the history is mostly {lead}"]))
        periods_told = []
    else:
        periods_told = periods
    for i, per in enumerate(periods_told):
        d = per.get("dominant")
        if per.get("start") and per["start"] != per["end"]:
            span = f"{per['start']} to {per['end']}"
        else:
            span = f"on {per['start']}" if per.get("start") else f"{per['items']} items"
        lead = labels.get(d, "no interest point")
        if len(periods) == 1:
            parts.append(rng.choice([f"over the whole history ({span}) {lead} leads",
                                     f"the history ({span}) is mostly {lead}"]) if d is not None
                         else f"over the whole history ({span}) no interest point dominates")
            continue
        name = ordinals[i] if i < len(ordinals) else f"#{i + 1}"
        dated = per.get("start") and per["start"] != per["end"]     # else periods read apart by their order
        if d is None:
            parts.append(rng.choice([f"in the {name} part ({span}) no interest point dominates"]
                                    + ([f"{span}: no clear lead"] if dated else [])))
        else:
            parts.append(rng.choice([f"in the {name} part ({per['items']} items, {span}) {lead} leads",
                                     f"the {name} part ({span}) is dominated by {lead}"]
                                    + ([f"{span}: mostly {lead}"] if dated else [])))
    text = _cap("; ".join(parts)) + "." if parts else ""
    shifts = ev.get("shifts") or []
    if shifts:
        sents = []
        for s in shifts:
            a, b, when = labels.get(s["from"], f"({s['from']})"), labels.get(s["to"], f"({s['to']})"), s.get("date")
            at = f" around {when}" if when else ""
            sents.append(rng.choice([f"the focus moves from {a} to {b}{at}",
                                     f"{at.strip() + ', ' if at else ''}it shifts from {a} to {b}",
                                     f"{b} takes over from {a}{at}"]))
        text += " " + _cap("; ".join(sents)) + "."
    elif any(p.get("dominant") is not None for p in periods) and len(periods) > 1 and periods_told:
        text += " " + rng.choice(["There is no shift.", "The lead never changes."])
    lt, rc = ev.get("long_term"), ev.get("recent")
    if lt is not None and lt == rc:
        text += " " + rng.choice([f"{_cap(labels[lt])} is both the long-term and the recent interest.",
                                  f"{_cap(labels[lt])} is long-term and still current."])
    else:
        bits = []
        if lt is not None:
            bits.append(rng.choice([f"the long-term interest is {labels[lt]}", f"{labels[lt]} is the long-term one"]))
        bits.append(rng.choice([f"the recent one is {labels[rc]}", f"recently it is {labels[rc]}"]) if rc is not None
                    else rng.choice(["no single interest leads the recent part", "the recent part has no clear lead"]))
        text += " " + _cap(", while ".join(bits)) + "."
    tp = sk.get("target_point")
    if tp is not None and tp in labels:
        text += " " + rng.choice([f"So the next choice most likely serves {labels[tp]}.",
                                  f"The next item should continue {labels[tp]}.",
                                  f"This points the next choice toward {labels[tp]}."])
    else:
        text += " " + rng.choice(["So the next choice likely steps outside these interests.",
                                  "The next item probably explores something beyond these points."])
    return text.strip()


def verbalize(skeleton: dict[str, Any], target: dict[str, Any], rng: random.Random) -> str:
    """The three-level CoT of one skeleton, answering with `target` (a parseable teacher answer)."""
    title = (target.get("title") or "").strip()
    return ("<think>\n"
            f"Perception: {_perception(skeleton, target, rng)}\n"
            f"Interest points: {_interest_points(skeleton, target, rng)}\n"
            f"Evolution: {_evolution(skeleton, rng)}\n"
            "</think>\n"
            f"Answer: {target['sid']} {title}".rstrip())
