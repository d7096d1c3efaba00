"""Runs: one row per job (ingest, sids, synth, curate, review, train, eval) with its config (redacted),
status and accounting, so every dataset version and sample points back to what made it.

A 'running' row records the process that runs it (pid, host, the process' start time) in its stats. A job
killed with SIGKILL never gets to write its final status; when that process is gone, the run is shown as
'interrupted' (`list_runs`, `get_run`) and stored so by the next run that starts."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from storage.redact import redact
from storage.workspace import Workspace

log = logging.getLogger(__name__)

#: exceptions that mean "stopped from outside" (Ctrl-C, a cancelled task, a generator closed early): the run is
#: recorded as 'interrupted', not 'failed'. The CLI turns nothing else (no SIGTERM handler) into these.
INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, asyncio.CancelledError, GeneratorExit)


#: the error text of a run whose process was killed (SIGKILL, power cut) before it could record its end
INTERRUPTED_ERROR = "interrupted: its process is gone (killed?)"


def new_run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _proc_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None where unknown: with
    the pid it tells a live job from an unrelated process that reused the pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """What a 'running' row records about the process running it."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_start(os.getpid())}


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists on this host (someone else's counts as alive). A pid can be
    reused after its process ended; `process_gone` also compares start times where that matters."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def process_gone(proc: dict[str, Any] | None) -> bool:
    """True when the process recorded by `this_process()` (on this host) no longer runs."""
    if not isinstance(proc, dict) or not isinstance(proc.get("pid"), int) or proc.get("host") != socket.gethostname():
        return False  # unknown, or another machine's: cannot tell
    pid = proc["pid"]
    if not pid_alive(pid):
        return True
    start = _proc_start(pid)
    return proc.get("start") is not None and start is not None and start != proc["start"]  # pid reused


def _running_stats(stats: Any) -> dict[str, Any]:
    if isinstance(stats, str):
        try:
            stats = json.loads(stats)
        except ValueError:
            return {}
    return stats if isinstance(stats, dict) else {}


def is_interrupted(status: str, stats: Any) -> bool:
    """A 'running' row whose process is gone (killed without a chance to record its end)."""
    return status == "running" and process_gone(_running_stats(stats).get("process"))


def start_run(ws: Workspace, kind: str, config: dict[str, Any] | None = None, run_id: str | None = None) -> str:
    """Insert a 'running' row (or re-open an existing run id when resuming) and return the id. Runs left
    'running' by a process that is gone are stored as 'interrupted' on the way."""
    run_id = run_id or new_run_id(kind)
    now = datetime.now(UTC)
    proc = json.dumps({"process": this_process()})
    with ws.transaction(kind) as con:
        for rid, stats in con.execute("SELECT run_id, stats FROM runs WHERE status = 'running'").fetchall():
            if rid != run_id and is_interrupted("running", stats):
                con.execute("UPDATE runs SET status = 'interrupted', error = ? WHERE run_id = ?",
                            [INTERRUPTED_ERROR, rid])
        exists = con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if exists:
            con.execute("UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, stats = ? "
                        "WHERE run_id = ?", [proc, run_id])
        else:
            con.execute("INSERT INTO runs VALUES (?, ?, 'running', ?, NULL, ?, ?, NULL)",
                        [run_id, kind, now, json.dumps(redact(config or {}), default=str), proc])
    return run_id


def finish_run(ws: Workspace, run_id: str, stats: dict[str, Any] | None = None, *, status: str = "done",
               error: str | None = None) -> None:
    with ws.transaction("run") as con:
        con.execute("UPDATE runs SET status = ?, finished_at = ?, stats = ?, error = ? WHERE run_id = ?",
                    [status, datetime.now(UTC), json.dumps(redact(stats or {}), default=str),
                     redact(error) if error else None, run_id])


class RecordedRun:
    """The `runs` row of one job, as a context manager (made by `recorded_run`). Inside the block, `id` is the
    run id and `stats` the accounting stored with the row whatever the outcome (assign or update it)."""

    def __init__(self, ws: Workspace, kind: str, config: dict[str, Any] | None = None, run_id: str | None = None, *,
                 quiet: bool = False):
        self.ws, self.kind, self.config = ws, kind, config
        self.id: str = run_id or ""
        self.stats: dict[str, Any] = {}
        self.status: str | None = None
        self._quiet = quiet

    def __enter__(self) -> RecordedRun:
        self.id = start_run(self.ws, self.kind, self.config, run_id=self.id or None)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc_type is None:
            self.status, error = "done", None
        elif issubclass(exc_type, INTERRUPTS):
            self.status, error = "interrupted", "interrupted"
        else:
            self.status, error = "failed", f"{exc_type.__name__}: {exc}"[:2000]
        try:
            finish_run(self.ws, self.id, self.stats, status=self.status, error=error)
        except Exception:
            if exc_type is None and not self._quiet:
                raise
            # never mask the job's own error (or, when quiet, its result) with a bookkeeping one
            log.warning("could not record %s run %s as %s", self.kind, self.id, self.status, exc_info=True)
        return False


def recorded_run(ws: Workspace, kind: str, config: dict[str, Any] | None = None, run_id: str | None = None, *,
                 quiet: bool = False) -> RecordedRun:
    """`with recorded_run(ws, "synth", config) as run:` — insert a 'running' row (or re-open `run_id`), then
    record it 'done' when the block ends, 'interrupted' on KeyboardInterrupt / cancellation, or 'failed' with
    the error text on any other exception (which is re-raised), storing `run.stats` in every case. A failure
    to write the final row is raised after a successful block (logged instead when `quiet`), and only logged
    after a failed one."""
    return RecordedRun(ws, kind, config, run_id, quiet=quiet)


def get_run(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    with ws.reader() as con:
        df = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
    if df.empty:
        return None
    row: dict[str, Any] = df.iloc[0].to_dict()
    if is_interrupted(row["status"], row.get("stats")):
        row["status"], row["error"] = "interrupted", INTERRUPTED_ERROR
    for k in ("config", "stats"):
        if row.get(k):
            row[k] = redact(json.loads(row[k]))  # rows stored before a redaction rule existed, too
    return row


def list_runs(ws: Workspace, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    sql = "SELECT run_id, kind, status, started_at, finished_at, stats FROM runs"
    params: list[Any] = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    sql += " ORDER BY started_at DESC LIMIT ?"
    params.append(limit)
    out = []
    for r in ws.query(sql, params):
        row = dict(zip(["run_id", "kind", "status", "started_at", "finished_at", "stats"], r))
        if is_interrupted(row["status"], row["stats"]):
            row["status"] = "interrupted"
        out.append(row)
    return out
