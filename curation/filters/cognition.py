"""Three-level cognition CoT checks (see storage/cognition.py for the format and the skeleton's shape).

- `cognition_structure`: a trace written with a template that asks for the three levels (`r3_recommend@v2`
  and later) has all three, in order, each non-empty; the reason names the level (`missing level: Evolution`,
  `levels out of order: …`, `repeated level: …`, `empty level: Interest points`). Which samples: think samples
  whose `template_version` is a listed template at that version or later. Not "every sample carrying a
  skeleton": the skeleton is data about the user, and a sample may carry it without having been asked for the
  levels (e.g. a v1 trace re-scored against it); the template is what promised the format.
- `skeleton_agreement`: how well the reasoning agrees with the data-derived skeleton it should verbalize
  (samples with a skeleton in `extra` and a non-empty reasoning; others kept, unscored):

      sid_share   = |cited ∩ (history ∪ answer)| / |cited|    (0 when the reasoning cites no SID)
      point_share = covered interest points / interest points considered
      score       = sid_weight · sid_share + (1 − sid_weight) · point_share
                    (just sid_share when the skeleton has no interest points)

  `cited` are the distinct well-formed SIDs in the reasoning; `history` the skeleton's perception SIDs (the
  user's train history); `answer` the sample's answer SIDs. An interest point is *covered* when the reasoning
  (a) cites one of its member SIDs, or (b) cites a SID under its `sid_prefix` (the prefix's code tokens start
  the SID's) or writes that prefix in synth's prose form (`a_1/b_2`, as a whole), or (c) contains at least
  half (rounded up) of its label's content words (SIDs removed from the reasoning first) — lower-cased runs of
  letters/digits, at least 3 characters, not stop words, a final "s" dropped on both sides so "thriller"
  matches "thrillers". Points considered: the first `max_points` of the skeleton's list (synth lists them by
  share, largest first), all by default. A score below `min_score` drops the sample; the reason gives both
  shares and names the uncovered points.

The SID share is one DuckDB query over the column; the skeleton JSON is parsed per row (it is per row data).
"""
from __future__ import annotations

import math
import re
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import field_validator

from curation.base import Filter, FilterContext, FilterParams, RowFilter, RowVerdict, Verdicts, register, rows_nonempty
from storage.cognition import SKELETON_KEY, skeleton_of, split_levels
from storage.sid import CODE_TOKEN_RE, SID_RE, SID_SQL_PATTERN

_TEMPLATE_RE = re.compile(r"^(?P<name>[a-z0-9_]+)@v(?P<version>\d+)")


def _think(table: pa.Table) -> np.ndarray:
    return np.asarray(pc.fill_null(table.column("think"), False).to_numpy(zero_copy_only=False), dtype=bool)


def _template_key(ref: str | None) -> tuple[str, int] | None:
    """'r3_recommend@v2.fr' → ('r3_recommend', 2); None for anything else."""
    m = _TEMPLATE_RE.match(ref or "")
    return (m["name"], int(m["version"])) if m else None


def template_at_least(template_versions: list[str | None], templates: list[str]) -> np.ndarray:
    """Per row: its template_version ('r3_recommend@v2', '…@v2.fr') is one of `templates` ('name@vN') or a
    later version of the same template."""
    want: dict[str, int] = {}
    for t in templates:
        key = _template_key(t)
        if key is not None:
            want[key[0]] = min(key[1], want.get(key[0], key[1]))
    out = np.zeros(len(template_versions), bool)
    for i, tv in enumerate(template_versions):
        key = _template_key(tv)
        out[i] = key is not None and key[0] in want and key[1] >= want[key[0]]
    return out


class CognitionStructureParams(FilterParams):
    templates: list[str] = ["r3_recommend@v2"]
    """Templates that ask for the three levels ('name@vN': that version and later, any language)."""

    @field_validator("templates")
    @classmethod
    def _refs(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if _template_key(t) is None]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} is not a template ref 'name@vN' (e.g. r3_recommend@v2)")
        return v


@register
class CognitionStructureFilter(RowFilter[CognitionStructureParams], type_name="cognition_structure",
                               review_label="format", columns=("reasoning",)):
    def applies_to(self, table: pa.Table) -> np.ndarray:
        p = self.params
        mask: np.ndarray = _think(table) & template_at_least(table.column("template_version").to_pylist(),
                                                             p.templates)
        return mask

    def check_row(self, row: dict[str, Any]) -> RowVerdict:
        levels = split_levels(row["reasoning"])
        return (True, None, None) if isinstance(levels, dict) else (False, levels, None)


# ------------------------------------------------------------------------------------------ agreement
_WORD_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "the and for with from into onto over under about after before than then that this these those their "
    "there what which who whom whose are was were been being has have had not but all any some more most "
    "other such only own same very can will just its per via film movie item product user history sid prefix"
    .split())
"""Words that never make a label covered on their own: "film" would match every movie trace, and synth labels
a point grouped by SID prefix "SID prefix a_1/b_2" (that one is covered by the prefix rule instead)."""


def _stem(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") else w


def content_words(text: str | None) -> list[str]:
    """Lower-cased letter/digit runs of ≥ 3 characters that are not stop words, final 's' dropped, in order."""
    words = _WORD_RE.findall((text or "").lower())
    return [_stem(w) for w in words if len(w) >= 3 and w not in STOPWORDS]


def _codes(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(CODE_TOKEN_RE.findall(text))


def prefix_prose(codes: tuple[tuple[str, str], ...]) -> str:
    """A SID prefix as synth writes it in prose (no SID tokens, which would read as a malformed SID):
    (('a', '1'), ('b', '2')) → 'a_1/b_2'."""
    return "/".join(f"{letter}_{code}" for letter, code in codes)


def point_covered(point: dict[str, Any], text: str, cited: set[str], cited_codes: list[tuple[tuple[str, str], ...]],
                  words: set[str]) -> bool:
    """Whether the reasoning (its text, cited SIDs, their code tokens, content words) covers one interest point:
    a member SID cited, a cited SID under the point's sid_prefix or that prefix written in prose ('a_1/b_2'),
    or ≥ half of the label's content words."""
    if cited.intersection(point.get("sids") or []):
        return True
    prefix = _codes(point.get("sid_prefix") or "")
    if prefix and any(c[:len(prefix)] == prefix for c in cited_codes):
        return True
    if prefix and re.search(r"(?<![\w/])" + re.escape(prefix_prose(prefix)) + r"(?![\w/])", text):
        return True
    label = set(content_words(point.get("label")))
    return bool(label) and len(label & words) >= math.ceil(len(label) / 2)


def cited_sid_shares(table: pa.Table) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """Per row: the distinct SIDs the reasoning cites, how many of them are in the skeleton's perception
    (history) SIDs or the answer SIDs, and how many there are (one DuckDB query over the whole table)."""
    con = duckdb.connect()
    try:
        con.register("t", table.select(["reasoning", "answer", "answer_sids", "extra"]))
        res = con.sql(f"""
            WITH c AS (
                SELECT list_distinct(regexp_extract_all(coalesce(reasoning, ''), '{SID_SQL_PATTERN}')) AS cited,
                       coalesce(json_extract_string(CASE WHEN json_valid(extra) THEN extra ELSE '{{}}' END,
                                                    '$.{SKELETON_KEY}.perception[*].sid'), [])
                         || coalesce(answer_sids, regexp_extract_all(coalesce(answer, ''), '{SID_SQL_PATTERN}'))
                         AS known
                FROM t)
            SELECT cited, len(list_filter(cited, lambda s: list_contains(known, s)))::INTEGER AS grounded,
                   len(cited)::INTEGER AS n_cited
            FROM c""").to_arrow_table()
    finally:
        con.close()
    return (res.column("cited").to_pylist(), res.column("grounded").to_numpy(zero_copy_only=False),
            res.column("n_cited").to_numpy(zero_copy_only=False))


class SkeletonAgreementParams(FilterParams):
    min_score: float = 0.5
    """Drop samples whose agreement score is below this (0 keeps everything and only scores)."""
    sid_weight: float = 0.5
    """Weight of the SID share in the score; the interest-point share gets the rest."""
    max_points: int | None = None
    """Only the first N interest points of the skeleton count (None: all)."""


@register
class SkeletonAgreementFilter(Filter[SkeletonAgreementParams], type_name="skeleton_agreement",
                              review_label="wrong_logic"):
    def applies_to(self, table: pa.Table) -> np.ndarray:
        has_skeleton = pc.fill_null(pc.match_substring(table.column("extra"), f'"{SKELETON_KEY}"'), False)
        mask: np.ndarray = (_think(table) & rows_nonempty(table, "reasoning")
                            & has_skeleton.to_numpy(zero_copy_only=False))
        return mask

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p = self.params
        n = table.num_rows
        cited, grounded, n_cited = cited_sid_shares(table)
        extras = table.column("extra").to_pylist()
        texts = table.column("reasoning").to_pylist()
        keep = np.ones(n, bool)
        reasons: list[str | None] = [None] * n
        score = np.full(n, np.nan)
        for i in range(n):
            sk = skeleton_of(extras[i])
            if sk is None:  # "skeleton" in the text but no readable skeleton: nothing to agree with
                continue
            sid_share = grounded[i] / n_cited[i] if n_cited[i] else 0.0
            points = [q for q in sk.get("interest_points") or [] if isinstance(q, dict)]
            points = points[:p.max_points] if p.max_points is not None else points
            c = set(cited[i] or [])
            words = set(content_words(SID_RE.sub(" ", texts[i] or "")))  # SID tokens are not label words
            covered = [point_covered(q, texts[i] or "", c, [_codes(s) for s in c], words) for q in points]
            point_share = sum(covered) / len(points) if points else None
            s = sid_share if point_share is None else p.sid_weight * sid_share + (1 - p.sid_weight) * point_share
            score[i] = s
            if s < p.min_score:
                keep[i] = False
                sids = (f"cited SIDs in history or answer {grounded[i]}/{n_cited[i]}" if n_cited[i]
                        else "the reasoning cites no SID")
                pts = ("no interest points" if point_share is None else
                       f"interest points covered {sum(covered)}/{len(points)}")
                missing = [f"({q.get('id')}) {q.get('label')}" for q, ok in zip(points, covered) if not ok]
                reasons[i] = (f"low skeleton agreement: score {s:.2f} < {p.min_score:g} ({sids}; {pts}"
                              + (f"; not covered: {', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}"
                                 if missing else "") + ")")
        return Verdicts(keep, reasons, score)
