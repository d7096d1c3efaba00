"""The three-level cognition CoT format, shared by synth (the v2 template and the skeleton teacher write it),
curation (`cognition_structure`, `skeleton_agreement` check it) and the viewer (shows it as sections).

A v2 R3 trace's reasoning holds three labelled levels, in this order, each starting a line (normally a
paragraph each; see docs/DESIGN "The three-level cognition CoT"):

    Perception: <SID> is Heat (1995), a crime thriller; …
    Interest points: (1) 1990s crime thrillers — 5 of 14 items, three of them recent; …
    Evolution: the family films stop after March; … so the short-term interest is (1).

Labels are matched exactly (case-sensitive, `Label:` at the start of a line after optional spaces) because
the trace is training data: a student should learn one format. Near misses (`**Perception:**`,
`Interest Points:`, a label in the middle of a line) are not accepted, but the reason names them.

The data-derived cognition skeleton the trace verbalizes is stored as JSON in the sample's `extra` column under
`"skeleton"` (written by synth/tasks/skeleton.py); `skeleton_of` reads it back.
"""
from __future__ import annotations

import json
import re
from typing import Any

LEVELS: tuple[str, str, str] = ("Perception", "Interest points", "Evolution")
"""The three levels, in the order a trace must give them; each is written `<level>:` at the start of a line."""
PREAMBLE = "preamble"
"""Key of `split_levels`' result for text before the first label (absent when there is none)."""
SKELETON_KEY = "skeleton"
"""Key of the skeleton in a sample's `extra` JSON."""
SKELETON_VERSION = 1

_LABEL_RE = re.compile(r"^[ \t]*(" + "|".join(re.escape(lv) for lv in LEVELS) + r"):", re.M)
# Anything a reader would take for a label: any case, Markdown bold/heading/list markers, mid-line.
_LOOSE_RE = re.compile(r"(?:[#>*\-]+|\d+[.)])?[ \t]*\**[ \t]*(" + "|".join(re.escape(lv) for lv in LEVELS)
                       + r")[ \t]*\**[ \t]*:\**", re.I)


def _near_miss(text: str, level: str) -> str:
    """' (found "**Perception:**": …)' when `text` has something close to the label, else ''."""
    for m in _LOOSE_RE.finditer(text):
        if m.group(1).lower() == level.lower():
            found = m.group(0).strip()
            at_line_start = not text[text.rfind("\n", 0, m.start()) + 1:m.start()].strip()
            why = "labels are case-sensitive" if found != f"{level}:" and found.lower() == f"{level.lower()}:" \
                else "not at the start of a line" if found == f"{level}:" and not at_line_start \
                else f"expected exactly '{level}:' at the start of a line"
            return f" (found {found!r}: {why})"
    return ""


def split_levels(reasoning: str | None) -> dict[str, str] | str:
    """The reasoning's three levels as {level: text} (in LEVELS order, text stripped, label removed), plus
    `PREAMBLE` for any text before the first label; or a reason string when the structure is wrong:

    - `missing level: Evolution` (several are comma-separated; a near miss is named in parentheses),
    - `repeated level: Perception (2 times)`,
    - `levels out of order: Interest points before Perception (expected Perception → Interest points →
      Evolution)`,
    - `empty level: Interest points`.

    The reason's category (text before the first colon) is what the curation funnel groups by.
    """
    text = reasoning or ""
    found = [(m.group(1), m.start(), m.end()) for m in _LABEL_RE.finditer(text)]
    names = [f[0] for f in found]
    missing = [lv for lv in LEVELS if lv not in names]
    if missing:
        notes = "".join(_near_miss(text, lv) for lv in missing[:1])  # the first one is enough to explain
        return f"missing level: {', '.join(missing)}{notes}"
    repeated = [lv for lv in LEVELS if names.count(lv) > 1]
    if repeated:
        return "repeated level: " + ", ".join(f"{lv} ({names.count(lv)} times)" for lv in repeated)
    if names != list(LEVELS):
        first_wrong = next(i for i, (a, b) in enumerate(zip(names, LEVELS)) if a != b)
        return (f"levels out of order: {names[first_wrong]} before {LEVELS[first_wrong]} "
                f"(expected {' → '.join(LEVELS)})")
    out: dict[str, str] = {}
    pre = text[:found[0][1]].strip()
    if pre:
        out[PREAMBLE] = pre
    for i, (name, _, end) in enumerate(found):
        stop = found[i + 1][1] if i + 1 < len(found) else len(text)
        out[name] = text[end:stop].strip()
    empty = [lv for lv in LEVELS if not out[lv]]
    if empty:
        return "empty level: " + ", ".join(empty)
    return out


def skeleton_of(extra: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """The cognition skeleton stored in a sample's `extra` (JSON text or an already parsed dict), or None when
    there is none, the JSON does not parse, or its version is not one this code reads."""
    if extra is None:
        return None
    if isinstance(extra, str):
        if SKELETON_KEY not in extra:  # cheap test before parsing every row's extra
            return None
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            return None
    sk = extra.get(SKELETON_KEY) if isinstance(extra, dict) else None
    if not isinstance(sk, dict) or sk.get("version") != SKELETON_VERSION:
        return None
    return sk
