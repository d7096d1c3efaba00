"""`recot synth` commands: list the tasks, run one (resumable: re-run the same command)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from storage.errors import ConfigError
from ui.commands.common import DEFAULT_WS, JsonOpt, WorkspaceOpt, console, emit_json, open_ws

app = typer.Typer(no_args_is_help=True,
                  help="Make samples: the alignment corpus and R0–R3 chain-of-thought tasks (see `synth list`).")


@app.command("list")
def list_cmd(verbose: Annotated[bool, typer.Option("--options", "-o", help="Also show every task's options.")] = False,
             workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """List the synthesis tasks with their level, kind (deterministic | teacher) and description. (The tasks do
    not depend on the workspace; -w is accepted like on every other command.)"""
    from synth.tasks.registry import list_tasks

    tasks = list_tasks()
    if as_json:
        emit_json(tasks)
        return
    w = max(len(x["name"]) for x in tasks)
    for x in tasks:   # one line per task: stays readable in narrow terminals
        console.print(f"{x['name']:<{w}}  {x['level']:<9}  {x['kind']:<13}  -> {x['dataset']:<9}  {x['description']}",
                      markup=False, highlight=False, soft_wrap=True)
    if verbose:
        for x in tasks:
            console.print(f"\n[bold]{x['name']}[/bold] options:")
            for o in x["options"]:
                console.print(f"  {o['name']} = {o['default']!r}: {o['help']}", markup=False, highlight=False)
    else:
        console.print("options per task: `recot synth list --options`; pass any with --option NAME=VALUE")


def _parse_kv(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--option expects NAME=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command("run")
def run_cmd(
    task: Annotated[str, typer.Argument(help="Task name (see `recot synth list`).")],
    workspace: WorkspaceOpt = DEFAULT_WS,
    users: Annotated[int | None, typer.Option(help="At most N users (seeded order).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most N prompts / samples.")] = None,
    teacher: Annotated[list[Path] | None, typer.Option(
        "--teacher", "-t", help="Teacher config YAML (repeat for several teachers; default: the embedded "
                                "local model).")] = None,
    mode: Annotated[Literal["hint", "blind"] | None, typer.Option(
        help="hint (teacher sees the held-out target) or blind.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Samples per prompt.")] = None,
    think: Annotated[bool | None, typer.Option("--think/--no-think",
                                                  help="Emit the /think (default) or the /no_think variant.")] = None,
    both: Annotated[bool, typer.Option("--both", help="Emit both /think and /no_think variants.")] = False,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (default: the task's, 'alignment' or "
                                                        "'cot').")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for every sampling decision.")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        help="Teacher max new tokens (default: the teacher config's max_tokens, else the task's: 2048 for "
             "chain-of-thought tasks).")] = None,
    target_split: Annotated[Literal["train", "valid", "test"] | None, typer.Option(
        help="train (default: target = last TRAIN item, no leakage) | valid | test.")] = None,
    domain: Annotated[list[str] | None, typer.Option(
        "--domain", help="Only prompts whose target is in this domain (the item, or the user's next item; "
                         "repeat for several; default: every domain).")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-O", help="Any task option as NAME=VALUE (repeatable; see `recot synth list -o`).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress.")] = True,
    executor: Annotated[Literal["local", "ray"], typer.Option(
        "--executor",
        help="local, or ray: parse teacher answers as a Ray Data stage (RAY_ADDRESS or a local Ray).")] = "local",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Send nothing and write nothing: print the requests the run would send, their "
                          "estimated prompt/completion tokens and cost per teacher.")] = False,
):
    """Run TASK and write one new dataset version. Interrupted? Run the same command again: completed
    teacher requests come from the cache and sample ids are deterministic. A teacher's max_cost_usd stops the
    run once reached (exit code 5); run it again to continue from the cache."""
    from synth.tasks.run import plan_task, run_task

    opts: dict = _parse_kv(option or [])
    for k, v in {"users": users, "limit": limit, "mode": mode, "n": n, "seed": seed, "max_tokens": max_tokens,
                 "target_split": target_split}.items():
        if v is not None:
            opts[k] = v
    if domain:
        opts["domains"] = ",".join(domain)
    if both:
        opts["think"] = "both"
    elif think is not None:
        opts["think"] = "think" if think else "no_think"
    ws = open_ws(workspace, create=False)
    teachers = [str(p) for p in teacher] if teacher else None
    if dry_run:
        _print_plan(plan_task(ws, task, teacher=teachers, options=opts))
        return
    from storage.datasets import list_versions

    existing = {v.ref for v in list_versions(ws)}
    dv = run_task(ws, task, teacher=teachers, options=opts, dataset=dataset, progress=progress,
                  executor=executor)
    if dv.ref in existing:  # the rows are exactly the latest version's: nothing new was written
        console.print(f"unchanged: {dv.ref} ({dv.rows} samples, the same rows as this run would write; "
                      f"no new version)", markup=False, highlight=False)
        return
    console.print(f"[bold green]{dv.ref}[/bold green]: {dv.rows} samples from task {task} "
                  f"(run {dv.run_id})")
    _print_counts(dv)


def _print_plan(plan: dict) -> None:
    """The dry run: one row per teacher, then the first request in full."""
    if not plan["teachers"]:
        console.print(f"{plan['task']}: {plan.get('note', 'no teacher requests')}", markup=False)
        return
    console.print(f"dry run of {plan['task']} ({plan['template_version']}): {plan['prompts']} prompts; nothing is "
                  f"sent or written", markup=False, highlight=False, soft_wrap=True)
    t = Table()       # one column per teacher: stays readable in narrow terminals
    t.add_column("estimate")
    for e in plan["teachers"]:
        t.add_column(e["teacher"], overflow="fold")

    def cost(e: dict) -> str:
        c = "no price" if e["cost_usd"] is None else f"{e['cost_usd']:.4f}"
        return c + (f" (budget {e['max_cost_usd']})" if e.get("max_cost_usd") is not None else "")

    for label, fn in (("requests", lambda e: e["requests"]), ("cached (free)", lambda e: e["cached"]),
                      ("to send", lambda e: e["to_send"]), ("max_tokens", lambda e: e["max_tokens"]),
                      ("prompt tokens", lambda e: e["prompt_tokens"]),
                      ("completion tokens", lambda e: e["completion_tokens"]), ("cost (USD)", cost)):
        t.add_row(label, *(str(fn(e)) for e in plan["teachers"]))
    console.print(t)
    for e in plan["teachers"]:
        console.print(f"{e['teacher']}: prompt tokens from {e['prompt_source']}; completion tokens from "
                      f"{e['completion_source']}; prices from {e['price_source'] or 'nowhere (no price known)'}"
                      + ("; structured output (JSON schema)" if e.get("structured") else ""),
                      markup=False, highlight=False, soft_wrap=True)
    example = plan["teachers"][0].get("example")
    if example:
        console.print("first request:", style="bold")
        for m in example:
            console.print(f"[{m['role']}] {m['content']}", markup=False, highlight=False, soft_wrap=True)


def _print_counts(dv) -> None:
    from synth.tasks.run import summarize

    summary = summarize(dv)
    by = summary["by"]
    if not by:
        return
    t = Table()
    for c in ("teacher", "variant", "samples", "with error"):
        t.add_column(c)
    for r in by:
        t.add_row(str(r["teacher"]), str(r["variant"]), str(r["rows"]), str(r["errors"]))
    console.print(t)
    if summary["errors_by_kind"]:
        console.print("errors by kind: " + ", ".join(f"{k}={n}" for k, n in summary["errors_by_kind"].items())
                      + " (truncated: raise max_tokens; parse/unresolved: the answers, see extra.raw)",
                      markup=False, highlight=False, soft_wrap=True)
