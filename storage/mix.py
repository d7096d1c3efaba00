"""`recot datasets mix`: a weighted union of dataset versions, written as a new version with every parent in
its lineage — the way reference recipes mix alignment + CoT + general text into one SFT corpus.

Parts are `REF:RATIO` (a number with a `.`: shares, normalised to sum to 1) or `REF:COUNT` (an integer: that
many rows), or bare `REF` (every row); one kind per mix. With ratios and no `total`, the mix is as large as the
ratios allow (the part that runs out first sets the size). Rows are chosen by a seeded hash of `sample_id`, so
the same call gives the same mix; the output is interleaved by the same hash.

Duplicates by `sample_id` are removed: within a part, and across parts a sample counts for the FIRST part that
lists it (later parts never see it, so their counts are still met from their own other rows). Curated parts
contribute kept rows only (`kept_only`), so a trainer's `keep` filter does not shrink the mix after the
fact; the `mix_source` column records each row's parent version.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from storage.datasets import DatasetVersion, resolve, write_version
from storage.errors import ConfigError, InputError
from storage.workspace import Workspace

_PART_RE = re.compile(r"^(?P<ref>[^:]+?)(?::(?P<value>[0-9]*\.?[0-9]+%?))?$")


@dataclass(frozen=True)
class MixPart:
    """One parent of a mix: a dataset ref with a ratio, a row count, or neither (every row)."""

    ref: str
    ratio: float | None = None
    count: int | None = None


def parse_parts(specs: list[str]) -> list[MixPart]:
    """`['a:0.5', 'b:0.5']` → ratios, `['a:100', 'b:50']` → counts, `['a', 'b']` → every row of each."""
    if not specs:
        raise ConfigError("a mix needs at least one part: REF:RATIO (e.g. cot-curated:0.5) or REF:COUNT")
    parts = []
    for spec in specs:
        m = _PART_RE.match(spec.strip())
        if not m:
            raise ConfigError(f"bad mix part {spec!r}: expected REF, REF:RATIO (0.5, 25%) or REF:COUNT (100)")
        ref, value = m.group("ref"), m.group("value")
        if value is None:
            parts.append(MixPart(ref))
        elif value.endswith("%"):
            parts.append(MixPart(ref, ratio=float(value[:-1]) / 100))
        elif "." in value:
            parts.append(MixPart(ref, ratio=float(value)))
        else:
            parts.append(MixPart(ref, count=int(value)))
    kinds = {("ratio" if p.ratio is not None else "count" if p.count is not None else "all") for p in parts}
    if len(kinds) > 1:
        raise ConfigError(f"mix parts {specs} combine ratios, counts and bare refs; use one kind for every part")
    if any(p.ratio is not None and p.ratio <= 0 for p in parts) or any(p.count == 0 for p in parts):
        raise ConfigError(f"mix parts {specs}: every ratio and count must be > 0")
    return parts


def plan_counts(parts: list[MixPart], available: list[int], total: int | None = None) -> list[int]:
    """Rows to take from each part. Ratios: `total` split by the normalised ratios (largest remainders), or —
    without `total` — the largest total every part can supply. Raises when a part has too few rows."""
    if all(p.ratio is None and p.count is None for p in parts):
        if total is not None:
            raise ConfigError("--total needs ratios (REF:0.5 …); bare refs take every row")
        return list(available)
    if parts[0].count is not None:
        if total is not None:
            raise ConfigError("--total needs ratios (REF:0.5 …); with counts the total is their sum")
        want = [int(p.count or 0) for p in parts]
    else:
        weights = [float(p.ratio or 0.0) for p in parts]
        s = sum(weights)
        shares = [w / s for w in weights]
        if total is None:
            total = int(math.floor(min(a / sh for a, sh in zip(available, shares)) + 1e-9))
        raw = [sh * total for sh in shares]
        want = [int(math.floor(r)) for r in raw]
        for i in sorted(range(len(raw)), key=lambda i: -(raw[i] - want[i]))[:total - sum(want)]:
            want[i] += 1
    short = [(p.ref, w, a) for p, w, a in zip(parts, want, available) if w > a]
    if short:
        ref, w, a = short[0]
        raise InputError(f"the mix needs {w:,} rows from {ref} but it has {a:,} usable (kept, not already in an "
                         "earlier part); lower that count, or the total")
    return want


@dataclass
class MixResult:
    version: DatasetVersion
    taken: dict[str, int]          # parent ref → rows in the mix
    available: dict[str, int]      # parent ref → usable rows it had


def _cols(dv: DatasetVersion) -> set[str]:
    return {f["name"] for f in dv.manifest.get("schema", [])}


def mix_versions(ws: Workspace, parts: list[MixPart], name: str, *, total: int | None = None,
                 seed: int = 0, kept_only: bool = True) -> MixResult:
    """Write the mix of `parts` (see `parse_parts`) as a new version of dataset `name` (module docstring)."""
    mparts = list(parts)
    if not mparts:
        raise ConfigError("a mix needs at least one part")
    versions = [resolve(ws, p.ref) for p in mparts]
    if len({dv.ref for dv in versions}) < len(versions):
        raise ConfigError(f"mix parts {[p.ref for p in mparts]} name the same dataset version twice")
    for dv in versions:
        if "sample_id" not in _cols(dv):
            raise InputError("a mix needs a `sample_id` column in every part (sample or curated versions)",
                             file=dv.ref)
    order = f"hash(sample_id || '{int(seed)}')"
    con = duckdb.connect()
    try:
        for i, dv in enumerate(versions):
            cols = _cols(dv)
            conds = ["sample_id IS NOT NULL"]
            if kept_only and "keep" in cols:
                conds.append("coalesce(keep, TRUE)")
            if kept_only and "error" in cols:
                conds.append("error IS NULL")
            exclude = [c for c in ("mix_source",) if c in cols]
            star = f"* EXCLUDE ({', '.join(exclude)})" if exclude else "*"
            earlier = " ".join(f"AND sample_id NOT IN (SELECT sample_id FROM p{j})" for j in range(i))
            con.execute(f"""CREATE TEMP TABLE p{i} AS
                SELECT {star}, ? AS mix_source FROM {dv.sql} WHERE {' AND '.join(conds)} {earlier}
                QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY {order}) = 1""", [dv.ref])
        available = [int(con.execute(f"SELECT count(*) FROM p{i}").fetchall()[0][0]) for i in range(len(versions))]
        want = plan_counts(mparts, available, total)
        selects = [f"(SELECT * FROM p{i} ORDER BY {order}, sample_id LIMIT {int(n)})" for i, n in enumerate(want)]
        sql = f"SELECT * FROM ({' UNION ALL BY NAME '.join(selects)}) ORDER BY {order}, sample_id"
        if any("keep" in _cols(dv) for dv in versions):
            sql = f"SELECT * REPLACE (coalesce(keep, TRUE) AS keep) FROM ({sql})"
        res = con.sql(sql).to_arrow_table()
        result = res if isinstance(res, pa.Table) else res.read_all()
    finally:
        con.close()
    if result.num_rows == 0:
        raise InputError(f"the mix of {[dv.ref for dv in versions]} has no rows")
    result = _unify_schema(result, versions)
    config: dict[str, Any] = {
        "parts": [{"ref": dv.ref, "ratio": p.ratio, "count": p.count, "available": a, "taken": n}
                  for p, dv, a, n in zip(mparts, versions, available, want)],
        "total": total, "seed": seed, "kept_only": kept_only}
    out = write_version(ws, name, result, step="mix", config=config,
                        parents=[(dv.name, dv.version) for dv in versions])
    return MixResult(out, {dv.ref: n for dv, n in zip(versions, want)},
                     {dv.ref: a for dv, a in zip(versions, available)})


def _unify_schema(table: pa.Table, versions: list[DatasetVersion]) -> pa.Table:
    """Columns in the first parent's order (then the others'), so a mix of one kind looks like its parents."""
    order: list[str] = []
    for dv in versions:
        for f in dv.manifest.get("schema", []):
            if f["name"] in table.column_names and f["name"] not in order:
                order.append(f["name"])
    order += [c for c in table.column_names if c not in order]
    return table.select(order)
