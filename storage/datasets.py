"""Immutable, versioned Parquet datasets with lineage.

Layout: `<workspace>/datasets/<name>/v<N>/part-00000.parquet …` plus `manifest.json` (rows, schema,
content hash, parents, the step and config that made it, run id, created time). Nothing is ever overwritten.

Commit point: a version exists when its `dataset_versions` row is committed. It is written into a temp folder,
and ONE catalog transaction inserts its row (and the rows that belong to it, `on_commit`), renames the folder to
`v<N>` and fsyncs — before COMMIT. Killed before the COMMIT, the folder has no row: it is not a version, and the
next writer (`clean_unfinished`, under the writer lock) removes it along with any `.tmp-*` leftover. A row
never points at a missing folder. `recot workspace check` reconciles the catalog with the manifests on disk.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_write_text
from storage.errors import ConfigError, NotFound
from storage.redact import redact
from storage.workspace import Workspace, sql_string

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
ROWS_PER_PART = 250_000


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    path: Path
    rows: int
    content_hash: str
    created_at: str
    step: str
    run_id: str | None
    parents: list[dict[str, Any]]
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def glob(self) -> str:
        """The part files' glob (a path: pass it to DuckDB as a parameter, `read_parquet(?)`, or use `sql`)."""
        return str(self.path / "part-*.parquet")

    @property
    def sql(self) -> str:
        """`read_parquet('<glob>')` with the path quoted as a SQL literal, to embed in a query (safe for a
        workspace path containing `'`)."""
        return f"read_parquet({sql_string(self.glob)})"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' → (name, None = latest); 'name@v3' or 'name@3' → (name, 3)."""
    if "@" in ref:
        name, v = ref.split("@", 1)
        v = v[1:] if v.lower().startswith("v") else v
        if not v.isdigit():
            raise ConfigError(f"bad dataset reference {ref!r}: expected NAME or NAME@vN")
        return name, int(v)
    return ref, None


def write_version(ws: Workspace, name: str, data: pa.Table | Iterable[pa.RecordBatch], *, step: str,
                  config: dict[str, Any] | None = None, parents: list[tuple[str, int]] | None = None,
                  run_id: str | None = None, schema: pa.Schema | None = None,
                  extra_manifest: dict[str, Any] | None = None,
                  on_commit: Callable[[Any, str, int], None] | None = None) -> DatasetVersion:
    """Write a new immutable version of dataset `name` and return it. Atomic: on any failure nothing is left
    behind (the temp folder is removed) and the catalog is unchanged.

    `on_commit(con, name, version)` runs inside the same catalog transaction that registers the version, so
    rows that belong to it (e.g. curation verdicts) land together with it or not at all."""
    check_name(name)
    base = ws.datasets_dir / name
    with ws.writer(step):
        # under the writer lock no other write is in flight: any temp folder or version folder without a
        # committed catalog row is what a killed writer left behind
        clean_unfinished(ws)
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        final: Path | None = None
        try:
            rows, hasher, out_schema = 0, hashlib.sha256(), schema
            batches = data.to_batches(max_chunksize=ROWS_PER_PART) if isinstance(data, pa.Table) else data
            if isinstance(data, pa.Table):
                out_schema = out_schema or data.schema
            part, writer, part_rows = 0, None, 0
            for batch in batches:
                if out_schema is None:
                    out_schema = batch.schema
                if batch.num_rows == 0:
                    continue
                if writer is None or part_rows >= ROWS_PER_PART:
                    if writer is not None:
                        writer.close()
                        part += 1
                    writer = pq.ParquetWriter(tmp / f"part-{part:05d}.parquet", out_schema, compression="zstd")
                    part_rows = 0
                writer.write_batch(batch.cast(out_schema) if batch.schema != out_schema else batch)
                part_rows += batch.num_rows
                rows += batch.num_rows
            if writer is not None:
                writer.close()
            else:  # empty dataset: still one (empty) part so readers see the schema
                pq.write_table((out_schema or pa.schema([])).empty_table(), tmp / "part-00000.parquet")
            for p in sorted(tmp.glob("part-*.parquet")):
                with open(p, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        hasher.update(chunk)
                    os.fsync(fh.fileno())
            created = datetime.now(UTC).isoformat()
            parent_list = [{"name": n, "version": v} for n, v in (parents or [])]
            # The catalog row is the commit point: the folder is renamed into place INSIDE the transaction that
            # inserts the row (and the rows on_commit adds), just before COMMIT. Killed before the COMMIT, the
            # folder has no committed row and the next writer removes it; the row never points at nothing.
            with ws.transaction(step) as con:
                version = _next_version(con, name)
                manifest = {
                    "name": name, "version": version, "rows": rows,
                    "schema": [{"name": f.name, "type": str(f.type)} for f in (out_schema or pa.schema([]))],
                    "content_hash": "sha256:" + hasher.hexdigest(), "parents": parent_list, "step": step,
                    "config": redact(config or {}), "run_id": run_id, "created_at": created,
                    **redact(extra_manifest or {}),
                }
                atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2, default=str))
                target = base / f"v{version}"
                con.execute(
                    "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, version, str(target.relative_to(ws.root)), rows, manifest["content_hash"],
                     created, step, run_id, json.dumps(parent_list), json.dumps(manifest, default=str)])
                if on_commit is not None:
                    on_commit(con, name, version)
                os.rename(tmp, target)
                final = target
                _fsync_dir(base)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if final is not None:  # renamed, but the COMMIT failed: the folder has no row
                shutil.rmtree(final, ignore_errors=True)
            raise
    return _from_manifest(ws, manifest, final)


def check_name(name: str) -> None:
    """ConfigError (exit 2) unless `name` is a usable dataset name."""
    if not NAME_RE.match(name):
        raise ConfigError(f"bad dataset name {name!r}: use letters, digits, '_', '-', '.' (max 128, "
                          "starting with a letter or digit)")


def _next_version(con: duckdb.DuckDBPyConnection, name: str) -> int:
    latest = con.execute("SELECT max(version) FROM dataset_versions WHERE name = ?", [name]).fetchall()[0][0]
    return int(latest or 0) + 1


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_unfinished(ws: Workspace) -> list[Path]:
    """Remove what killed writers left (see `storage.integrity.unfinished_writes`): `.tmp-*` folders, `v<N>`
    folders without a committed catalog row, `tmp/.tmp-*` ingest files. Call only under the writer lock (then no
    other process is writing; this process' own temp files carry its pid and are kept). Returns what went."""
    from storage.integrity import unfinished_writes

    removed = []
    for path in unfinished_writes(ws, others_only=True):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d leftover(s) of killed writes: %s", len(removed),
                 ", ".join(str(p.relative_to(ws.root)) for p in removed))
    return removed


def _from_manifest(ws: Workspace, m: dict[str, Any], path: Path) -> DatasetVersion:
    return DatasetVersion(name=m["name"], version=int(m["version"]), path=path, rows=int(m["rows"]),
                          content_hash=m["content_hash"], created_at=str(m["created_at"]), step=m["step"],
                          run_id=m.get("run_id"), parents=m.get("parents", []), manifest=m)


def get_version(ws: Workspace, name: str, version: int | None = None) -> DatasetVersion:
    """A version by number, or the latest one when `version` is None."""
    sql = "SELECT manifest, path FROM dataset_versions WHERE name = ?"
    params: list[Any] = [name]
    if version is not None:
        sql += " AND version = ?"
        params.append(version)
    sql += " ORDER BY version DESC LIMIT 1"
    rows = ws.query(sql, params)
    if not rows:
        known = sorted({r[0] for r in ws.query("SELECT DISTINCT name FROM dataset_versions")})
        what = f"{name}@v{version}" if version is not None else name
        raise NotFound(f"dataset {what} not found in {ws.root}; known datasets: {', '.join(known) or 'none'}")
    manifest, path = rows[0]
    return _from_manifest(ws, json.loads(manifest), ws.root / path)


def resolve(ws: Workspace, ref: str) -> DatasetVersion:
    name, v = parse_ref(ref)
    return get_version(ws, name, v)


def read_version(ws: Workspace, name: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
    return read_dv(get_version(ws, name, version), columns)


def read_dv(dv: DatasetVersion, columns: list[str] | None = None) -> pa.Table:
    """All parts of a version as one Arrow table (use DuckDB on `dv.glob` for large versions)."""
    parts = sorted(dv.path.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts]) if len(parts) > 1 \
        else pq.read_table(parts[0], columns=columns)


RUN_COLUMNS = ("run_id", "created_at")


def same_rows(dv: DatasetVersion, table: pa.Table, ignore: tuple[str, ...] = RUN_COLUMNS) -> bool:
    """Whether `table` holds exactly `dv`'s rows (in any order), apart from the `ignore` columns (which run made
    them, and when). A re-run that would write the same rows writes no new version (`synth run` says
    "unchanged: NAME@vN")."""
    import pyarrow.compute as pc

    if dv.rows != table.num_rows:
        return False

    def norm(t: pa.Table) -> pa.Table:
        t = t.drop_columns([c for c in ignore if c in t.column_names])
        t = t.select(sorted(t.column_names)).replace_schema_metadata(None)
        if "sample_id" in t.column_names:
            t = t.take(pc.sort_indices(t, [("sample_id", "ascending")]))
        return t.combine_chunks()

    new, old = norm(table), norm(read_dv(dv))
    if new.column_names != old.column_names:
        return False
    try:
        old = old.cast(new.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False
    return bool(new.equals(old))


def list_versions(ws: Workspace, name: str | None = None) -> list[DatasetVersion]:
    sql = "SELECT manifest, path FROM dataset_versions"
    params: list[Any] = []
    if name:
        sql += " WHERE name = ?"
        params.append(name)
    sql += " ORDER BY name, version"
    return [_from_manifest(ws, json.loads(m), ws.root / p) for m, p in ws.query(sql, params)]


def diff_versions(ws: Workspace, a: DatasetVersion, b: DatasetVersion, key: str = "sample_id") -> dict[str, Any]:
    """Counts of rows only in a, only in b, in both (by `key`), plus kept counts when curated."""
    import duckdb

    con = duckdb.connect()
    try:
        col = '"' + key.replace('"', '""') + '"'
        q = f"""
        WITH a AS (SELECT DISTINCT {col} AS k FROM read_parquet($a)),
             b AS (SELECT DISTINCT {col} AS k FROM read_parquet($b))
        SELECT (SELECT count(*) FROM a WHERE k NOT IN (SELECT k FROM b)),
               (SELECT count(*) FROM b WHERE k NOT IN (SELECT k FROM a)),
               (SELECT count(*) FROM a WHERE k IN (SELECT k FROM b))
        """
        removed, added, common = con.execute(q, {"a": a.glob, "b": b.glob}).fetchall()[0]
    finally:
        con.close()
    return {"a": a.ref, "b": b.ref, "rows_a": a.rows, "rows_b": b.rows,
            "removed": removed, "added": added, "common": common}


def lineage(ws: Workspace, sample_id: str) -> list[dict[str, Any]]:
    """Every dataset version that contains `sample_id`, with its step, run and parents (newest first)."""
    import duckdb

    out = []
    con = duckdb.connect()
    try:
        for dv in reversed(list_versions(ws)):
            if dv.rows == 0 or "sample_id" not in {f["name"] for f in dv.manifest.get("schema", [])}:
                continue
            hit = con.execute("SELECT count(*) FROM read_parquet(?) WHERE sample_id = ?",
                              [dv.glob, sample_id]).fetchall()[0][0]
            if hit:
                out.append({"dataset": dv.ref, "step": dv.step, "run_id": dv.run_id, "parents": dv.parents,
                            "created_at": dv.created_at})
    finally:
        con.close()
    return out
