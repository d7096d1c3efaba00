"""The SID catalog as an Arrow table for DuckDB joins, loaded once per chain run (through SidCatalog)."""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.base import FilterContext
from storage.errors import NotFound
from storage.sid_catalog import SidCatalog, latest_sid_version


def sample_sid_versions(table: pa.Table, ctx: FilterContext) -> np.ndarray:
    """The SID version each row is checked against: the chain's `sid_version` if set, else the sample's own,
    else the workspace's latest."""
    n = table.num_rows
    if ctx.sid_version is not None:
        return np.full(n, int(ctx.sid_version), dtype=np.int64)
    latest = ctx.cache.get("latest_sid_version")
    if "latest_sid_version" not in ctx.cache:
        latest = ctx.cache["latest_sid_version"] = latest_sid_version(ctx.ws) if ctx.ws is not None else None
    col = table.column("sid_version")
    if latest is None and col.null_count:
        raise NotFound("some samples have no sid_version and the workspace has no SID version; "
                       "run `recot sids build` or set `sid_version:` in the chain")
    return pc.fill_null(col, latest if latest is not None else 0).to_numpy(zero_copy_only=False).astype(np.int64)


def load_catalog(ctx: FilterContext, version: int) -> SidCatalog:
    key = f"sid_catalog:{version}"
    if key not in ctx.cache:
        if ctx.ws is None:
            raise NotFound("SID checks need a workspace with a SID version")
        ctx.cache[key] = SidCatalog.load(ctx.ws, int(version))
    return ctx.cache[key]


def catalog_table(ctx: FilterContext, versions) -> pa.Table:
    """Rows (sid_version, sid, item_id, title) for the given SID versions."""
    key = "sid_table:" + ",".join(str(v) for v in sorted(set(int(v) for v in versions)))
    if key not in ctx.cache:
        parts = []
        for v in sorted(set(int(v) for v in versions)):
            cat = load_catalog(ctx, v)
            items = list(cat.item_to_sid)
            parts.append(pa.table({
                "sid_version": pa.array([v] * len(items), pa.int64()),
                "sid": pa.array([cat.item_to_sid[i] for i in items], pa.string()),
                "item_id": pa.array(items, pa.string()),
                "title": pa.array([cat.titles.get(i) for i in items], pa.string()),
            }))
        ctx.cache[key] = pa.concat_tables(parts) if parts else pa.table(
            {"sid_version": pa.array([], pa.int64()), "sid": pa.array([], pa.string()),
             "item_id": pa.array([], pa.string()), "title": pa.array([], pa.string())})
    return ctx.cache[key]


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
