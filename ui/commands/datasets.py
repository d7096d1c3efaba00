"""`recot datasets` commands: list, show, diff, export, import of immutable dataset versions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storage.datasets import diff_versions, list_versions, resolve
from storage.errors import RecotError
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws

app = typer.Typer(no_args_is_help=True, help="List, inspect, diff, export and import dataset versions.")


@app.command("list")
def list_cmd(name: Annotated[str | None, typer.Argument(help="only this dataset")] = None,
             workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """Every dataset version: rows, step, parents, run, created time."""
    ws = open_ws(workspace, create=False)
    versions = list_versions(ws, name)
    t = Table(title=f"datasets in {ws.root}")
    for c in ("dataset", "rows", "step", "parents", "run", "created"):
        t.add_column(c, justify="right" if c == "rows" else "left")
    for dv in versions:
        parents = ", ".join(f"{p['name']}@v{p['version']}" for p in dv.parents) or "-"
        t.add_row(dv.ref, f"{dv.rows:,}", dv.step, parents, dv.run_id or "-", dv.created_at[:19])
    console.print(t if versions else "no dataset versions yet")


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME (latest) or NAME@vN")],
         rows: Annotated[int, typer.Option("--rows", "-n", help="sample rows to print")] = 3,
         workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """A version's manifest (schema, hash, parents, config) and a few rows."""
    import duckdb

    ws = open_ws(workspace, create=False)
    dv = resolve(ws, ref)
    m = dv.manifest
    t = Table(title=dv.ref, show_header=False)
    for k in ("rows", "content_hash", "step", "run_id", "created_at"):
        t.add_row(k, str(m.get(k)))
    t.add_row("parents", ", ".join(f"{p['name']}@v{p['version']}" for p in dv.parents) or "-")
    t.add_row("path", str(dv.path))
    t.add_row("schema", ", ".join(f"{f['name']}: {f['type']}" for f in m.get("schema", [])))
    if m.get("config"):
        t.add_row("config", json.dumps(m["config"], default=str)[:500])
    for k in sorted(set(m) - {"name", "version", "rows", "content_hash", "step", "run_id", "created_at", "parents",
                               "schema", "config"}):
        t.add_row(k, json.dumps(m[k], default=str)[:500])
    console.print(t)
    if rows > 0 and dv.rows:
        con = duckdb.connect()
        try:
            df = con.execute("SELECT * FROM read_parquet(?) LIMIT ?", [dv.glob, int(rows)]).df()
        finally:
            con.close()
        for i, r in enumerate(df.to_dict("records")):
            console.print(f"[bold]row {i}[/bold]")
            for k, v in r.items():
                s = str(v)
                console.print(f"  {k}: {s[:200] + '…' if len(s) > 200 else s}", markup=False, highlight=False)


@app.command("diff")
def diff(a: Annotated[str, typer.Argument(help="NAME@vN")], b: Annotated[str, typer.Argument(help="NAME@vM")],
         key: Annotated[str, typer.Option(help="column identifying a row")] = "sample_id",
         workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """Rows only in A, only in B, and in both (by --key)."""
    ws = open_ws(workspace, create=False)
    va, vb = resolve(ws, a), resolve(ws, b)
    for v in (va, vb):
        cols = [f["name"] for f in v.manifest.get("schema", [])]
        if key not in cols:
            raise RecotError(f"{v.ref} has no column {key!r} to match rows on; pass --key (one of {', '.join(cols)})")
    d = diff_versions(ws, va, vb, key=key)
    t = Table(title=f"{d['a']} → {d['b']}")
    t.add_column("what")
    t.add_column("rows", justify="right")
    for k in ("rows_a", "rows_b", "removed", "added", "common"):
        t.add_row(k, f"{d[k]:,}")
    console.print(t)


@app.command("export")
def export_cmd(ref: Annotated[str, typer.Argument(help="NAME, NAME@vN, or a catalog table: catalog:split, "
                                                       "catalog:items, catalog:interactions, catalog:users")],
               out: Annotated[Path, typer.Option("--out", "-o", help="output folder (must not exist or be empty)")],
               fmt: Annotated[str, typer.Option("--format", "-f", help="hf, parquet or openonerec")] = "hf",
               domain: Annotated[str | None, typer.Option(help="catalog exports: only this domain")] = None,
               include_rejected: Annotated[bool, typer.Option(help="curated versions: also rows with keep = false")]
               = False,
               parquet_copy: Annotated[bool, typer.Option("--parquet-copy/--no-parquet-copy",
                                                          help="hf: also write parquet/ inside the folder")] = True,
               overwrite: bool = False, workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """Export to Hugging Face datasets (save_to_disk), plain Parquet or the OpenOneRec layout. Atomic."""
    from storage.export import export

    ws = open_ws(workspace, create=False)
    r = export(ws, ref, fmt, out, domain=domain, include_rejected=include_rejected, overwrite=overwrite,
               with_parquet=parquet_copy)
    split = "  (" + ", ".join(f"{k}: {v:,}" for k, v in r.splits.items()) + ")" if r.splits else ""
    console.print(f"exported {r.ref} → {r.out} as {r.format}: {r.rows:,} rows{split}")
    if r.format == "hf":
        console.print(f"  load: datasets.load_from_disk('{r.out}')")
        if parquet_copy:
            console.print(f"  or:   duckdb.read_parquet('{r.out}/parquet/*.parquet')")
    else:
        console.print(f"  load: duckdb.read_parquet('{r.out}/*.parquet')")


@app.command("import")
def import_cmd(path: Annotated[Path, typer.Argument(help="HF dataset folder (save_to_disk) or Parquet file/folder "
                                                         "with a chat 'messages' column (OpenOneRec layout ok)")],
               name: Annotated[str, typer.Option("--name", help="dataset name to add a version to")],
               task: Annotated[str, typer.Option(help="task name for rows that carry none")] = "imported",
               workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """Import chat samples as a new dataset version (sample layout)."""
    from storage.export import import_chat

    ws = open_ws(workspace)
    dv = import_chat(ws, path, name, task=task)
    console.print(f"imported {dv.rows:,} rows from {path} as {dv.ref}")
