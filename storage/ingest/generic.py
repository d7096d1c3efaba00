"""Generic CSV / Parquet / JSONL files with a column mapping.

    recot ingest generic --items items.csv --interactions ratings.jsonl --map user=uid,item=iid,ts=time,title=name

Canonical fields and their default column names: user=user_id, item=item_id, ts=timestamp, rating=rating
(optional), title=title, description=description, categories=categories (a list, or a string split on
`--categories-sep`). Every other column of the items file (and of an optional users file) is kept in the
`attributes` JSON. `ts` may be epoch seconds, epoch milliseconds or an ISO-8601 string.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from storage.errors import ConfigError, InputError
from storage.ingest.catalog import IngestOptions, IngestReport, IngestSession, Rejects, rows_to_table
from storage.ingest.readers import check_columns, csv_batches, csv_header, json_records, parquet_batches, scalar_str
from storage.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_MAP = {"user": "user_id", "item": "item_id", "ts": "timestamp", "rating": "rating", "title": "title",
               "description": "description", "categories": "categories"}
REQUIRED = {"items": ["item"], "interactions": ["user", "item", "ts"], "users": ["user"]}
OPTIONAL = {"items": ["title", "description", "categories"], "interactions": ["rating"], "users": []}


def parse_mapping(spec: str | None) -> dict[str, str]:
    """'user=uid,item=iid,ts=time' → full mapping over the defaults. Unknown keys are a ConfigError."""
    mapping = dict(DEFAULT_MAP)
    explicit: set[str] = set()
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"bad --map entry {part!r}: expected FIELD=COLUMN, e.g. user=uid")
        k, v = (x.strip() for x in part.split("=", 1))
        if k not in DEFAULT_MAP:
            raise ConfigError(f"bad --map field {k!r}: known fields are {', '.join(DEFAULT_MAP)}")
        if not v:
            raise ConfigError(f"bad --map entry {part!r}: empty column name")
        mapping[k] = v
        explicit.add(k)
    mapping["_explicit"] = ",".join(sorted(explicit))
    return mapping


def file_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".csv", ".tsv", ".txt")):
        return "tsv" if name.endswith(".tsv") else "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise InputError("unknown file format: use .csv/.tsv, .parquet or .jsonl/.json (optionally .gz)", file=str(path))


def _columns_of(path: Path, fmt: str) -> list[str] | None:
    if fmt in ("csv", "tsv"):
        return csv_header(path, "\t" if fmt == "tsv" else ",")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"not a Parquet file: {e}", file=str(path)) from None
    return None  # JSONL: checked per line


def _wanted(kind: str, mapping: dict[str, str], found: list[str] | None, path: Path) -> dict[str, str]:
    """canonical → source column for this file; required ones must exist, optional ones only if present
    (or an InputError when the user mapped them explicitly and they are missing)."""
    explicit = set(filter(None, mapping.get("_explicit", "").split(",")))
    want = {k: mapping[k] for k in REQUIRED[kind]}
    if found is not None:
        check_columns(path, found, list(want.values()))
        for k in OPTIONAL[kind]:
            if mapping[k] in found:
                want[k] = mapping[k]
            elif k in explicit:
                check_columns(path, found, [mapping[k]])
    else:
        for k in OPTIONAL[kind]:
            want[k] = mapping[k]
    return want


class _Shaper:
    """Renames mapped columns to canonical names and packs the remaining columns into `attributes` JSON,
    with one SQL statement per batch."""

    def __init__(self) -> None:
        self.con = duckdb.connect()

    def close(self) -> None:
        self.con.close()

    def shape(self, t: pa.Table, want: dict[str, str], *, attributes: bool, cat_sep: str) -> pa.Table:
        self.con.register("b", t)
        sel = []
        for k, col in want.items():
            q = f'"{col}"'
            if k == "categories":
                typ = t.schema.field(col).type
                if pa.types.is_list(typ) or pa.types.is_large_list(typ):
                    sel.append(f"CAST({q} AS VARCHAR[]) AS categories")
                else:
                    sel.append(f"list_filter(list_transform(string_split(CAST({q} AS VARCHAR), '{cat_sep}'), "
                               f"lambda x: trim(x)), lambda x: x <> '') AS categories")
            else:
                sel.append(f'{q} AS "{k}"')
        rest = [c for c in t.column_names if c not in want.values() and not c.startswith("_")]
        if attributes:
            if rest:
                pairs = ", ".join(f"'{c}', \"{c}\"" for c in rest)
                sel.append(f"CAST(json_object({pairs}) AS VARCHAR) AS attributes")
            else:
                sel.append("CAST(NULL AS VARCHAR) AS attributes")
        sel += ["_file", "_line"]
        out = self.con.sql(f"SELECT {', '.join(sel)} FROM b").to_arrow_table()
        self.con.unregister("b")
        return out if isinstance(out, pa.Table) else out.read_all()


def _batches(path: Path, kind: str, mapping: dict[str, str], rejects: Rejects, opts: IngestOptions,
             cat_sep: str, shaper: _Shaper) -> Iterator[pa.Table]:
    """Raw canonical batches of one file, whatever its format."""
    fmt = file_format(path)
    found = _columns_of(path, fmt)
    want = _wanted(kind, mapping, found, path)
    attributes = kind in ("items", "users")
    if found is not None:  # CSV, TSV, Parquet: columnar batches
        cols = found if attributes else list(want.values())
        it = (csv_batches(path, cols, rejects=rejects, progress=opts.progress, batch_rows=opts.batch_rows,
                          delimiter="\t" if fmt == "tsv" else ",") if fmt != "parquet"
              else parquet_batches(path, cols, batch_rows=opts.batch_rows, progress=opts.progress))
        for t in it:
            yield shaper.shape(t, want, attributes=attributes, cat_sep=cat_sep)
        return
    # JSONL: one dict per line; required fields checked per line (the first line names expected vs found)
    rows: list[dict[str, Any]] = []
    req = [want[k] for k in REQUIRED[kind]]
    accepted = 0
    for line, obj, raw in json_records(path, rejects=rejects, progress=opts.progress):
        missing = [c for c in req if c not in obj]
        if missing:
            msg = (f"missing field(s) {', '.join(repr(c) for c in missing)}; expected {', '.join(req)}; "
                   f"found {', '.join(obj) or 'none'}")
            if accepted == 0:  # nothing matched yet: the mapping is wrong, not one row
                raise InputError(msg, file=str(path), line=line, field=missing[0])
            rejects.reject(msg, file=str(path), line=line, field=missing[0], raw=raw)
            continue
        row: dict[str, Any] = {"_file": str(path), "_line": line, "_raw": raw}
        for k, col in want.items():
            v = obj.get(col)
            if k == "categories":
                row[k] = ([str(x) for x in v if x is not None] if isinstance(v, list)
                          else [x.strip() for x in str(v).split(cat_sep) if x.strip()] if v is not None else [])
            elif k in ("title", "description"):
                row[k] = v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            else:
                row[k] = scalar_str(v)
        if attributes:
            row["attributes"] = json.dumps({c: v for c, v in obj.items() if c not in want.values()},
                                           ensure_ascii=False, default=str)
        rows.append(row)
        accepted += 1
        if len(rows) >= opts.batch_rows:
            yield rows_to_table(rows, list(rows[0]))
            rows = []
    if rows:
        yield rows_to_table(rows, list(rows[0]))


def ingest_generic(ws: Workspace, *, items: str | Path, interactions: str | Path, users: str | Path | None = None,
                   mapping: dict[str, str] | str | None = None, opts: IngestOptions | None = None,
                   categories_sep: str = "|") -> IngestReport:
    """Ingest an items file + an interactions file (+ optional users file), each CSV/TSV, Parquet or JSONL."""
    opts = opts or IngestOptions()
    mapping = parse_mapping(mapping) if isinstance(mapping, str) or mapping is None else \
        {**DEFAULT_MAP, **mapping, "_explicit": ",".join(mapping)}
    if "'" in categories_sep:
        raise ConfigError("categories separator may not contain a quote")
    paths = {"items": Path(items), "interactions": Path(interactions)}
    if users:
        paths["users"] = Path(users)
    for kind, p in paths.items():  # before any reader opens it: a missing file is bad input, not a traceback
        if not p.exists():
            raise InputError("file not found", file=str(p), field=f"--{kind}")
    names = {k: v for k, v in mapping.items() if not k.startswith("_")}
    cfg = {"mapping": names, "categories_sep": categories_sep}
    with IngestSession(ws, "generic", opts, files=list(paths.values()), names=names, spill=True, config=cfg) as s:
        shaper = _Shaper()
        try:
            for t in _batches(paths["items"], "items", mapping, s.rejects, opts, categories_sep, shaper):
                s.add_items(t)
            if "users" in paths:
                for t in _batches(paths["users"], "users", mapping, s.rejects, opts, categories_sep, shaper):
                    s.add_users(t)
            for t in _batches(paths["interactions"], "interactions", mapping, s.rejects, opts, categories_sep,
                              shaper):
                s.add_interactions(t)
        finally:
            shaper.close()
    return s.result
