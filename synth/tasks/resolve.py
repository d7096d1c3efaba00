"""Blind-mode answers mapped back onto the catalog: which item did the teacher recommend?

A blind teacher predicts without seeing the target, and a real model often names a title ("Heat (1995)")
or a SID that does not exist rather than a catalog SID. `CatalogResolver.resolve(answer)` decides, in order:

1. **SID**: the first SID in the answer that is in the catalog (for this SID version) → method `sid`, score 100;
2. **title**: else the answer's title (SIDs, an "Answer:" marker, quotes and a trailing full stop removed; the
   first non-empty line) matched against every catalog title with rapidfuzz (`fuzz.ratio`, 0–100) after
   normalization (lower case, accents and punctuation dropped, "Godfather, The" → "the godfather"). A
   "(year)" in the answer is matched against title + year; without one, against the title alone, so
   "Hamlet" matches every Hamlet equally. The best match must score ≥ `threshold`, and any *other* item
   within `margin` points of it makes the answer **ambiguous** (refused, never a coin toss);
3. otherwise the answer is **unresolved**.

A resolved title answer is rewritten to the catalog's own `SID Title` (what the student should learn to say;
the teacher's text is kept in extra["resolution"]["answer_text"]), so the stored chat, `answer_sids` and the
curation filters all see the resolved item. An unresolved or ambiguous answer sets the sample's `error`
("unresolved answer: …" / "ambiguous title: …"), which curation's format filter rejects with that reason.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from storage.answer import Parsed, strip_answer_marker
from storage.sid import SID_RE, extract_sids

DEFAULT_THRESHOLD = 90.0
DEFAULT_MARGIN = 2.0

_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")
_ARTICLE_RE = re.compile(r"^(.*),\s*(the|a|an|le|la|les|l'|il|el|die|der|das|den|det)$", re.I)
_PUNCT_RE = re.compile(r"[^\w\s]")
_SPACE_RE = re.compile(r"\s+")


def split_year(title: str) -> tuple[str, str | None]:
    """("Casino", "1995") from "Casino (1995)"; (title, None) without a trailing year."""
    t = title.strip()
    m = _YEAR_RE.search(t)
    if not m:
        return t, None
    return t[:m.start()].strip(), m.group(1)


def normalize_title(title: str) -> str:
    """Lower case, accents dropped, a trailing ", The" moved to the front, punctuation → spaces."""
    t = unicodedata.normalize("NFKD", title)
    t = "".join(c for c in t if not unicodedata.combining(c)).strip()
    m = _ARTICLE_RE.match(t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    t = _PUNCT_RE.sub(" ", t.lower().replace("&", " and "))
    return _SPACE_RE.sub(" ", t).strip()


def _with_year(base: str, year: str | None) -> str:
    """The normalized title, then the year (after normalizing, so "Godfather, The" still moves its article)."""
    t = normalize_title(base)
    return f"{t} {year}" if year else t


def answer_title(answer: str) -> str:
    """The title a free-text answer names: SIDs, an "Answer:" marker, list dashes, quotes and a trailing
    full stop removed; the first non-empty line."""
    text = strip_answer_marker(SID_RE.sub(" ", answer))
    for line in text.splitlines():
        line = line.strip().lstrip("-*•").strip().strip("\"'“”*_`").strip()
        line = line.rstrip(".").strip().strip("\"'“”*_`").strip()
        if line:
            return line
    return ""


@dataclass
class Resolution:
    item_id: str | None
    sid: str | None
    method: str | None          # "sid" | "title" | None (not resolved)
    score: float | None
    error: str | None = None
    title: str | None = None    # the catalog title of the resolved item
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "score": self.score, "item_id": self.item_id, "sid": self.sid,
                "title": self.title, **self.extra}


class CatalogResolver:
    """Resolves answers against catalog items `[(item_id, sid, title), ...]` (see the module docstring)."""

    def __init__(self, items: list[tuple[str, str, str | None]], *, threshold: float = DEFAULT_THRESHOLD,
                 margin: float = DEFAULT_MARGIN):
        if not 0 < threshold <= 100:
            raise ValueError(f"threshold must be in (0, 100], got {threshold}")
        self.threshold, self.margin = float(threshold), float(margin)
        self.by_sid: dict[str, tuple[str, str | None]] = {}
        self.item_ids: list[str] = []
        self.sids: list[str] = []
        self.titles: list[str] = []
        self.with_year: list[str] = []     # normalized "title year"
        self.bare: list[str] = []          # normalized title without its year
        for item_id, sid, title in items:
            self.by_sid.setdefault(sid, (item_id, title))
            if not title:
                continue
            base, year = split_year(title)
            self.item_ids.append(item_id)
            self.sids.append(sid)
            self.titles.append(title)
            self.bare.append(normalize_title(base))
            self.with_year.append(_with_year(base, year))

    @classmethod
    def from_workspace(cls, ws: Any, sid_version: int, **kw: Any) -> CatalogResolver:
        rows = ws.query("SELECT i.item_id, s.sid, i.title FROM items i JOIN item_sids s USING (item_id) "
                        "WHERE s.sid_version = ? ORDER BY i.item_id", [sid_version])
        return cls([(r[0], r[1], r[2]) for r in rows], **kw)

    def resolve(self, answer: str | None) -> Resolution:
        answer = answer or ""
        sids = extract_sids(answer)
        for s in sids:
            if s in self.by_sid:
                item_id, title = self.by_sid[s]
                return Resolution(item_id, s, "sid", 100.0, title=title)
        unknown = f"SID {sids[0]} is not in the catalog; " if sids else ""
        raw = answer_title(answer)
        if not raw:
            return Resolution(None, None, None, None, error=f"unresolved answer: {unknown}no title in "
                                                               f"{answer[:80]!r}")
        base, year = split_year(raw)
        query = _with_year(base, year)
        choices = self.with_year if year else self.bare
        if not query or not choices:
            return Resolution(None, None, None, None, error=f"unresolved answer: {unknown}no catalog title "
                                                               f"to match {raw!r}")
        from rapidfuzz import fuzz, process

        found = process.extract(query, choices, scorer=fuzz.ratio, processor=None,
                                limit=8, score_cutoff=max(0.0, self.threshold - self.margin))
        best = max((sc for _, sc, _ in found), default=None)
        if best is None or best < self.threshold:
            near = process.extractOne(query, choices, scorer=fuzz.ratio, processor=None)
            hint = f" (closest: {self.titles[near[2]]!r}, score {near[1]:.0f})" if near else ""
            return Resolution(None, None, None, None,
                              error=f"unresolved answer: {unknown}no catalog title matches {raw!r} at score "
                                    f">= {self.threshold:.0f}{hint}")
        top = [(sc, i) for _, sc, i in found if sc >= best - self.margin]
        top.sort(key=lambda x: (-x[0], x[1]))
        ids = {self.item_ids[i] for _, i in top}
        if len(ids) > 1:
            names = ", ".join(f"{self.titles[i]!r} ({sc:.0f})" for sc, i in top[:4])
            return Resolution(None, None, None, round(best, 2),
                              error=f"ambiguous title: {raw!r} matches {len(ids)} catalog items within "
                                    f"{self.margin:g} points: {names}")
        _, i = top[0]
        return Resolution(self.item_ids[i], self.sids[i], "title", round(best, 2), title=self.titles[i])


def apply_resolution(resolver: CatalogResolver, parsed: Parsed) -> None:
    """Resolve `parsed.answer` in place: extra["resolution"] (method, score, item, SID), the answer rewritten
    to `SID Title` when it was resolved by title, or `error` when it was not."""
    if parsed.error is not None or parsed.answer is None:
        return
    res = resolver.resolve(parsed.answer)
    info = res.as_dict()
    if res.error is not None:
        info["error"] = res.error
        parsed.extra["resolution"] = info
        parsed.error = res.error
        return
    if res.method == "title":
        info["answer_text"] = parsed.answer
        parsed.answer = f"{res.sid} {res.title}"
    parsed.extra["resolution"] = info
