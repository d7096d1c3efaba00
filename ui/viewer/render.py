"""Model text, made safe to show and easy to read.

Teacher output is untrusted text: it may contain `<script>`, `<b>`, Markdown or Streamlit directives
(`:red[...]`). The viewer never passes it to HTML. It shows the raw text with `st.code` (always literal), and a
*readable* version in which each SID is replaced by its item's title and hallucinated SIDs are flagged; that
version is Markdown in which every piece of model text is backslash-escaped first (CommonMark lets any ASCII
punctuation be escaped), and the only markup is what this module adds around escaped text.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from storage.sid import CODE_TOKEN_RE, SID_LIKE_RE, SID_RE, is_valid_sid, parse_sid

_MD_SPECIAL = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


@dataclass(frozen=True)
class Segment:
    """A run of model text: plain text, a SID found in the catalog, a well-formed SID that is not
    (hallucinated), or something SID-like that does not parse (malformed)."""

    kind: Literal["text", "sid", "hallucinated", "malformed"]
    text: str
    item_id: str | None = None
    title: str | None = None


def segments(text: str | None, lookup: Mapping[str, Mapping]) -> list[Segment]:
    """Split `text` at SIDs; `lookup` maps SIDs of the sample's SID version to {item_id, title}."""
    if not text:
        return []
    out: list[Segment] = []
    pos = 0
    for m in SID_LIKE_RE.finditer(text):
        frag = m.group(0)
        if not frag.strip():
            continue
        if m.start() > pos:
            out.append(Segment("text", text[pos:m.start()]))
        # SID_LIKE_RE may swallow text after a well-formed SID up to the next space; split it off.
        well = SID_RE.match(frag)
        if well and is_valid_sid(well.group(0)):
            sid = well.group(0)
            hit = lookup.get(sid)
            out.append(Segment("sid", sid, hit.get("item_id"), hit.get("title")) if hit
                       else Segment("hallucinated", sid))
            if well.end() < len(frag):
                out.append(Segment("text", frag[well.end():]))
        elif is_valid_sid(frag):
            out.append(Segment("hallucinated", frag))
        else:
            out.append(Segment("malformed", frag))
        pos = m.end()
    if pos < len(text):
        out.append(Segment("text", text[pos:]))
    return out


def escape_markdown(text: str, *, line_start: bool = True) -> str:
    """Make arbitrary text inert in Streamlit Markdown: escape all ASCII punctuation, keep line breaks and
    leading indentation (as no-break spaces, so 4 spaces don't start a code block). `line_start=False` when
    the text continues a line begun by an earlier piece."""
    lines = []
    for i, line in enumerate(text.split("\n")):
        stripped = line.lstrip(" \t") if (i > 0 or line_start) else line
        indent = len(line) - len(stripped)
        lines.append("\u00a0" * indent + _MD_SPECIAL.sub(r"\\\1", stripped))
    return "  \n".join(lines)


def short_sid(sid: str) -> str:
    """'<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>' → 'a1·b2·c3' (only letters/digits/dots: safe markup)."""
    try:
        codes = parse_sid(sid)
    except ValueError:
        return "?"
    return "·".join(f"{chr(97 + i)}{c}" for i, c in enumerate(codes))


def highlight_pattern(search: str | None, regex: bool = False) -> re.Pattern[str] | None:
    """The traces page's search as a case-insensitive pattern (None when empty or not a valid regex)."""
    if not search:
        return None
    try:
        return re.compile(search if regex else re.escape(search), re.IGNORECASE)
    except re.error:
        return None


def _escaped_with_highlights(text: str, pattern: re.Pattern[str] | None, line_start: bool) -> str:
    """Escape `text`; matches of `pattern` go inside a highlight directive (their text escaped too)."""
    if pattern is None:
        return escape_markdown(text, line_start=line_start)
    parts, pos = [], 0
    for m in pattern.finditer(text):
        if m.end() == m.start():
            continue
        if m.start() > pos:
            parts.append(escape_markdown(text[pos:m.start()], line_start=line_start if not parts else False))
        hit = escape_markdown(m.group(0), line_start=False).replace("  \n", " ")
        parts.append(f":orange-background[{hit}]")
        pos = m.end()
    if pos < len(text):
        parts.append(escape_markdown(text[pos:], line_start=line_start if not parts else False))
    return "".join(parts)


def _title_beside(segs: list[Segment], i: int, title: str) -> bool:
    """Whether the text right before or after SID `i` already names its title (a history line "Heat (1995)
    <sid>"): then the SID shows as its code only, not the title a second time."""
    before = segs[i - 1].text if i > 0 and segs[i - 1].kind == "text" else ""
    after = segs[i + 1].text if i + 1 < len(segs) and segs[i + 1].kind == "text" else ""
    t = title.strip().lower()
    return bool(t) and (before.rstrip(" :-—\t").lower().endswith(t) or after.lstrip(" :-—\t").lower().startswith(t))


def to_markdown(segs: list[Segment], highlight: re.Pattern[str] | None = None) -> str:
    """Readable Markdown: known SIDs as bold titles (with their codes; the code alone when the title is already
    written beside the SID), hallucinated ones on red, malformed ones on orange (plain glyphs only: headless
    browsers often lack emoji fonts); matches of `highlight` (the traces search) on orange.
    Model text (including titles, which come from data files) is always escaped."""
    parts: list[str] = []
    for i, s in enumerate(segs):
        if s.kind == "text":
            parts.append(_escaped_with_highlights(s.text, highlight, not parts or parts[-1].endswith("\n")))
        elif s.kind == "sid" and s.title and _title_beside(segs, i, s.title):
            parts.append(f"`{short_sid(s.text)}`")
        elif s.kind == "sid":
            parts.append(f"**{escape_markdown(s.title or s.item_id or '?')}** `{short_sid(s.text)}`")
        elif s.kind == "hallucinated":
            parts.append(f":red-background[**hallucinated SID {short_sid(s.text)}**]")
        else:
            parts.append(f":orange-background[**malformed SID**] {escape_markdown(s.text, line_start=False)}")
    return "".join(parts)


def to_plain(segs: list[Segment]) -> str:
    """The same rendering as plain text (for st.text / tests): [title] / [HALLUCINATED sid] / [MALFORMED …]."""
    parts = []
    for s in segs:
        if s.kind == "text":
            parts.append(s.text)
        elif s.kind == "sid":
            parts.append(f"[{s.title or s.item_id}]")
        elif s.kind == "hallucinated":
            parts.append(f"[HALLUCINATED {short_sid(s.text)}]")
        else:
            parts.append(f"[MALFORMED {s.text}]")
    return "".join(parts)


def _short_prefix(prefix: object) -> str | None:
    """'<|sid_begin|><s_a_3><s_b_1>' → 'a3·b1' (any text with code tokens); other values as given."""
    if not prefix:
        return None
    codes = CODE_TOKEN_RE.findall(str(prefix))
    return "·".join(f"{letter}{code}" for letter, code in codes) if codes else str(prefix)


def _point_name(points: Mapping[int, Mapping], pid: object) -> str | None:
    """'(2) animated family films' for an interest point id, None for no id."""
    if pid is None:
        return None
    p = points.get(pid) if isinstance(pid, int) else None
    return f"({pid}) {p.get('label') or ''}".strip() if p else f"({pid})"


def skeleton_rows(skeleton: Mapping) -> dict[str, list[dict]]:
    """The cognition skeleton (storage.cognition, `extra["skeleton"]`) as table rows for the trace page:
    `interest_points` (share as a percentage, recency, member SIDs as short codes, the target's point marked),
    `periods` (each with its dominant point named) and `summary` (long-term / recent point, shifts, target point).
    Only data values are copied, as plain strings and numbers: tables render them as text."""
    points = {p.get("id"): p for p in skeleton.get("interest_points") or [] if isinstance(p, Mapping)}
    target = skeleton.get("target_point")
    ip_rows = []
    for pid, p in points.items():
        share = p.get("share")
        ip_rows.append({
            "point": pid, "label": p.get("label"), "share": None if share is None else f"{float(share):.0%}",
            "items": p.get("count"), "recent": p.get("recent_count"), "last": p.get("last_date"),
            "target": "target" if target is not None and pid == target else "",
            "categories": ", ".join(str(c) for c in p.get("categories") or []),
            "sid_prefix": _short_prefix(p.get("sid_prefix")),
            "SIDs": ", ".join(short_sid(s) for s in p.get("sids") or [])})
    evo = skeleton.get("evolution") or {}
    periods = [{"period": i + 1, "start": q.get("start"), "end": q.get("end"), "items": q.get("items"),
                "dominant": _point_name(points, q.get("dominant"))}
               for i, q in enumerate(evo.get("periods") or []) if isinstance(q, Mapping)]
    shifts = "; ".join(f"{_point_name(points, s.get('from'))} → {_point_name(points, s.get('to'))}"
                       + (f" ({s['date']})" if s.get("date") else "")
                       for s in evo.get("shifts") or [] if isinstance(s, Mapping))
    summary = [{"what": k, "value": v} for k, v in (
        ("long-term interest", _point_name(points, evo.get("long_term"))),
        ("recent interest", _point_name(points, evo.get("recent"))),
        ("shifts", shifts or None),
        ("target serves", _point_name(points, target)),
        ("history items", str(len(skeleton.get("perception") or [])))) if v not in (None, "")]
    return {"interest_points": ip_rows, "periods": periods, "summary": summary}
