"""Runs: one row per job (ingest, sids, synth, curate, review, train, eval) with its config (redacted),
status and accounting, so every dataset version and sample points back to what made it."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from storage.redact import redact
from storage.workspace import Workspace


def new_run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def start_run(ws: Workspace, kind: str, config: dict | None = None, run_id: str | None = None) -> str:
    """Insert a 'running' row (or re-open an existing run id when resuming) and return the id."""
    run_id = run_id or new_run_id(kind)
    now = datetime.now(timezone.utc)
    with ws.transaction(kind) as con:
        exists = con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if exists:
            con.execute("UPDATE runs SET status = 'running', finished_at = NULL, error = NULL WHERE run_id = ?",
                        [run_id])
        else:
            con.execute("INSERT INTO runs VALUES (?, ?, 'running', ?, NULL, ?, NULL, NULL)",
                        [run_id, kind, now, json.dumps(redact(config or {}), default=str)])
    return run_id


def finish_run(ws: Workspace, run_id: str, stats: dict | None = None, *, status: str = "done",
               error: str | None = None) -> None:
    with ws.transaction("run") as con:
        con.execute("UPDATE runs SET status = ?, finished_at = ?, stats = ?, error = ? WHERE run_id = ?",
                    [status, datetime.now(timezone.utc), json.dumps(redact(stats or {}), default=str),
                     redact(error) if error else None, run_id])


def get_run(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    with ws.reader() as con:
        df = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    for k in ("config", "stats"):
        if row.get(k):
            row[k] = json.loads(row[k])
    return row


def list_runs(ws: Workspace, kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    sql = "SELECT run_id, kind, status, started_at, finished_at, stats FROM runs"
    params: list[Any] = []
    if kind:
        sql += " WHERE kind = ?"
        params.append(kind)
    sql += " ORDER BY started_at DESC LIMIT ?"
    params.append(limit)
    rows = ws.query(sql, params)
    return [dict(zip(["run_id", "kind", "status", "started_at", "finished_at", "stats"], r)) for r in rows]
