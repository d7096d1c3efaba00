"""`recot curate`: run a filter chain on a sample dataset, print the funnel; `recot curate report` for an
existing curated version; `recot curate filters` lists the filter types and their parameters."""
from __future__ import annotations

import json
from typing import Annotated, Literal

import typer
from rich.table import Table

from storage.errors import ConfigError
from ui.commands.common import DEFAULT_WS, JsonOpt, WorkspaceOpt, console, emit_json, open_ws

app = typer.Typer(help="Filter chains over sample datasets: verdicts per sample, funnel report, review overrides.")


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether `param` was set on the command line or by its env var (not left at its default)."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name != "DEFAULT"


@app.callback(invoke_without_command=True)
def curate(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="input samples: NAME (latest) or NAME@vN")] = None,
    chain: Annotated[str, typer.Option(
        "--chain", "-c", help="chain name in configs/curation/ or a YAML path")] = "default",
    out: Annotated[str | None, typer.Option(
        "--out", "-o", help="output dataset name (default: <input>-curated)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set",
        help="override a filter parameter, FILTER.PARAM=VALUE (repeatable), e.g. near_dup.threshold=0.7")] = None,
    apply_reviews: Annotated[bool, typer.Option(
        "--apply-reviews",
        help="instead of a chain: apply human review decisions to the curated version --dataset")] = False,
    examples: Annotated[bool, typer.Option("--examples/--no-examples", help="print example reasons")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the funnel as JSON")] = False,
    executor: Annotated[Literal["local", "ray"], typer.Option(
        "--executor", help="local (in-process) or ray (row-local filters as a Ray Data stage; RAY_ADDRESS for a "
                           "cluster, else a local Ray instance)")] = "local",
    workspace: WorkspaceOpt = DEFAULT_WS,
) -> None:
    """Curate --dataset with --chain into a new version (all samples kept, with verdicts) and print the funnel."""
    if ctx.invoked_subcommand is not None:
        # `recot curate -d X report`: options before the subcommand belong to the group. -d, -w and --json
        # mean the same to `report`, so they are handed on; the chain options have no meaning there: refuse.
        given = {p for p in ("chain", "out", "set_", "apply_reviews", "executor", "examples") if _given(ctx, p)}
        if given:
            flags = ", ".join(sorted("--" + p.rstrip("_").replace("_", "-") for p in given))
            raise ConfigError(f"{flags} run a chain and cannot be combined with `recot curate "
                              f"{ctx.invoked_subcommand}`; put the subcommand's own options after it")
        ctx.obj = {"dataset": dataset, "as_json": as_json,
                   "workspace": workspace if _given(ctx, "workspace") else None}
        return
    if not dataset:
        console.print(ctx.get_help())
        raise ConfigError("recot curate needs --dataset NAME[@vN] (or a subcommand: report, filters, chains)")
    ws = open_ws(workspace, create=False)
    if apply_reviews:
        from curation.review.overrides import apply_reviews as _apply

        dv = _apply(ws, dataset)
        console.print(f"[green]wrote {dv.ref}[/green] ({dv.rows:,} rows) with human review decisions applied")
        return
    from curation.chain import run_chain
    from curation.report import funnel, render

    dv = run_chain(ws, dataset, chain, out=out, progress=True, overrides=set_ or None, executor=executor)
    rep = funnel(ws, dv)
    if as_json:
        emit_json(rep)
    else:
        render(rep, console, examples=examples)
        console.print(f"[green]wrote {dv.ref}[/green]; verdicts in table `verdicts` (dataset={dv.name}, "
                      f"version={dv.version}); details: recot curate report --dataset {dv.ref}")


@app.command("report")
def report(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", "-d", help="curated version NAME\\[@vN] (default: latest curated)")] = None,
    examples: Annotated[bool, typer.Option("--examples/--no-examples", help="print example reasons")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the funnel as JSON (what the viewer reads)")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
) -> None:
    """Funnel (per-filter in/out), reasons histogram, examples per reason and score distributions."""
    from curation.report import funnel, render

    group = ctx.obj if isinstance(ctx.obj, dict) else {}  # `recot curate -d X --json report`
    dataset = dataset or group.get("dataset")
    as_json = as_json or bool(group.get("as_json"))
    if not _given(ctx, "workspace") and group.get("workspace"):
        workspace = group["workspace"]
    ws = open_ws(workspace, create=False)
    rep = funnel(ws, dataset)
    if as_json:
        emit_json(rep)
    else:
        render(rep, console, examples=examples)


@app.command("filters")
def filters(as_json: JsonOpt = False) -> None:
    """Filter types usable in a chain, with their parameters and defaults."""
    from curation.base import registry

    if as_json:
        emit_json([{"type": name, "only_kept": cls.only_kept_default,
                    "parameters": {k: v.default for k, v in cls.Params.model_fields.items()}}
                   for name, cls in sorted(registry().items())])
        return
    t = Table(title="filter types")
    for c in ("type", "only_kept", "parameters (defaults)"):
        t.add_column(c)
    for name, cls in sorted(registry().items()):
        params = ", ".join(f"{k}={json.dumps(v.default, default=str)[:40]}" for k, v in cls.Params.model_fields.items())
        t.add_row(name, str(cls.only_kept_default), params)
    console.print(t)


@app.command("chains")
def chains(as_json: JsonOpt = False) -> None:
    """Built-in chains (configs/curation/*.yaml)."""
    from curation.config import CONFIG_DIR, list_chains, load_chain

    if as_json:
        emit_json([{"chain": name, "filters": [f.label for f in cfg.filters if f.enabled],
                    "description": cfg.description} for name in list_chains() for cfg in [load_chain(name)[0]]])
        return
    t = Table(title=f"chains in {CONFIG_DIR}")
    for c in ("chain", "filters", "description"):
        t.add_column(c)
    for name in list_chains():
        cfg, _ = load_chain(name)
        t.add_row(name, " → ".join(f.label for f in cfg.filters if f.enabled), cfg.description)
    console.print(t)
