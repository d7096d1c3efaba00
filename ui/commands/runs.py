"""`recot runs` commands: list jobs and show one job's config and accounting (teacher requests, cache
hits, retries, failures by kind, tokens, latency percentiles, cost)."""
from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from storage.errors import NotFound
from storage.runs import get_run, list_runs
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, emit_json, open_ws

app = typer.Typer(no_args_is_help=True, help="List jobs (ingest, sids, synth, curate, train, eval, teacher) "
                                             "and show their config and accounting.")


def _stats(raw: Any) -> dict:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return {}
    return raw or {}


def _is_teacher(d: Any) -> bool:
    return isinstance(d, dict) and "sent" in d and "cached" in d


def _teacher_stats(stats: dict) -> dict | None:
    """The teacher accounting inside a run's stats (the whole stats of a 'teacher' run, or stats['teacher'])."""
    if _is_teacher(stats):
        return stats
    t = stats.get("teacher")
    return t if _is_teacher(t) else None


def _all_teacher_stats(stats: dict) -> list[dict]:
    """Every teacher's accounting in a run: the run itself, stats['teacher'], or stats['teachers'] (a task
    run with several teachers), and judges under any other key."""
    one = _teacher_stats(stats)
    if one is stats:
        return [stats]
    found = [one] if one else []
    for v in stats.values():
        if isinstance(v, list):
            found += [x for x in v if _is_teacher(x)]
        elif isinstance(v, dict) and v is not one:
            found += [x for x in v.values() if _is_teacher(x)]
    return found


def _summary(stats: dict) -> str:
    ts = _all_teacher_stats(stats)
    if ts:
        req = sum(t.get("requests", 0) for t in ts)
        hit = sum(t.get("cached", 0) for t in ts)
        sent = sum(t.get("sent", 0) for t in ts)
        fails = sum(sum((t.get("failures") or {}).values()) for t in ts)
        return f"{req} req, {hit} hit, {sent} sent, {fails} err"
    items = [f"{k}={v}" for k, v in stats.items() if isinstance(v, (int, float, str)) and len(str(v)) < 24]
    return ", ".join(items[:4])


@app.command("list")
def list_cmd(workspace: WorkspaceOpt = DEFAULT_WS,
             kind: Annotated[str | None, typer.Option(help="only runs of this kind (e.g. teacher, synth)")] = None,
             limit: Annotated[int, typer.Option(min=1, help="most recent N")] = 50,
             as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Recent runs, newest first."""
    from storage.datasets import list_versions

    ws = open_ws(workspace, create=False)
    rows = list_runs(ws, kind=kind, limit=limit)
    produced: dict[str, list[str]] = {}
    for dv in list_versions(ws):
        if dv.run_id:
            produced.setdefault(dv.run_id, []).append(dv.ref)
    if as_json:
        emit_json([{**r, "stats": _stats(r["stats"]), "task": _stats(r["stats"]).get("task"),
                    "produced": produced.get(r["run_id"], [])} for r in rows])
        return
    if not rows:
        console.print("no runs yet")
        return
    table = Table("kind", "task", "produced", "status", "started", "took", "summary")
    table.columns.insert(0, Column("run_id", no_wrap=True))
    for r in rows:
        took = ""
        if r["finished_at"] is not None and r["started_at"] is not None:
            took = f"{(r['finished_at'] - r['started_at']).total_seconds():.1f}s"
        stats = _stats(r["stats"])
        table.add_row(r["run_id"], r["kind"], str(stats.get("task") or "-"),
                      ", ".join(produced.get(r["run_id"], [])) or "-", r["status"], str(r["started_at"])[5:16],
                      took, _summary(stats))
    console.print(table)


def _teacher_table(t: dict) -> Table:
    table = Table("teacher accounting", "value", show_header=True)
    lat = t.get("latency_s") or {}
    fails = t.get("failures") or {}
    rows = [
        ("teacher", t.get("teacher")),
        ("requests (unique)", f"{t.get('requests')} ({t.get('unique')})"),
        ("cache hits", t.get("cached")),
        ("sent to backend", t.get("sent")),
        ("completed / failed", f"{t.get('completed')} / {t.get('failed')}"),
        ("retries", t.get("retries")),
        ("failures by kind", ", ".join(f"{k}={v}" for k, v in sorted(fails.items())) or "none"),
        ("failed attempts by kind",
         ", ".join(f"{k}={v}" for k, v in sorted((t.get("attempt_errors") or {}).items())) or "none"),
        ("prompt / completion tokens", f"{t.get('prompt_tokens')} / {t.get('completion_tokens')}"),
        ("latency p50 / p90 / p99 (s)", f"{lat.get('p50')} / {lat.get('p90')} / {lat.get('p99')}"),
        ("cost (USD)", "no price table" if t.get("cost_usd") is None else f"{t['cost_usd']:.6f}"),
        ("wall time (s)", t.get("wall_s")),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    return table


@app.command("show")
def show_cmd(run_id: Annotated[str, typer.Argument(help="a run id from `recot runs list`")],
             workspace: WorkspaceOpt = DEFAULT_WS,
             as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """One run: status, config (secrets redacted) and accounting."""
    ws = open_ws(workspace, create=False)
    row = get_run(ws, run_id)
    if row is None:
        raise NotFound(f"no run {run_id!r} in {ws.root} (see `recot runs list`)")
    stats = _stats(row.get("stats"))
    if as_json:
        emit_json({**row, "stats": stats})
        return
    console.print(f"[bold]{row['run_id']}[/bold]  kind={row['kind']}  status={row['status']}")
    console.print(f"started {row['started_at']}  finished {row['finished_at']}")
    if row.get("error"):
        console.print(f"[red]error:[/red] {row['error']}")
    teachers = _all_teacher_stats(stats)
    for t in teachers:
        console.print(_teacher_table(t))
    other = {} if teachers[:1] == [stats] else stats
    if other:
        console.print("stats:")
        console.print_json(json.dumps(other, default=str))
    console.print("config:")
    console.print_json(json.dumps(row.get("config") or {}, default=str))
