"""What a model answer looks like: the one home for parsing and checking `<think>…</think>` + answer text,
JSON inside an answer, and the R2 evolution-chain schema. Used by synth (task parsers, the teacher engine),
curation (format filter, judge, rewards) and trainers (through `curation.rewards`).

Two kinds of functions, deliberately different in strictness:
- *parsers* (`split_think`, `plain_answer`, `extract_json_object`, `parse_logic_chain`) never raise and are
  lenient: a teacher answer is kept as a row with `error` set, so curation can reject it with a reason and a
  reviewer can see it;
- *the format rule* (`check_format`, and the same rule as RE2/Python regexes `THINK_FORMAT_PATTERN`,
  `PLAIN_ANSWER_PATTERN`, `EMPTY_THINK_PATTERN`) says whether a completion is well formed, with the reason it
  is not. The curation format filter runs the patterns vectorized over Arrow; rewards and tests run
  `check_format`; `tests/test_answer_agreement.py` checks both say the same on one corpus and on random text.

Accepted shapes for `split_think`, most to least preferred:
1. `<think>R</think> A`            → reasoning R, answer A (an "Answer:" prefix on A is dropped);
2. `R</think> A` (no opening tag)  → same (some servers strip the opening tag);
   a second `<think>` or `</think>` anywhere → error "more than one <think> block" (the sample written from
   it would break the format rule);
3. `<think>R` (no closing tag)     → partial: reasoning R, no answer, error "unterminated <think> block";
4. no tags but an "Answer:" line   → reasoning = text before it, answer = text after it, flagged in
   extra["format"] = "answer_marker" (small teachers rarely emit tags; not an error);
5. anything else                   → error "no <think> block and no 'Answer:' line", answer = the whole text.

Well formed (`check_format`), in the order the reasons are given:
- not empty (whitespace only counts as empty);
- either no think tags at all (allowed unless the sample must think), or exactly one `<think>` and one
  `</think>`, in that order, with nothing but whitespace before `<think>` (unless `allow_text_before_think`);
- a thinking sample (`think=True`) has non-whitespace inside the block; a /no_think sample (`think=False`)
  has none (an empty `<think></think>` is fine: Qwen-style chat templates emit it); `think=None` accepts both;
- a non-empty answer after `</think>`.
"Whitespace" is the ASCII set `WS` everywhere (Python and RE2 disagree on Unicode spaces, so neither is used).
This reconciles the three earlier copies: the curation format filter's rule is kept as it was (its patterns
now come from here); `format_reward` applied the same rule (plus its own SID checks) but with Unicode
whitespace — now ASCII, like the filter; the synth parser stays lenient (it parses, it does not judge: an
"Answer:" line or a missing `<think>` is accepted there and rejected by the rule for thinking samples) and
flags with `error` every answer the rule rejects for a missing/unclosed/empty block, an empty answer or a
second think tag (the last is new: it used to pass a second block on into the answer, and the sample written
from it then failed the format filter). The agreement test checks: a synth row passes the format filter
exactly when the synth parser did not flag its answer.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
WS = " \t\n\r\f\v"
"""The whitespace of the format rule (ASCII; what RE2's character class below matches too)."""

ANSWER_RE = re.compile(r"(?im)^\s*\**\s*(?:final\s+)?answer\s*\**\s*[:：]\s*")


@dataclass
class Parsed:
    """A parsed teacher answer. `error` set = malformed/partial (the row is still written)."""

    reasoning: str | None
    answer: str | None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- parsing
def strip_answer_marker(text: str) -> str:
    """Drop a leading "Answer:" / "**Final answer:**" marker."""
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
        if t.count(THINK_OPEN) > 1 or t.count(THINK_CLOSE) > 1:
            err = "more than one <think> block"
        elif not reasoning:
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
    markers = list(ANSWER_RE.finditer(t))
    if markers:
        m = markers[-1]                             # the last "Answer:" line wins
        reasoning, answer = t[:m.start()].strip(), t[m.end():].strip()
        err = None if reasoning and answer else ("no reasoning before 'Answer:'" if not reasoning
                                                 else "nothing after 'Answer:'")
        return Parsed(reasoning or None, answer or None, error=err, extra={"format": "answer_marker"})
    return Parsed(None, t, error="no <think> block and no 'Answer:' line"
                  + (" (truncated at max_tokens)" if truncated else ""), extra={"format": "plain"})


def reasoning_and_answer(text: str | None) -> tuple[str | None, str]:
    """`split_think` as a pair (reasoning or None, answer or ''), for scoring code that only needs the answer
    part: an unclosed `<think>` gives '' because a model that never closed its reasoning gave no answer."""
    p = split_think(text)
    return p.reasoning, p.answer or ""


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


# ------------------------------------------------------------------------------------------------- JSON
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
NO_JSON = "not JSON: no object in the answer"


def _first_object(t: str) -> tuple[dict[str, Any] | None, json.JSONDecodeError | None]:
    dec = json.JSONDecoder()
    first_err = None
    start = t.find("{")
    while start != -1:
        try:
            obj, _ = dec.raw_decode(t, start)
            if isinstance(obj, dict):
                return obj, None
        except json.JSONDecodeError as exc:
            first_err = first_err or exc
        start = t.find("{", start + 1)
    return None, first_err


def extract_json_object(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The first JSON object in `text` → (obj, None), or (None, why not). Tolerates a ```json fence (models add
    one even when asked not to) and prose around the object; when a fence holds no object the whole text is
    searched. The reason for unparsable JSON names the first error, with line and column in the stripped text
    (or its fenced part): "not JSON (Expecting ',' delimiter at line 1 column 17)"."""
    if not text or not text.strip():
        return None, "empty answer"
    text = text.strip()                        # positions in reasons do not depend on surrounding whitespace
    fence = _FENCE_RE.search(text)
    candidates = [fence.group(1), text] if fence else [text]
    first_err = None
    for t in candidates:
        obj, err = _first_object(t)
        if obj is not None:
            return obj, None
        first_err = first_err or err
    if first_err is None:
        return None, NO_JSON
    return None, f"not JSON ({first_err.msg} at line {first_err.lineno} column {first_err.colno})"


# -------------------------------------------------------------------------------------- the R2 schema
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class R2Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: NonEmpty
    logic: NonEmpty
    date: NonEmpty


class R2Chain(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: NonEmpty
    events: list[R2Event] = Field(min_length=1)


class R2Answer(BaseModel):
    """An R2 (evolution-chain) answer: {"logic_chain": {"name": str, "events": [{"action", "logic", "date"}]}},
    every string non-empty and at least one event; extra keys are allowed."""
    model_config = ConfigDict(extra="allow")
    logic_chain: R2Chain


R2_REASON = "invalid R2 JSON: "


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validate_logic_chain(obj: Any) -> str | None:
    """None when `obj` follows the R2 schema, else the reason ("invalid R2 JSON: missing key
    'logic_chain.events[1].date'"; at most four problems are named)."""
    try:
        R2Answer.model_validate(obj)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            where = _loc(e["loc"])
            if e["type"] == "missing":
                parts.append(f"missing key '{where}'")
            elif not where:
                parts.append(f"{e['msg'].lower()}")
            else:
                parts.append(f"'{where}': {e['msg'].lower()}")
        return R2_REASON + "; ".join(parts[:4])
    return None


def parse_logic_chain(answer: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(the answer's JSON object, None) when it holds a valid R2 chain, else (None, reason)."""
    obj, why = extract_json_object(answer)
    if obj is None:
        return None, R2_REASON + (why or NO_JSON)
    why = validate_logic_chain(obj)
    return (None, why) if why else (obj, None)


# ------------------------------------------------------------------------------------------ the format rule
# Regexes in the common subset of Python `re` and RE2 (no lookaround, no \Z/\z, explicit ASCII whitespace), so
# pyarrow.compute.match_substring_regex runs them as a DFA over a whole column.
_W = r"[ \t\n\r\f\v]"
_NW = r"[^< \t\n\r\f\v]"
# After a '<': a proper prefix of "think>" or "/think>" (possibly empty) …
_PARTIAL = r"(?:t(?:h(?:i(?:n(?:k)?)?)?)?|/(?:t(?:h(?:i(?:n(?:k)?)?)?)?)?)?"
# … or such a prefix followed by a character that ends it (neither the tag's next letter nor another '<').
_BREAK = (r"(?:[^<t/]|t(?:[^<h]|h(?:[^<i]|i(?:[^<n]|n(?:[^<k]|k[^<>]))))"
          r"|/(?:[^<t]|t(?:[^<h]|h(?:[^<i]|i(?:[^<n]|n(?:[^<k]|k[^<>]))))))")
_SEG = rf"(?:<{_PARTIAL})*<{_BREAK}"
TAG_FREE = rf"(?:[^<]|{_SEG})*(?:<{_PARTIAL})*"
"""Any text that contains neither `<think>` nor `</think>` (what RE2 cannot say with a lookahead)."""
_TAG_FREE_NONEMPTY = rf"{_W}*(?:(?:{_NW}|{_SEG}){TAG_FREE}|(?:<{_PARTIAL})+)"


def think_format_pattern(allow_text_before_think: bool = False) -> str:
    """The think-block shape: one `<think>…</think>` (reasoning may be empty), a non-empty answer, no other tag."""
    before = TAG_FREE if allow_text_before_think else f"{_W}*"
    return rf"^{before}<think>{TAG_FREE}</think>{_TAG_FREE_NONEMPTY}$"


THINK_FORMAT_PATTERN = think_format_pattern()
"""Matches a well-formed `<think>R</think> A` completion (R may be empty; see `check_format`)."""
PLAIN_ANSWER_PATTERN = rf"^{_TAG_FREE_NONEMPTY}$"
"""Matches a well-formed completion without think tags (allowed unless the sample must think)."""
EMPTY_THINK_PATTERN = rf"<think>{_W}*</think>"
"""Within a THINK_FORMAT_PATTERN match: the reasoning is empty."""

EMPTY_COMPLETION = "empty completion: no assistant text"
MISSING_THINK = "missing think block: expected <think>…</think> before the answer"
MISPLACED_THINK = "broken think tags: </think> before <think> or text before <think>"
EMPTY_REASONING = "empty reasoning: nothing inside <think>…</think>"
UNEXPECTED_REASONING = "unexpected reasoning: a /no_think sample has text inside <think>…</think>"
EMPTY_ANSWER = "empty answer: nothing after </think>"


def broken_tags_reason(text: str) -> str:
    return (f"broken think tags: {text.count(THINK_OPEN)} <think> and {text.count(THINK_CLOSE)} </think> "
            "(expected one of each)")


def check_format(text: str | None, think: bool | None = None, *,
                 allow_text_before_think: bool = False) -> tuple[bool, str | None]:
    """(True, None) for a well-formed completion, else (False, the first rule it breaks) — the rule of the
    module docstring. `think`: True = must reason, False = must not, None = either."""
    t = text or ""
    if not t.strip(WS):
        return False, EMPTY_COMPLETION
    n_open, n_close = t.count(THINK_OPEN), t.count(THINK_CLOSE)
    if n_open == 0 and n_close == 0:
        return (False, MISSING_THINK) if think is True else (True, None)
    if n_open != 1 or n_close != 1:
        return False, broken_tags_reason(t)
    o, c = t.index(THINK_OPEN), t.index(THINK_CLOSE)
    if c < o or (not allow_text_before_think and t[:o].strip(WS)):
        return False, MISPLACED_THINK
    reasoning = t[o + len(THINK_OPEN):c].strip(WS)
    if think is True and not reasoning:
        return False, EMPTY_REASONING
    if think is False and reasoning:
        return False, UNEXPECTED_REASONING
    if not t[c + len(THINK_CLOSE):].strip(WS):
        return False, EMPTY_ANSWER
    return True, None
