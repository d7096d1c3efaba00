"""Hint leakage: in hint mode the teacher saw the target and must reason *toward* it without naming it, so
the target SID or the target title inside the reasoning is a leak (the student would learn to copy, not to
reason). One DuckDB query: a case-insensitive substring test for SIDs, a whole-word test on
punctuation-normalized text for titles (with and without the year, 'Usual Suspects, The' → 'The Usual
Suspects')."""
from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from curation.base import Filter, FilterContext, FilterParams, Verdicts, register, rows_where
from curation.catalog import normalize_title


class LeakageParams(FilterParams):
    modes: list[str] = ["hint"]
    check_sids: bool = True
    check_titles: bool = True
    min_title_chars: int = 4
    """Shorter normalized titles are not checked (a film called 'Heat' would match ordinary words)."""


@register
class LeakageFilter(Filter[LeakageParams], type_name="hint_leakage", review_label="leaked_target"):
    def applies_to(self, table: pa.Table) -> np.ndarray:
        return rows_where(table, "mode", self.params.modes)

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        n = table.num_rows
        needles = self._needles(table, ctx)
        if not needles:
            return Verdicts.all_kept(n)
        nd = pa.table({"_row": pa.array([x[0] for x in needles], pa.int64()),
                       "kind": [x[1] for x in needles], "needle": [x[2] for x in needles],
                       "shown": [x[3] for x in needles]})
        rt = pa.table({"_row": pa.array(np.arange(n), pa.int64()), "reasoning": table.column("reasoning"),
                       "comp": table.column("_completion")})
        con = duckdb.connect()
        try:
            con.register("nd", nd)
            con.register("rt", rt)
            hits = con.execute(r"""
                WITH r AS (
                    SELECT _row, lower(coalesce(reasoning, regexp_extract(comp, '<think>([\s\S]*?)</think>', 1), ''))
                           AS txt FROM rt),
                     rn AS (SELECT _row, txt, ' ' || trim(regexp_replace(txt, '[^a-z0-9]+', ' ', 'g')) || ' ' AS norm
                            FROM r)
                SELECT nd._row, nd.kind, min(nd.shown)
                FROM nd JOIN rn USING (_row)
                WHERE (nd.kind = 'sid' AND contains(rn.txt, nd.needle))
                   OR (nd.kind = 'title' AND contains(rn.norm, ' ' || nd.needle || ' '))
                GROUP BY ALL ORDER BY 1, 2""").fetchall()
        finally:
            con.close()
        reasons: list[str | None] = [None] * n
        for row, kind, shown in hits:
            msg = f"target {'SID' if kind == 'sid' else 'title'} {shown!r} appears in the reasoning"
            reasons[row] = f"hint leakage: {msg}" if reasons[row] is None else reasons[row] + f"; {msg}"
        return Verdicts.from_reasons(reasons)

    def _needles(self, table: pa.Table, ctx: FilterContext) -> list[tuple[int, str, str, str]]:
        """(row, kind, needle, shown): the target SIDs and the target titles (two normalizations) per row."""
        p: LeakageParams = self.params
        needles: list[tuple[int, str, str, str]] = []
        tids = table.column("target_item_ids").to_pylist()
        tsids = table.column("target_sids").to_pylist()
        titles = ctx.item_titles(i for ids in tids if ids for i in ids) if p.check_titles else {}
        for r in range(table.num_rows):
            if p.check_sids:
                for s in tsids[r] or []:
                    needles.append((r, "sid", s.lower(), s))
            if p.check_titles:
                for it in tids[r] or []:
                    title = titles.get(it)
                    if not title:
                        continue
                    for variant in {normalize_title(title), _plain(title)}:
                        if len(variant) >= p.min_title_chars:
                            needles.append((r, "title", variant, title))
        return needles


def _plain(title: str) -> str:
    """Normalized title keeping the year digits (e.g. 'toy story 1995')."""
    import re

    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()
