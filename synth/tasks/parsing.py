"""Parsing teacher answers: `<think>…</think>` + answer, JSON inside an answer. Never raises: a malformed or
partial answer comes back with `error` set so the row is kept (curation rejects it, reviewers can see it).

Accepted shapes, most to least preferred:
1. `<think>R</think> A`            → reasoning R, answer A (an "Answer:" prefix on A is dropped);
2. `R</think> A` (no opening tag)  → same (some servers strip the opening tag);
3. `<think>R` (no closing tag)     → partial: reasoning R, no answer, error "unterminated <think> block";
4. no tags but an "Answer:" line   → reasoning = text before it, answer = text after it, flagged in
   extra["format"] = "answer_marker" (small teachers rarely emit tags; not an error);
5. anything else                   → error "no <think> block and no 'Answer:' line", answer = the whole text.
"""
from __future__ import annotations

import json
import re
from typing import Any

from synth.tasks.base import Parsed

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_RE = re.compile(r"(?im)^\s*\**\s*(?:final\s+)?answer\s*\**\s*[:：]\s*")


def strip_answer_marker(text: str) -> str:
    t = text.strip()
    m = ANSWER_RE.match(t)
    return t[m.end():].strip() if m else t


def split_think(text: str | None, finish_reason: str | None = None) -> Parsed:
    """Split a completion into reasoning and answer (see the module docstring for the accepted shapes)."""
    if text is None or not text.strip():
        return Parsed(None, None, error="empty answer")
    t = text.strip()
    truncated = finish_reason == "length"
    o, c = t.find(THINK_OPEN), t.find(THINK_CLOSE)
    if c != -1 and (o == -1 or o < c):
        reasoning = t[o + len(THINK_OPEN):c] if o != -1 else t[:c]
        answer = strip_answer_marker(t[c + len(THINK_CLOSE):])
        reasoning = reasoning.strip()
        err = None
        if not reasoning:
            err = "empty <think> block"
        elif not answer:
            err = "no answer after </think>" + (" (truncated at max_tokens)" if truncated else "")
        return Parsed(reasoning or None, answer or None, error=err,
                      extra={"format": "think" if o != -1 else "close_only"})
    if o != -1:
        reasoning = t[o + len(THINK_OPEN):].strip()
        return Parsed(reasoning or None, None,
                      error="unterminated <think> block" + (" (truncated at max_tokens)" if truncated else ""),
                      extra={"format": "partial"})
    m = None
    for m in ANSWER_RE.finditer(t):
        pass  # last "Answer:" line wins
    if m is not None:
        reasoning, answer = t[:m.start()].strip(), t[m.end():].strip()
        err = None if reasoning and answer else ("no reasoning before 'Answer:'" if not reasoning
                                                 else "nothing after 'Answer:'")
        return Parsed(reasoning or None, answer or None, error=err, extra={"format": "answer_marker"})
    return Parsed(None, t, error="no <think> block and no 'Answer:' line"
                  + (" (truncated at max_tokens)" if truncated else ""), extra={"format": "plain"})


def plain_answer(text: str | None, finish_reason: str | None = None) -> Parsed:
    """For tasks without reasoning (narratives): the whole text, minus a stray think block or marker."""
    if text is None or not text.strip():
        return Parsed(None, None, error="empty answer")
    t = text.strip()
    if THINK_CLOSE in t:
        t = t.split(THINK_CLOSE, 1)[1]
    t = strip_answer_marker(t.replace(THINK_OPEN, ""))
    if not t:
        return Parsed(None, None, error="empty answer")
    err = "truncated at max_tokens" if finish_reason == "length" else None
    return Parsed(None, t, error=err)


def extract_json_object(text: str | None) -> tuple[Any, str | None]:
    """The first JSON object in `text` (tolerating ```json fences and prose around it) → (obj, None), or
    (None, why not)."""
    if not text:
        return None, "no JSON object in the answer"
    t = text
    fence = re.search(r"```(?:json)?\s*(.*?)```", t, re.S)
    if fence:
        t = fence.group(1)
    start = t.find("{")
    if start == -1:
        return None, "no JSON object in the answer"
    dec = json.JSONDecoder()
    last_err = None
    while start != -1:
        try:
            obj, _ = dec.raw_decode(t[start:])
            if isinstance(obj, dict):
                return obj, None
        except json.JSONDecodeError as exc:
            last_err = exc
        start = t.find("{", start + 1)
    return None, f"bad JSON: {last_err}" if last_err else "no JSON object in the answer"


def validate_logic_chain(obj: Any) -> str | None:
    """None when `obj` is {"logic_chain": {"name": str, "events": [{"action", "logic", "date"}, ...]}}."""
    if not isinstance(obj, dict) or not isinstance(obj.get("logic_chain"), dict):
        return "JSON has no 'logic_chain' object"
    ch = obj["logic_chain"]
    if not isinstance(ch.get("name"), str) or not ch["name"].strip():
        return "logic_chain.name missing or not a string"
    ev = ch.get("events")
    if not isinstance(ev, list) or not ev:
        return "logic_chain.events missing or empty"
    for i, e in enumerate(ev):
        if not isinstance(e, dict):
            return f"logic_chain.events[{i}] is not an object"
        for k in ("action", "logic", "date"):
            if not isinstance(e.get(k), str) or not e[k].strip():
                return f"logic_chain.events[{i}].{k} missing or not a string"
    return None
