"""`recot workspace` commands: info (counts, sizes, last runs) and check (integrity, --repair)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storage.errors import RecotError
from ui.commands.common import DEFAULT_WS, JsonOpt, WorkspaceOpt, console, emit_json, open_ws

app = typer.Typer(no_args_is_help=True, help="Inspect and check the workspace.")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@app.command("info")
def info(workspace: WorkspaceOpt = DEFAULT_WS,
         runs: Annotated[int, typer.Option("--runs", help="how many recent runs to list")] = 8,
         as_json: JsonOpt = False) -> None:
    """Row counts per table and domain, sizes on disk, the latest runs."""
    from storage.runs import list_runs

    ws = open_ws(workspace, create=False)
    counts = ws.counts()
    if as_json:
        doms = ws.query("""SELECT domain, count(*) FROM items GROUP BY 1 ORDER BY 1""")
        sizes = {"catalog.duckdb": _size(ws.db_path), "total": _size(ws.root)}
        if ws.datasets_dir.is_dir():
            sizes |= {f"datasets/{d.name}": _size(d) for d in sorted(ws.datasets_dir.iterdir()) if d.is_dir()}
        emit_json({"workspace": str(ws.root), "rows": counts, "items_per_domain": dict(doms), "bytes": sizes,
                   "runs": [{**r, "stats": r["stats"] if not isinstance(r["stats"], str) else json.loads(r["stats"])}
                            for r in list_runs(ws, limit=runs)]})
        return
    t = Table(title=f"workspace {ws.root}")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    console.print(t)

    domains = ws.query("""SELECT d.domain, (SELECT count(*) FROM items i WHERE i.domain = d.domain),
                                 (SELECT count(*) FROM users u WHERE u.domain = d.domain),
                                 (SELECT count(*) FROM interactions x WHERE x.domain = d.domain)
                          FROM (SELECT DISTINCT domain FROM items) d ORDER BY 1""")
    if domains:
        t = Table(title="domains")
        for c in ("domain", "items", "users", "interactions"):
            t.add_column(c, justify="left" if c == "domain" else "right")
        for d, i, u, x in domains:
            t.add_row(d, f"{i:,}", f"{u:,}", f"{x:,}")
        console.print(t)

    t = Table(title="size on disk")
    t.add_column("path")
    t.add_column("size", justify="right")
    t.add_row("catalog.duckdb", _human(_size(ws.db_path)))
    if ws.datasets_dir.is_dir():
        for d in sorted(p for p in ws.datasets_dir.iterdir() if p.is_dir()):
            t.add_row(f"datasets/{d.name}", _human(_size(d)))
    for name in ("cache", "rejects", "tmp"):
        p = ws.root / name
        if p.exists():
            t.add_row(name, _human(_size(p)))
    t.add_row("total", _human(_size(ws.root)))
    console.print(t)

    recent = list_runs(ws, limit=runs)
    if recent:
        t = Table(title=f"last {len(recent)} runs")
        for c in ("run", "kind", "status", "started", "stats"):
            t.add_column(c, no_wrap=c in ("run", "started"))
        for r in recent:
            stats = r["stats"]
            if isinstance(stats, str):
                try:
                    stats = json.loads(stats)
                except ValueError:
                    pass
            nums = [f"{k}={v:,}" for k, v in (stats or {}).items() if isinstance(v, int) and not isinstance(v, bool)] \
                if isinstance(stats, dict) else [str(stats or "")[:60]]
            brief = ", ".join(nums[:4])
            t.add_row(r["run_id"], r["kind"], r["status"], str(r["started_at"])[:19], brief)
        console.print(t)


@app.command("check")
def check(workspace: WorkspaceOpt = DEFAULT_WS,
          repair: Annotated[bool, typer.Option("--repair", help="remove leftover temp folders/files (only those)")]
          = False) -> None:
    """Catalog vs disk (folders, manifests, row counts, content hashes, orphans, temp leftovers) and
    references between tables. Exits 1 when problems remain."""
    from storage.integrity import check_workspace, repair_workspace

    ws = open_ws(workspace, create=False)
    problems = check_workspace(ws)
    if repair and any(p.repairable for p in problems):
        removed = repair_workspace(ws, problems)
        for p in removed:
            console.print(f"[green]removed[/green] {p.where}")
        problems = check_workspace(ws)
    if not problems:
        console.print(f"[green]ok[/green]: {ws.root} is consistent")
        return
    t = Table(title=f"{len(problems)} problem(s) in {ws.root}")
    for c in ("kind", "where", "detail"):
        t.add_column(c)
    for p in problems:
        t.add_row(p.kind, p.where, p.detail + (" (--repair removes it)" if p.repairable else ""))
    console.print(t)
    raise RecotError(f"workspace check found {len(problems)} problem(s)")
