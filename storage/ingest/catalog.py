"""The one place where ingested rows are validated, filtered, split and written into the catalog.

Readers (movielens.py, amazon.py, generic.py) produce *raw* Arrow batches with canonical column names and
the source `_file`/`_line` of every row. This module:

1. normalizes raw batches with SQL (`normalize_*`): ids to VARCHAR, timestamps from epoch seconds /
   milliseconds / ISO strings, ratings to DOUBLE — a value that does not convert is an `InputError`
   naming file, line, field and value (or, with on_error='skip', a line in the rejects file);
2. stages the normalized batches (in memory, or in a Parquet file under the workspace's tmp/ for
   streamed multi-GB inputs, so memory stays flat);
3. in ONE `ws.transaction('ingest')`: rejects duplicate item ids and interactions that reference unknown
   items, applies the k-core and minimum-history filters, replaces the domain's rows in items / users /
   interactions / splits, and builds the chronological leave-last-out split. Any error rolls it all back.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_replace
from storage.errors import InputError
from storage.runs import RecordedRun, recorded_run
from storage.workspace import Workspace, sql_string

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]

#: epoch values at or beyond this many milliseconds (±) cannot be a timestamp (DuckDB's microseconds overflow)
TS_MAX_MS = 9.2e15
#: titles longer than this are cut (a title is a name, not a document; prompts repeat it many times)
TITLE_MAX_CHARS = 1000

ITEMS_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("title", pa.string()), ("description", pa.string()),
    ("categories", pa.list_(pa.string())), ("attributes", pa.string()),
    ("_file", pa.string()), ("_line", pa.int64()),
])
INTERACTIONS_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("ts", pa.timestamp("us")), ("rating", pa.float64()),
    ("_file", pa.string()), ("_line", pa.int64()),
])
USERS_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("attributes", pa.string()), ("_file", pa.string()), ("_line", pa.int64()),
])


@dataclass
class IngestOptions:
    """What every ingest path accepts. `domain` tags all rows (re-ingesting a domain replaces its rows)."""

    domain: str = "default"
    kcore: int = 0            # keep only users and items with >= kcore interactions (iterated to a fixpoint)
    min_history: int = 0      # then drop users with fewer interactions than this
    on_error: OnError = "raise"
    progress: bool = False
    batch_rows: int = 50_000  # rows per streamed batch
    item_prefix: str = ""     # prepended to every item id (keeps ids unique when two domains share them)
    # interactions whose item is not in the items file: None = like on_error; "skip" = rejected and counted
    # even when on_error is "raise" (the Amazon default: real dumps always review items missing from meta)
    unknown_items: OnError | None = None
    drop_duplicates: bool = False  # drop exact duplicate interactions (same user, item, ts, rating), counted

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.kcore < 0 or self.min_history < 0:
            raise InputError("kcore and min_history must be >= 0")
        if not self.domain or not str(self.domain).strip():
            raise InputError("domain must be a non-empty string")
        if self.unknown_items not in (None, "raise", "skip"):
            raise InputError(f"unknown_items must be 'raise' or 'skip', got {self.unknown_items!r}")


@dataclass
class IngestReport:
    """What an ingest did; printed by the CLI and stored as the run's stats."""

    source: str
    domain: str
    users: int = 0
    items: int = 0
    interactions: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    rejects_path: str | None = None
    filtered_interactions: int = 0   # removed by k-core / min-history
    unknown_item_interactions: int = 0  # skipped: their item is not in the items (meta) file (in `skipped` too)
    duplicates: int = 0              # exact duplicate interactions dropped (drop_duplicates)
    truncated_titles: int = 0        # titles cut to TITLE_MAX_CHARS
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    run_id: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- rejects
class Rejects:
    """Rows skipped under on_error='skip': counted, and written as JSONL (file, line, field, reason, raw) to a
    temp file that becomes `<workspace>/rejects/<run_id>.jsonl` only when the ingest commits."""

    def __init__(self, ws: Workspace, on_error: OnError):
        self.ws, self.on_error = ws, on_error
        self.count = 0
        self._tmp = ws.tmp_dir / f".tmp-rejects-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        self._fh: IO[str] | None = None

    def reject(self, reason: str, *, file: str | None, line: int | None, field: str | None, raw: Any = None,
               skip: bool = False) -> None:
        """Raise an InputError, or record the row when skipping (`skip`: record it whatever on_error says)."""
        if self.on_error == "raise" and not skip:
            raise InputError(reason, file=file, line=line, field=field)
        if self._fh is None:
            self._fh = open(self._tmp, "w", encoding="utf-8")
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        self._fh.write(json.dumps({"file": file, "line": line, "field": field, "reason": reason, "raw": raw},
                                  default=str, ensure_ascii=False) + "\n")
        self.count += 1

    def finalize(self, run_id: str) -> Path | None:
        if self._fh is None:
            return None
        self._fh.close()
        self._fh = None
        dest = self.ws.root / "rejects" / f"{run_id}.jsonl"
        atomic_replace(self._tmp, dest)
        return dest

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- staging
class Stage:
    """Normalized rows of one kind. Small inputs stay as Arrow in memory; `spill=True` writes every batch to
    a Parquet file under the workspace tmp/ so a multi-GB input never sits in memory."""

    def __init__(self, ws: Workspace, schema: pa.Schema, *, spill: bool):
        self.schema, self.spill, self.rows = schema, spill, 0
        self._batches: list[pa.RecordBatch] = []
        self._path = ws.tmp_dir / f".tmp-stage-{os.getpid()}-{uuid.uuid4().hex}.parquet"
        self._writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table | pa.RecordBatch) -> None:
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        self.rows += table.num_rows
        if not self.spill:
            self._batches.extend(table.to_batches() if isinstance(table, pa.Table) else [table])
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, self.schema, compression="zstd")
        self._writer.write_table(table if isinstance(table, pa.Table) else pa.Table.from_batches([table]))

    def register(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """Make the staged rows visible to SQL as `name`."""
        if self.spill and self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.spill and self._path.exists():
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet({sql_string(self._path)})")
        else:
            con.register(name, pa.Table.from_batches(self._batches, schema=self.schema))

    def cleanup(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._path.unlink(missing_ok=True)
        self._batches = []


# ---------------------------------------------------------------------------------------------- normalize
def _ts_sql(col: str, typ: pa.DataType) -> str:
    """SQL turning raw column `col` into a TIMESTAMP: epoch seconds or milliseconds (|x| >= 1e11 means
    ms — that is after year 5138 in seconds), or an ISO-8601 string (with or without a UTC offset)."""
    def from_number(x: str) -> str:
        # beyond ±TS_MAX_MS (year ~294,000) the microseconds overflow BIGINT: NULL, reported as out of range
        return (f"(CASE WHEN NOT isfinite({x}) OR abs({x}) >= {TS_MAX_MS:.0f} THEN NULL "
                f"WHEN abs({x}) >= 1e11 THEN make_timestamp(CAST(round({x} * 1000) AS BIGINT)) "
                f"ELSE make_timestamp(CAST(round({x} * 1000000) AS BIGINT)) END)")
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return f"CAST({col} AS TIMESTAMP)"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return from_number(f"CAST({col} AS DOUBLE)")
    s = f"trim(CAST({col} AS VARCHAR))"
    return (f"(CASE WHEN regexp_full_match({s}, '[+-]?[0-9]+(\\.[0-9]+)?') "
            f"THEN {from_number(f'TRY_CAST({s} AS DOUBLE)')} "
            f"ELSE COALESCE(TRY_CAST({s} AS TIMESTAMP), timezone('UTC', TRY_CAST({s} AS TIMESTAMPTZ))) END)")


def _id_sql(col: str) -> str:
    return f"NULLIF(trim(CAST({col} AS VARCHAR)), '')"


class Normalizer:
    """Turns raw batches into the staged schemas with SQL and routes bad rows to errors/rejects.

    `names` maps canonical fields (user, item, ts, rating, title, …) to the names the user's files use, so
    messages say "field 'unixReviewTime'" rather than an internal name."""

    def __init__(self, rejects: Rejects, names: dict[str, str] | None = None, item_prefix: str = ""):
        self.rejects = rejects
        self.item_prefix = item_prefix.replace("'", "''")
        self.names = names or {}
        self.truncated_titles = 0
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")

    def close(self) -> None:
        self.con.close()

    def _item_sql(self) -> str:
        return f"('{self.item_prefix}' || {_id_sql('item')})" if self.item_prefix else _id_sql("item")

    def _name(self, canonical: str) -> str:
        return self.names.get(canonical, canonical)

    def _route_errors(self, out: pa.Table, raw: pa.Table) -> pa.Table:
        """Raise on (or reject) rows whose `_err_field` is set; return the good rows."""
        err = out.column("_err_field")
        if err.null_count == len(err):
            return out.drop(["_err_field", "_err_reason", "_row"])
        bad = out.filter(err.is_valid()).sort_by("_line").to_pylist()
        raw_rows = raw.column("_raw").to_pylist() if "_raw" in raw.column_names else None
        for r in bad:
            raw_value = raw_rows[r["_row"]] if raw_rows is not None else None
            self.rejects.reject(r["_err_reason"], file=r["_file"], line=r["_line"],
                                field=self._name(r["_err_field"]), raw=raw_value)
        return out.filter(err.is_null()).drop(["_err_field", "_err_reason", "_row"])

    def interactions(self, raw: pa.Table) -> pa.Table:
        """raw columns: user, item, ts, [rating], _file, _line, [_raw]."""
        raw = raw.append_column("_row", pa.array(range(raw.num_rows), pa.int64()))
        self.con.register("raw_b", raw)
        has_rating = "rating" in raw.column_names
        rating = "TRY_CAST(trim(CAST(rating AS VARCHAR)) AS DOUBLE)" if has_rating else "CAST(NULL AS DOUBLE)"
        rating_raw = "NULLIF(trim(CAST(rating AS VARCHAR)), '')" if has_rating else "NULL"
        out = self.con.sql(f"""
            WITH n AS (
              SELECT {_id_sql('"user"')} AS user_id, {self._item_sql()} AS item_id,
                     {_ts_sql('ts', raw.schema.field('ts').type)} AS ts, {rating} AS rating,
                     CAST(ts AS VARCHAR) AS ts_raw, {rating_raw} AS rating_raw, _file, _line, _row
              FROM raw_b)
            SELECT user_id, item_id, ts, rating, _file, _line, _row,
              CASE WHEN user_id IS NULL THEN 'user' WHEN item_id IS NULL THEN 'item'
                   WHEN ts IS NULL THEN 'ts' WHEN rating_raw IS NOT NULL AND rating IS NULL THEN 'rating'
              END AS _err_field,
              CASE WHEN user_id IS NULL THEN 'missing user id' WHEN item_id IS NULL THEN 'missing item id'
                   WHEN ts IS NULL AND ts_raw IS NULL THEN 'missing timestamp'
                   WHEN ts IS NULL THEN 'wrong type: cannot read ' || '''' || ts_raw || '''' ||
                        ' as a timestamp (expected epoch seconds, epoch milliseconds or ISO 8601, '
                        || 'within 9.2e15 ms of 1970)'
                   WHEN rating_raw IS NOT NULL AND rating IS NULL THEN
                        'wrong type: cannot read ' || '''' || rating_raw || '''' || ' as a number'
              END AS _err_reason
            FROM n""").to_arrow_table()
        self.con.unregister("raw_b")
        return self._route_errors(_as_table(out), raw)

    def items(self, raw: pa.Table) -> pa.Table:
        """raw columns: item, [title], [description], [categories list<string>], [attributes JSON str],
        _file, _line, [_raw]."""
        raw = raw.append_column("_row", pa.array(range(raw.num_rows), pa.int64()))
        self.con.register("raw_b", raw)
        cols = raw.column_names
        title = "NULLIF(trim(CAST(title AS VARCHAR)), '')" if "title" in cols else "CAST(NULL AS VARCHAR)"
        desc = "NULLIF(CAST(description AS VARCHAR), '')" if "description" in cols else "CAST(NULL AS VARCHAR)"
        cats = "CAST(categories AS VARCHAR[])" if "categories" in cols else "CAST([] AS VARCHAR[])"
        attrs = "CAST(attributes AS VARCHAR)" if "attributes" in cols else "CAST(NULL AS VARCHAR)"
        out = self.con.sql(f"""
            SELECT {self._item_sql()} AS item_id, left({title}, {TITLE_MAX_CHARS}) AS title,
                   coalesce(length({title}) > {TITLE_MAX_CHARS}, false) AS _title_cut, {desc} AS description,
                   coalesce({cats}, CAST([] AS VARCHAR[])) AS categories, {attrs} AS attributes, _file, _line, _row,
                   CASE WHEN {_id_sql('item')} IS NULL THEN 'item' END AS _err_field,
                   CASE WHEN {_id_sql('item')} IS NULL THEN 'missing item id' END AS _err_reason
            FROM raw_b""").to_arrow_table()
        self.con.unregister("raw_b")
        out = self._route_errors(_as_table(out), raw)
        self.truncated_titles += int(pa.compute.sum(out.column("_title_cut")).as_py() or 0)
        return out.drop(["_title_cut"])

    def users(self, raw: pa.Table) -> pa.Table:
        raw = raw.append_column("_row", pa.array(range(raw.num_rows), pa.int64()))
        self.con.register("raw_b", raw)
        attrs = "CAST(attributes AS VARCHAR)" if "attributes" in raw.column_names else "CAST(NULL AS VARCHAR)"
        out = self.con.sql(f"""
            SELECT {_id_sql('"user"')} AS user_id, {attrs} AS attributes, _file, _line, _row,
                   CASE WHEN {_id_sql('"user"')} IS NULL THEN 'user' END AS _err_field,
                   CASE WHEN {_id_sql('"user"')} IS NULL THEN 'missing user id' END AS _err_reason
            FROM raw_b""").to_arrow_table()
        self.con.unregister("raw_b")
        return self._route_errors(_as_table(out), raw)


def _as_table(x: Any) -> pa.Table:
    """Some DuckDB/pyarrow combinations hand back a RecordBatchReader instead of a Table."""
    return x if isinstance(x, pa.Table) else x.read_all()


# ---------------------------------------------------------------------------------------------- session
class IngestSession:
    """Collects one ingest's staged rows and commits them. Usage (what every reader does):

        with IngestSession(ws, "amazon-2018", opts, files=[...], config={...}) as s:
            s.add_items(raw_table); s.add_interactions(raw_table); s.add_users(raw_table)
        report = s.report

    Holds the workspace writer lock from start to end, so a second writer is told "workspace busy" before
    any file is read."""

    def __init__(self, ws: Workspace, source: str, opts: IngestOptions, *, files: Sequence[str | Path],
                 config: dict[str, Any] | None = None, names: dict[str, str] | None = None, spill: bool = False):
        self.ws, self.source, self.opts = ws, source, opts
        self.files = [str(f) for f in files]
        self.config = {"source": source, **asdict(opts), "files": self.files, **(config or {})}
        self.names = names or {}
        self.spill = spill
        self.report: IngestReport | None = None

    @property
    def result(self) -> IngestReport:
        """The report of the committed session (read it after the `with` block)."""
        if self.report is None:
            raise RuntimeError("the ingest session has not committed")
        return self.report

    def __enter__(self) -> IngestSession:
        self._writer = self.ws.writer("ingest")
        self._writer.__enter__()
        run: RecordedRun | None = None
        try:
            from storage.datasets import clean_unfinished

            clean_unfinished(self.ws)  # what a killed writer left (we hold the lock: nobody else is writing)
            run = recorded_run(self.ws, "ingest", self.config).__enter__()
            self._run, self.run_id = run, run.id
            self.rejects = Rejects(self.ws, self.opts.on_error)
            self.norm = Normalizer(self.rejects, self.names, self.opts.item_prefix)
            self.items = Stage(self.ws, ITEMS_SCHEMA, spill=self.spill)
            self.interactions = Stage(self.ws, INTERACTIONS_SCHEMA, spill=self.spill)
            self.users = Stage(self.ws, USERS_SCHEMA, spill=self.spill)
            self._t0 = time.monotonic()
        except BaseException as e:
            if run is not None:
                run.__exit__(type(e), e, e.__traceback__)
            self._writer.__exit__(None, None, None)
            raise
        return self

    def add_items(self, raw: pa.Table) -> None:
        self.items.add(self.norm.items(raw))

    def add_interactions(self, raw: pa.Table) -> None:
        self.interactions.add(self.norm.interactions(raw))

    def add_users(self, raw: pa.Table) -> None:
        self.users.add(self.norm.users(raw))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        try:
            if exc_type is None:
                try:
                    if self.opts.progress:
                        from rich.console import Console

                        with Console(stderr=True).status("validating, filtering, splitting and writing the catalog"):
                            report = commit(self.ws, self, self.opts)
                    else:
                        report = commit(self.ws, self, self.opts)
                    report.run_id = self.run_id
                    rp = self.rejects.finalize(self.run_id)
                    report.rejects_path = str(rp) if rp else None
                    report.seconds = round(time.monotonic() - self._t0, 3)
                    self._run.stats = report.to_dict()
                    self.report = report
                except BaseException as e:
                    self._fail(e)
                    raise
                self._run.__exit__(None, None, None)
            elif exc is not None:
                self._fail(exc)
        finally:
            self.norm.close()
            for st in (self.items, self.interactions, self.users):
                st.cleanup()
            self._writer.__exit__(None, None, None)
        return False

    def _fail(self, exc: BaseException) -> None:
        """Drop the rejects file and close the run row as failed / interrupted (never masking `exc`)."""
        self.rejects.discard()
        self._run.stats = {"skipped": self.rejects.count}
        self._run.__exit__(type(exc), exc, exc.__traceback__)


# ---------------------------------------------------------------------------------------------- commit
def _first(con: duckdb.DuckDBPyConnection, sql: str,
           params: list[Any] | dict[str, Any] | None = None) -> tuple[Any, ...]:
    """The first row of an aggregate query (which always has one)."""
    return con.execute(sql, params or []).fetchall()[0]


def commit(ws: Workspace, s: IngestSession, opts: IngestOptions) -> IngestReport:
    """Validate across files, filter, replace the domain's rows and build the split, in one transaction."""
    domain = opts.domain
    report = IngestReport(source=s.source, domain=domain, files=s.files)
    if s.items.rows == 0:
        raise InputError("no items were read (empty file?)", file=s.files[0] if s.files else None)
    if s.interactions.rows == 0:
        raise InputError("no interactions were read (empty file?)", file=s.files[-1] if s.files else None)
    with ws.transaction("ingest") as con:
        s.items.register(con, "stg_items")
        s.interactions.register(con, "stg_inter")
        s.users.register(con, "stg_users")

        limit = " LIMIT 1" if opts.on_error == "raise" else ""  # raising needs only the first offender
        unknown_limit = " LIMIT 1" if (opts.unknown_items or opts.on_error) == "raise" else ""
        # duplicate item ids: the first definition wins when skipping
        dups = con.execute("""
            SELECT item_id, _file, _line, first_line FROM (
              SELECT item_id, _file, _line, row_number() OVER w AS rn, min(_line) OVER w AS first_line
              FROM stg_items WINDOW w AS (PARTITION BY item_id ORDER BY _file, _line))
            WHERE rn > 1 ORDER BY _file, _line""" + limit).fetchall()
        for item_id, f, line, first in dups:
            s.rejects.reject(f"duplicate item id {item_id!r} (first defined at line {first})", file=f, line=line,
                             field=s.names.get("item", "item_id"), raw={"item_id": item_id})
        con.execute("""CREATE TEMP TABLE t_items AS SELECT * EXCLUDE (rn) FROM (
                         SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY _file, _line) AS rn
                         FROM stg_items) WHERE rn = 1""")

        # interactions that reference unknown items
        unknown = con.execute("""
            SELECT i.item_id, i.user_id, i._file, i._line FROM stg_inter i
            ANTI JOIN t_items t ON i.item_id = t.item_id ORDER BY i._file, i._line""" + unknown_limit).fetchall()
        skip_unknown = (opts.unknown_items or opts.on_error) == "skip"
        for item_id, user_id, f, line in unknown:
            s.rejects.reject(f"interaction references unknown item id {item_id!r} (not in the items file)",
                             file=f, line=line, field=s.names.get("item", "item_id"),
                             raw={"user_id": user_id, "item_id": item_id}, skip=skip_unknown)
        report.unknown_item_interactions = len(unknown)
        con.execute("CREATE TEMP TABLE t_inter AS SELECT i.* FROM stg_inter i SEMI JOIN t_items t "
                    "ON i.item_id = t.item_id")
        if opts.drop_duplicates:  # the first of identical (user, item, ts, rating) rows is kept
            n = _first(con, "SELECT count(*) FROM t_inter")[0]
            con.execute("""CREATE OR REPLACE TEMP TABLE t_inter AS SELECT * EXCLUDE (rn) FROM (
                             SELECT *, row_number() OVER (PARTITION BY user_id, item_id, ts, rating
                                                          ORDER BY _file, _line) AS rn FROM t_inter) WHERE rn = 1""")
            report.duplicates = n - _first(con, "SELECT count(*) FROM t_inter")[0]
        report.skipped = s.rejects.count
        report.truncated_titles = s.norm.truncated_titles
        report.warnings = _warnings(con, report)
        for w in report.warnings:
            log.info("%s", w)
        before = _first(con, "SELECT count(*) FROM t_inter")[0]

        _apply_filters(con, opts)
        after = _first(con, "SELECT count(*) FROM t_inter")[0]
        report.filtered_interactions = before - after
        if after == 0:
            raise InputError(f"no interactions left after filtering (kcore={opts.kcore}, "
                             f"min_history={opts.min_history}); lower the thresholds")

        # an item id may belong to one domain only (items.item_id is the primary key)
        clash = con.execute("""SELECT t.item_id, c.domain FROM t_items t JOIN items c ON t.item_id = c.item_id
                               WHERE c.domain <> ? LIMIT 1""", [domain]).fetchone()
        if clash:
            raise InputError(f"item id {clash[0]!r} already exists in domain {clash[1]!r}; item ids must be "
                             f"unique across domains (prefix them, or re-ingest into domain {clash[1]!r})",
                             field="item_id")

        keep_items = "WHERE item_id IN (SELECT item_id FROM t_inter)" if (opts.kcore or opts.min_history) else ""
        # users are shared across domains (cross-domain data): keep those another domain still references
        con.execute("""DELETE FROM users WHERE domain = ? AND user_id NOT IN
                         (SELECT user_id FROM interactions WHERE domain <> ?)""", [domain, domain])
        for table in ("splits", "interactions", "items"):
            con.execute(f"DELETE FROM {table} WHERE domain = ?", [domain])
        con.execute(f"""INSERT INTO items (item_id, title, description, categories, attributes, domain)
                        SELECT item_id, title, description, categories, CAST(attributes AS JSON), ?
                        FROM t_items {keep_items}""", [domain])
        con.execute("""INSERT INTO interactions (user_id, item_id, ts, rating, domain)
                       SELECT user_id, item_id, ts, rating, ? FROM t_inter""", [domain])
        con.execute("""INSERT INTO users (user_id, attributes, domain)
                       SELECT k.user_id, CAST(u.attributes AS JSON), ?
                       FROM (SELECT DISTINCT user_id FROM t_inter) k
                       LEFT JOIN (SELECT user_id, first(attributes ORDER BY _line) AS attributes
                                  FROM stg_users GROUP BY user_id) u ON k.user_id = u.user_id
                       ON CONFLICT (user_id) DO UPDATE
                         SET attributes = COALESCE(EXCLUDED.attributes, users.attributes)""", [domain])
        con.execute("""INSERT INTO splits (user_id, item_id, ts, position, split, domain)
                       SELECT user_id, item_id, ts, CAST(pos AS INTEGER),
                              CASE WHEN pos = n - 1 THEN 'test' WHEN pos = n - 2 THEN 'valid' ELSE 'train' END, ?
                       FROM (SELECT user_id, item_id, ts,
                                    row_number() OVER (PARTITION BY user_id
                                                       ORDER BY ts, item_id, _file, _line) - 1 AS pos,
                                    count(*) OVER (PARTITION BY user_id) AS n
                             FROM t_inter)""", [domain])
        report.items = _first(con, "SELECT count(*) FROM items WHERE domain = ?", [domain])[0]
        report.users = _first(con, "SELECT count(DISTINCT user_id) FROM interactions WHERE domain = ?", [domain])[0]
        report.interactions = _first(con, "SELECT count(*) FROM interactions WHERE domain = ?", [domain])[0]
        report.splits = {k: v for k, v in con.execute(
            "SELECT split, count(*) FROM splits WHERE domain = ? GROUP BY split", [domain]).fetchall()}
        report.splits = {k: report.splits.get(k, 0) for k in ("train", "valid", "test")}
        for t in ("t_items", "t_inter"):
            con.execute(f"DROP TABLE {t}")
    return report


def _warnings(con: duckdb.DuckDBPyConnection, report: IngestReport) -> list[str]:
    """Accepted but suspicious: timestamps before 1970 or more than a year ahead, titles that were cut."""
    out = []
    early, late, first_early, first_late = _first(con, """
        SELECT count(*) FILTER (WHERE ts < TIMESTAMP '1970-01-01'),
               count(*) FILTER (WHERE ts > now()::TIMESTAMP + INTERVAL 366 DAY),
               min(_file || ', line ' || _line) FILTER (WHERE ts < TIMESTAMP '1970-01-01'),
               min(_file || ', line ' || _line) FILTER (WHERE ts > now()::TIMESTAMP + INTERVAL 366 DAY)
        FROM t_inter""")
    if early:
        out.append(f"{early:,} interaction(s) dated before 1970 (e.g. {first_early}): check the timestamp unit")
    if late:
        out.append(f"{late:,} interaction(s) dated more than a year in the future (e.g. {first_late}): "
                   "check the timestamp unit (seconds vs milliseconds)")
    if report.truncated_titles:
        out.append(f"{report.truncated_titles:,} title(s) longer than {TITLE_MAX_CHARS:,} characters were cut "
                   f"to {TITLE_MAX_CHARS:,}")
    if report.duplicates:
        out.append(f"{report.duplicates:,} exact duplicate interaction(s) dropped")
    return out


def _apply_filters(con: duckdb.DuckDBPyConnection, opts: IngestOptions) -> None:
    """k-core: repeatedly drop users and items with fewer than k interactions until nothing changes; then
    drop users with fewer than min_history interactions."""
    if opts.kcore > 1:
        for _ in range(100):
            removed = _first(con, """
                WITH u AS (SELECT user_id FROM t_inter GROUP BY user_id HAVING count(*) < $k),
                     i AS (SELECT item_id FROM t_inter GROUP BY item_id HAVING count(*) < $k)
                SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM i)""", {"k": opts.kcore})[0]
            if removed == 0:
                break
            con.execute("""DELETE FROM t_inter WHERE
                             user_id IN (SELECT user_id FROM t_inter GROUP BY user_id HAVING count(*) < $k)
                             OR item_id IN (SELECT item_id FROM t_inter GROUP BY item_id HAVING count(*) < $k)""",
                        {"k": opts.kcore})
    if opts.min_history > 1:
        con.execute("""DELETE FROM t_inter WHERE user_id IN
                         (SELECT user_id FROM t_inter GROUP BY user_id HAVING count(*) < ?)""", [opts.min_history])


# ---------------------------------------------------------------------------------------------- helpers
def batched(rows: Iterable[Any], n: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def rows_to_table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    """Raw rows (dicts of python values) → an Arrow table with exactly `columns` (missing keys → null)."""
    return pa.table({c: pa.array([r.get(c) for r in rows],
                                 type=_RAW_TYPES.get(c, pa.string())) for c in columns})


_RAW_TYPES: dict[str, pa.DataType] = {"categories": pa.list_(pa.string()), "_line": pa.int64()}
