"""Which rows of a dataset version a consumer reads, as one SQL condition: the exports (`storage.export`,
`storage.export_formats`) and the trainers' loaders (`trainers.export`) all build their WHERE here, so "kept",
"without errors" and "in these domains" mean the same thing everywhere.

- kept: curated versions (a `keep` column) give only rows with `keep` true; a NULL `keep` is not kept.
- without errors: rows whose `error` is set (a failed teacher request, an unparsable answer) are left out.
- domains: `coalesce(domain, 'default')` in the list (rows written before domains existed are 'default'); a
  version without a `domain` column cannot be selected by domain (an error, not an empty result).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.datasets import DatasetVersion
from storage.errors import InputError


def version_columns(dv: DatasetVersion) -> set[str]:
    """The column names of a version (from its manifest's schema)."""
    return {str(f["name"]) for f in dv.manifest.get("schema", [])}


def domain_condition(domains: Sequence[str], column: str = "domain") -> tuple[str, list[Any]]:
    """`coalesce(<column>, 'default') IN (?, …)` and its parameters."""
    return f"coalesce({column}, 'default') IN ({', '.join('?' * len(domains))})", list(domains)


def row_condition(dv: DatasetVersion, *, kept_only: bool, without_errors: bool = True,
                  domains: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """(SQL condition, parameters) selecting the rows of `dv` as the module docstring says; conditions on
    columns the version does not have are dropped (a raw synth version has no `keep`)."""
    cols = version_columns(dv)
    conds, params = ["TRUE"], []
    if without_errors and "error" in cols:
        conds.append("error IS NULL")
    if kept_only and "keep" in cols:
        conds.append("keep")
    if domains:
        if "domain" not in cols:
            raise InputError(f"no `domain` column to select domains {list(domains)} from", file=dv.ref)
        cond, ps = domain_condition(domains)
        conds.append(cond)
        params += ps
    return " AND ".join(conds), params
