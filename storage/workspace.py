"""A workspace: one folder with one DuckDB catalog and immutable Parquet dataset versions.

Why the connection handling looks the way it does: DuckDB lets one process open a database file for
writing and then nobody else may open it, not even read-only. recot's jobs (ingest, synth, curate) can run
for hours while a researcher browses the viewer, so writers never keep the catalog open: they take a
*writer lock* (an `flock` on `<workspace>/.lock`, held for the whole job, so a second writer gets
"workspace busy") and open DuckDB only for the short transactions that write. Readers open DuckDB
read-only and retry for a moment if a writer's transaction is in flight.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from storage.errors import RecotError, WorkspaceBusy
from storage.schema import SCHEMA_SQL, SCHEMA_VERSION

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_WORKSPACE = "./recot-data"


def sql_string(value: str | os.PathLike[str]) -> str:
    """`value` as a SQL string literal ('it''s'), for the few statements DuckDB cannot take a parameter in
    (CREATE VIEW, COPY): a path with a quote in it must never end the literal. Prefer `?` parameters."""
    return "'" + str(value).replace("'", "''") + "'"


def default_workspace_path() -> Path:
    """`RECOT_WORKSPACE` if set, else ./recot-data."""
    return Path(os.environ.get("RECOT_WORKSPACE", DEFAULT_WORKSPACE))


def duckdb_config(db_path: Path) -> dict[str, str | bool | int | float | list[str]]:
    """Connection settings from the environment: RECOT_DUCKDB_MEMORY_LIMIT (e.g. "2GB") caps what one DuckDB
    connection holds in memory — past it, sorts, joins and windows spill to `<db>.tmp` — so a large job's peak
    RSS stays bounded (DuckDB's own default is 80% of the machine's RAM). Unset: DuckDB's defaults."""
    limit = os.environ.get("RECOT_DUCKDB_MEMORY_LIMIT")
    return {"memory_limit": limit, "temp_directory": f"{db_path}.tmp"} if limit else {}


@dataclass
class Workspace:
    """Handle on a workspace folder. Cheap to create; holds no open connection."""

    root: Path
    _lock_fd: int | None = field(default=None, repr=False)
    _lock_depth: int = field(default=0, repr=False)
    _mutex: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Workspace:
        """Open (and by default create) the workspace at `path` (default: RECOT_WORKSPACE or ./recot-data)."""
        root = Path(path) if path is not None else default_workspace_path()
        ws = cls(root=root.resolve())
        if not ws.db_path.exists():
            if not create:
                raise RecotError(f"no workspace at {ws.root} (run `recot ingest ...` first, or pass --workspace)")
            ws.root.mkdir(parents=True, exist_ok=True)
            with ws.transaction() as con:
                con.execute(SCHEMA_SQL)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        else:
            ws._migrate()
        return ws

    def _migrate(self) -> None:
        """Create tables added since the workspace was made (all DDL is IF NOT EXISTS)."""
        with self.reader() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) < SCHEMA_VERSION:
            with self.transaction() as con:
                con.execute(SCHEMA_SQL)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def __getstate__(self) -> dict[str, Path]:
        """Pickle only the path (a worker process gets its own handle; locks never travel)."""
        return {"root": self.root}

    def __setstate__(self, state: dict[str, Path]) -> None:
        Workspace.__init__(self, root=state["root"])

    # ------------------------------------------------------------------ paths
    @property
    def db_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def tmp_dir(self) -> Path:
        p = self.root / "tmp"
        p.mkdir(parents=True, exist_ok=True)
        return p

    # ------------------------------------------------------------------ writer lock
    @contextlib.contextmanager
    def writer(self, step: str = "write") -> Iterator[Workspace]:
        """Hold the workspace's writer lock for the duration of a job. Re-entrant within one process."""
        with self._mutex:
            if self._lock_depth == 0:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    try:
                        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                    finally:
                        os.close(fd)
                    raise WorkspaceBusy(
                        f"workspace busy: {self.root} is being written by another process ({holder or 'unknown'}); "
                        "wait for it to finish or stop it, then retry") from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"pid": os.getpid(), "step": step, "since": time.time()}).encode(), 0)
                self._lock_fd = fd
            self._lock_depth += 1
        try:
            yield self
        finally:
            with self._mutex:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.ftruncate(self._lock_fd, 0)
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None

    # ------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def transaction(self, step: str = "write") -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write DuckDB transaction under the writer lock: committed on success, rolled back on any
        exception, so a failed step leaves the catalog exactly as before."""
        with self.writer(step):
            con = self._connect(read_only=False)
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            finally:
                con.close()

    @contextlib.contextmanager
    def reader(self, timeout_s: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection. Within a process that holds the writer lock this is a normal
        connection (DuckDB refuses mixing modes in one process); elsewhere read-only with retries while a
        writer's short transaction holds the file."""
        if self._lock_depth > 0:
            con = self._connect(read_only=False)
        else:
            con = self._connect(read_only=True, timeout_s=timeout_s)
        try:
            yield con
        finally:
            con.close()

    def _connect(self, read_only: bool, timeout_s: float = 30.0) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only, config=duckdb_config(self.db_path))
            except duckdb.IOException as exc:  # file locked by another process' transaction
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    if "lock" in str(exc).lower():
                        raise WorkspaceBusy(
                            f"workspace busy: {self.db_path} stayed locked for {timeout_s:.0f}s") from None
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------------ helpers
    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query and return all rows (small results only)."""
        with self.reader() as con:
            return con.execute(sql, params or []).fetchall()

    def query_df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self.reader() as con:
            return con.execute(sql, params or []).df()

    def counts(self) -> dict[str, int]:
        """Row counts of the core tables (for `recot workspace info` and the viewer)."""
        tables = ["items", "users", "interactions", "splits", "sid_versions", "item_sids", "runs",
                  "dataset_versions", "verdicts", "reviews"]
        with self.reader() as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}
