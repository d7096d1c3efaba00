"""`recot datasets` commands: list, show, diff, export, import of immutable dataset versions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from storage.datasets import diff_versions, list_versions, resolve
from storage.errors import RecotError
from ui.commands.common import DEFAULT_WS, JsonOpt, WorkspaceOpt, console, emit_json, open_ws

app = typer.Typer(no_args_is_help=True, help="List, inspect, diff, export and import dataset versions.")


@app.command("list")
def list_cmd(name: Annotated[str | None, typer.Argument(help="only this dataset")] = None,
             workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """Every dataset version: rows, step, parents, run, created time."""
    ws = open_ws(workspace, create=False)
    versions = list_versions(ws, name)
    if as_json:
        emit_json([{"ref": dv.ref, "name": dv.name, "version": dv.version, "rows": dv.rows, "step": dv.step,
                    "parents": [f"{p['name']}@v{p['version']}" for p in dv.parents], "run_id": dv.run_id,
                    "created_at": dv.created_at, "path": str(dv.path)} for dv in versions])
        return
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
         workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """A version's manifest (schema, hash, parents, config) and a few rows."""
    import duckdb

    ws = open_ws(workspace, create=False)
    dv = resolve(ws, ref)
    m = dv.manifest
    df = None
    if rows > 0 and dv.rows:
        con = duckdb.connect()
        try:
            df = con.execute("SELECT * FROM read_parquet(?) LIMIT ?", [dv.glob, int(rows)]).df()
        finally:
            con.close()
    if as_json:
        emit_json({"ref": dv.ref, "path": str(dv.path), "manifest": m,
                   "rows": [] if df is None else json.loads(df.to_json(orient="records", default_handler=str))})
        return
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
    if df is not None:
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
               fmt: Annotated[Literal["hf", "parquet", "openonerec", "minionerec", "trl"], typer.Option(
                   "--format", "-f", help="Hugging Face save_to_disk folder, plain Parquet, the OpenOneRec layout, "
                                          "MiniOneRec's CSV splits + index JSON (from the catalog), or TRL-ready "
                                          "prompt/completion/messages Parquet")]
               = "hf",
               domain: Annotated[str | None, typer.Option(help="only this domain's rows (comma-separated for "
                                                               "several)")] = None,
               include_rejected: Annotated[bool, typer.Option(help="curated versions: also rows with keep = false")]
               = False,
               parquet_copy: Annotated[bool, typer.Option("--parquet-copy/--no-parquet-copy",
                                                          help="hf: also write parquet/ inside the folder")] = True,
               overwrite: bool = False, workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """Export to Hugging Face datasets (save_to_disk), plain Parquet, or the OpenOneRec / MiniOneRec / TRL
    layouts (storage/export_formats.py; MiniOneRec from catalog:split). Atomic."""
    from storage.export import export

    ws = open_ws(workspace, create=False)
    doms = [d.strip() for d in domain.split(",") if d.strip()] if domain else None
    r = export(ws, ref, fmt, out, domains=doms, include_rejected=include_rejected, overwrite=overwrite,
               with_parquet=parquet_copy)
    split = "  (" + ", ".join(f"{k}: {v:,}" for k, v in r.splits.items()) + ")" if r.splits else ""
    console.print(f"exported {r.ref} → {r.out} as {r.format}: {r.rows:,} rows{split}")
    if r.format == "hf":
        console.print(f"  load: datasets.load_from_disk('{r.out}')")
        if parquet_copy:
            console.print(f"  or:   duckdb.read_parquet('{r.out}/parquet/*.parquet')")
    elif r.format == "parquet":
        console.print(f"  load: duckdb.read_parquet('{r.out}/*.parquet')")
    else:
        console.print("  files: " + ", ".join(r.files))


@app.command("mix")
def mix_cmd(parts: Annotated[list[str], typer.Argument(help="REF:RATIO (cot-curated:0.5), REF:COUNT (alignment:200) "
                                                            "or REF (every row); one kind per mix")],
            out: Annotated[str, typer.Option("--out", "-o", help="name of the dataset the mix is written to")],
            total: Annotated[int | None, typer.Option(help="rows in the mix (ratios only; default: as many as "
                                                           "the ratios allow)")] = None,
            seed: Annotated[int, typer.Option(help="seed of the row choice and order")] = 0,
            include_rejected: Annotated[bool, typer.Option(help="curated parts: also rows with keep = false")]
            = False,
            workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """A weighted union of versions (by ratio or count, seeded, duplicates by sample_id removed), written as a
    new version whose lineage lists every parent. Train on it like any other: --dataset NAME."""
    from storage.mix import mix_versions, parse_parts

    ws = open_ws(workspace, create=False)
    r = mix_versions(ws, parse_parts(parts), out, total=total, seed=seed, kept_only=not include_rejected)
    t = Table(title=f"mix → {r.version.ref}")
    for c in ("parent", "usable", "taken", "share"):
        t.add_column(c, justify="left" if c == "parent" else "right")
    for ref, n in r.taken.items():
        t.add_row(ref, f"{r.available[ref]:,}", f"{n:,}", f"{n / max(1, r.version.rows):.1%}")
    console.print(t)
    console.print(f"wrote {r.version.ref}: {r.version.rows:,} rows")


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
