"""SID validity and grounding: every SID in the completion parses, exists in the SID version used, and a
title written next to a SID is that SID's item.

All SID occurrences are extracted and joined against the catalog in one DuckDB query (no Python loop over
samples); Python only names malformed fragments (rows whose counts of `<|sid_begin|>` and `<s_` exceed what
their well-formed SIDs account for) and compares the few titles written next to SIDs.

Title mentions recognized (SID = a well-formed SID): `SID (Title)`, `SID [Title]`, `SID "Title"`,
`SID: "Title"`, `"Title" SID`, `"Title" (SID)`. A mention is a *mismatch* when it does not resemble the SID's
own title and (by default, `title_mismatch: other_title`) it is the exact normalized title of another
catalog item — so free text such as `SID (a 90s comedy)` is not flagged; `title_mismatch: any` flags every
mention that does not resemble the SID's own title.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.base import Filter, FilterContext, FilterParams, Verdicts, register, rows_where
from curation.catalog import normalize_title, sample_sid_versions
from storage.sid import (
    CODE_TOKEN_PREFIX,
    OPEN_PREFIX_RE,
    SID_BEGIN,
    SID_END,
    SID_RE,
    SID_SQL_PATTERN,
    count_sql,
    find_malformed_sids,
    is_valid_sid,
    sid_from_codes_sql,
)

_SID = SID_RE.pattern  # RE2-compatible (no look-around)
_AFTER = _SID + (r"""(?:\s*\(\s*"([^"\n]{2,200})"\s*\)"""                 # SID ("Title")
                 r"""|\s*\(((?:[^()\n]|\([^()\n]*\)){2,200}?)\)"""        # SID (Title (1995))
                 r"""|\s*\[\s*"?([^\[\]\n"]{2,200}?)"?\s*\]"""           # SID [Title]
                 r"""|:?\s*"([^"\n]{2,200})")""")                          # SID "Title" / SID: "Title"
_BEFORE = r'"([^"\n]{2,200})"\s*\(?\s*' + _SID


class SidGroundingParams(FilterParams):
    check_titles: bool = True
    title_mismatch: Literal["other_title", "any"] = "other_title"
    title_similarity: float = 0.8
    """difflib ratio at or above which a mention counts as the SID's own title (after normalization)."""
    max_named: int = 5
    """At most this many offending SIDs are written into one reason (the count is always given)."""
    prefix_tasks: list[str] = ["align_token"]
    """Tasks whose text legitimately holds SID *prefixes* (`<|sid_begin|><s_a_12>` with no end tag, e.g. token
    alignment). There an open prefix is checked against the catalog (some item's SID must start with it) instead
    of being called malformed."""


def _names(items: list[str], k: int) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" (+{len(items) - k} more)" if len(items) > k else "")


_Occ = tuple[int, int, int, int, list[str]]  # row, SIDs, code tokens in them, unknown SIDs, the unknown ones
_Mention = tuple[int, str, str, str]  # row, SID codes, the title written next to it, the SID's own title


@dataclass
class _Tally:
    """Per row: the issues found (in the order they are reported), SIDs seen and SIDs that are bad."""

    issues: list[list[str]]
    n_sids: np.ndarray
    n_bad: np.ndarray

    @classmethod
    def of(cls, n: int) -> _Tally:
        return cls([[] for _ in range(n)], np.zeros(n, np.int64), np.zeros(n, np.int64))


@register
class SidGroundingFilter(Filter[SidGroundingParams], type_name="sid_grounding",
                         review_label="hallucinated_item"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: SidGroundingParams = self.params
        versions = sample_sid_versions(table, ctx)
        cat = ctx.sid_table(np.unique(versions))
        text = table.column("_completion")
        tally = _Tally.of(table.num_rows)
        if p.prefix_tasks and "task" in table.column_names:
            text = self._check_prefixes(table, text, versions, ctx, tally)
        with ctx.sql() as con:
            counts, occ, mentions = _find_sids(con, text, versions, cat, p.check_titles)
        self._report_malformed(text, counts, occ, tally)
        self._report_unknown(occ, versions, tally)
        if mentions:
            self._report_titles(mentions, ctx.normalized_titles(np.unique(versions)), tally)
        n_sids, n_bad = tally.n_sids, tally.n_bad
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(n_sids > 0, 1.0 - np.minimum(n_bad, n_sids) / np.maximum(n_sids, 1), np.nan)
        return Verdicts.from_reasons(["; ".join(x) if x else None for x in tally.issues], score)

    def _report_malformed(self, text: pa.ChunkedArray, counts: dict[str, np.ndarray], occ: list[_Occ],
                          tally: _Tally) -> None:
        """Rows whose raw counts of begin tags and code tokens exceed what their well-formed SIDs account for
        hold a malformed fragment: name it."""
        n = len(tally.issues)
        seen_begin = np.zeros(n, np.int64)
        seen_codes = np.zeros(n, np.int64)
        for row, total, codes, _, _ in occ:
            seen_begin[row], seen_codes[row] = total, codes
        cand = np.flatnonzero((counts["n_begin"] != seen_begin) | (counts["n_code"] != seen_codes))
        if not len(cand):
            return
        for i, s in zip(cand, pc.take(text, pa.array(cand)).to_pylist()):
            bad = find_malformed_sids(s)
            if bad:
                tally.n_sids[i] += len(bad)
                tally.n_bad[i] += len(bad)
                tally.issues[i].append(f"malformed SID: {_names([repr(b) for b in bad], self.params.max_named)}")

    def _report_unknown(self, occ: list[_Occ], versions: np.ndarray, tally: _Tally) -> None:
        """Well-formed-looking SIDs not in the catalog: malformed when they do not parse, else hallucinated."""
        k = self.params.max_named
        for row, total, _, unknown_n, unknown in occ:
            tally.n_sids[row] += total
            if not unknown_n:
                continue
            tally.n_bad[row] += unknown_n
            # SID_RE accepts any level letters; a skipped or repeated level does not parse → malformed
            valid = [is_valid_sid(u) for u in unknown]
            bad = [u for u, ok in zip(unknown, valid) if not ok]
            unknown = [u for u, ok in zip(unknown, valid) if ok]
            if bad:
                tally.issues[row].append(f"malformed SID: {_names([repr(b) for b in bad], k)}")
            if unknown:
                tally.issues[row].append(f"hallucinated SID: {_names(unknown, k)} not in SID version "
                                         f"{versions[row]} ({unknown_n - len(bad)} of {total} SIDs unknown)")

    def _report_titles(self, mentions: list[_Mention], other_titles: frozenset[str], tally: _Tally) -> None:
        """A title written next to a SID that is not the SID's own title (and, by default, is another item's)."""
        p: SidGroundingParams = self.params
        seen = set()
        for row, sid, mention, own in mentions:
            if not mention or (row, sid, mention) in seen:
                continue
            seen.add((row, sid, mention))
            m_n, o_n = normalize_title(mention), normalize_title(own)
            if not m_n:
                continue
            same = (m_n == o_n or (o_n and (m_n in o_n or o_n in m_n)) or
                    difflib.SequenceMatcher(None, m_n, o_n).ratio() >= p.title_similarity)
            if same or (p.title_mismatch == "other_title" and m_n not in other_titles):
                continue
            full = SID_BEGIN + sid + SID_END
            tally.issues[row].append(f"title mismatch: {full} is {own!r} but the text calls it {mention!r}")
            tally.n_bad[row] += 1

    def _check_prefixes(self, table: pa.Table, text: pa.ChunkedArray, versions: np.ndarray, ctx: FilterContext,
                        tally: _Tally) -> pa.ChunkedArray:
        """For rows of `prefix_tasks`: check each open SID prefix against the catalog's SID prefixes and blank
        it out of the text the rest of the filter reads (so it is not reported as malformed)."""
        p: SidGroundingParams = self.params
        rows = np.flatnonzero(rows_where(table, "task", p.prefix_tasks))
        if not len(rows):
            return text
        known = ctx.sid_prefixes(np.unique(versions))
        values = text.to_pylist()
        for i in rows:
            s = values[i] or ""
            for m in OPEN_PREFIX_RE.finditer(s):
                tally.n_sids[i] += 1
                if (int(versions[i]), m.group(1)) not in known:
                    tally.n_bad[i] += 1
                    tally.issues[i].append(f"unknown SID prefix: {m.group(0)!r} starts no SID in version "
                                           f"{versions[i]}")
            values[i] = OPEN_PREFIX_RE.sub(" ", s)
        return pa.chunked_array([pa.array(values, pa.string())])


def _find_sids(con: duckdb.DuckDBPyConnection, text: pa.ChunkedArray, versions: np.ndarray, cat: pa.Table,
               check_titles: bool) -> tuple[dict[str, np.ndarray], list[_Occ], list[_Mention]]:
    """One DuckDB pass over the texts: per row the raw counts of begin tags and code tokens; per row with SIDs
    their number, code count and the unknown ones; and the title mentions next to known SIDs."""
    n = len(versions)
    t = pa.table({"_row": pa.array(np.arange(n)), "v": pa.array(versions), "text": text})
    con.register("t", t)
    con.register("cat", cat)
    # per row: SIDs by the regex (its capture-free SQL form: the same matches, found about twice as fast),
    # and raw counts of begin tags and code tokens; a row whose counts
    # exceed what its well-formed SIDs account for holds a malformed fragment (named in Python)
    counts = con.sql(f"""
        SELECT {count_sql("text", SID_BEGIN)} AS n_begin, {count_sql("text", CODE_TOKEN_PREFIX)} AS n_code
        FROM t ORDER BY _row""").fetchnumpy()
    occ = con.execute(f"""
        WITH occ AS (SELECT _row, v, unnest(regexp_extract_all(text, '{SID_SQL_PATTERN}')) AS sid FROM t)
        SELECT _row, count(*) AS n_sids,
               sum({count_sql('occ.sid', CODE_TOKEN_PREFIX)}) AS n_codes,
               count(*) FILTER (WHERE c.item_id IS NULL) AS n_unknown,
               list(DISTINCT occ.sid ORDER BY occ.sid) FILTER (WHERE c.item_id IS NULL) AS unknown
        FROM occ LEFT JOIN cat c ON c.sid_version = occ.v AND c.sid = occ.sid
        GROUP BY _row ORDER BY _row""").fetchall()
    mentions = []
    if check_titles:
        mentions = con.execute(f"""
            WITH m AS (
                SELECT _row, v, unnest(regexp_extract_all(text, '{_AFTER}', 1)) AS sid,
                       unnest(regexp_extract_all(text, '{_AFTER}', 2)) AS a,
                       unnest(regexp_extract_all(text, '{_AFTER}', 3)) AS b,
                       unnest(regexp_extract_all(text, '{_AFTER}', 4)) AS c,
                       unnest(regexp_extract_all(text, '{_AFTER}', 5)) AS d FROM t
                UNION ALL
                SELECT _row, v, unnest(regexp_extract_all(text, '{_BEFORE}', 2)) AS sid,
                       unnest(regexp_extract_all(text, '{_BEFORE}', 1)) AS a, NULL, NULL, NULL FROM t)
            SELECT m._row, m.sid, coalesce(nullif(a, ''), nullif(b, ''), nullif(c, ''), nullif(d, '')) AS mention,
                   cat.title
            FROM m JOIN cat ON cat.sid_version = m.v AND cat.sid = {sid_from_codes_sql('m.sid')}
            ORDER BY m._row""").fetchall()
    return counts, occ, mentions
