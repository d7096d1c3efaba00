"""The SID catalog as Arrow tables for DuckDB joins (cached per chain run by `FilterContext.sid_table` and
friends), the SID version each sample is checked against, and title normalization."""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import NotFound
from storage.sid import CODE_TOKEN_RE, SID_BEGIN, SID_END
from storage.sid_catalog import SidCatalog

if TYPE_CHECKING:
    from curation.base import FilterContext


def sample_sid_versions(table: pa.Table, ctx: FilterContext) -> np.ndarray:
    """The SID version each row is checked against: the chain's `sid_version` if set, else the sample's own,
    else the workspace's latest."""
    n = table.num_rows
    if ctx.sid_version is not None:
        return np.full(n, int(ctx.sid_version), dtype=np.int64)
    latest = ctx.latest_sid_version()
    col = table.column("sid_version")
    if latest is None and col.null_count:
        raise NotFound("some samples have no sid_version and the workspace has no SID version; "
                       "run `recot sids build` or set `sid_version:` in the chain")
    filled = pc.fill_null(col, latest if latest is not None else 0)
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.int64)


def sid_table(catalogs: list[SidCatalog]) -> pa.Table:
    """Rows (sid_version, sid, item_id, title) of the given SID versions (`FilterContext.sid_table` caches it)."""
    parts = []
    for cat in catalogs:
        items = list(cat.item_to_sid)
        parts.append(pa.table({
            "sid_version": pa.array([cat.version] * len(items), pa.int64()),
            "sid": pa.array([cat.item_to_sid[i] for i in items], pa.string()),
            "item_id": pa.array(items, pa.string()),
            "title": pa.array([cat.titles.get(i) for i in items], pa.string()),
        }))
    return pa.concat_tables(parts) if parts else pa.table(
        {"sid_version": pa.array([], pa.int64()), "sid": pa.array([], pa.string()),
         "item_id": pa.array([], pa.string()), "title": pa.array([], pa.string())})


def sid_prefix_set(table: pa.Table) -> frozenset[tuple[int, str]]:
    """(sid_version, code tokens) of every prefix (1 code up to the whole SID) of the SIDs in a `sid_table`:
    what an open prefix such as `<|sid_begin|><s_a_12>` in token alignment is checked against."""
    known: set[tuple[int, str]] = set()
    for v, sid in zip(table.column("sid_version").to_pylist(), table.column("sid").to_pylist()):
        body = sid[len(SID_BEGIN):-len(SID_END)]
        toks = [m.group(0) for m in CODE_TOKEN_RE.finditer(body)]
        for k in range(1, len(toks) + 1):
            known.add((int(v), "".join(toks[:k])))
    return frozenset(known)


_YEAR_RE = re.compile(r"\(\s*\d{4}\s*\)")
_ARTICLE_RE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|il|das|der|die|el)$")
_NONWORD_RE = re.compile(r"[^\w\s]")
_WS_RE = re.compile(r"\s+")


def normalize_title(title: str | None) -> str:
    """'Usual Suspects, The (1995)' → 'the usual suspects': case, accents, year, trailing article and
    punctuation do not decide whether a title matches."""
    if not title:
        return ""
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower().strip()
    t = _YEAR_RE.sub(" ", t).strip()
    m = _ARTICLE_RE.match(t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    t = _NONWORD_RE.sub(" ", t)
    return _WS_RE.sub(" ", t).strip()
