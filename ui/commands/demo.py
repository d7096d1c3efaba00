"""`recot demo`: the main job end to end on embedded defaults, with no network — ingest MovieLens-100k → SIDs
→ alignment corpus + a skeleton-teacher three-level CoT corpus + a small CoT batch with the embedded teacher
→ curation → a workspace the viewer opens;
`--train` also runs SFT for a few steps and evaluates on CPU.

The pipeline itself is trainers/demo.py (also called by the end-to-end test); this command only prints it.
"""
from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    workspace: WorkspaceOpt = DEFAULT_WS,
    users: Annotated[int, typer.Option(
        help="users in the CoT batch (R3 hint + blind, R1, R2) with the embedded teacher")] = 4,
    skeleton_users: Annotated[int, typer.Option(
        help="users in the three-level CoT corpus written by the skeleton teacher (no model)")] = 200,
    align_users: Annotated[int, typer.Option(help="users for the user-level alignment task (sliding windows)")] = 100,
    max_tokens: Annotated[int, typer.Option(help="teacher max new tokens per CoT answer")] = 160,
    train: Annotated[bool, typer.Option(
        "--train/--no-train", help="also SFT a few steps on CPU and run `recot eval`")] = False,
    rebuild: Annotated[bool, typer.Option(help="re-ingest and rebuild SIDs even if present")] = False,
) -> None:
    """Run the main job end to end on embedded defaults (no network) and print where to look next."""
    from trainers.demo import DemoConfig, run_demo

    ws = open_ws(workspace)
    cfg = DemoConfig(users=users, skeleton_users=skeleton_users, align_users=align_users, max_tokens=max_tokens,
                     train=train, rebuild=rebuild, progress=True)
    result = run_demo(ws, cfg,
                      on_stage=lambda _name, title: console.rule(f"[bold]{title}"))

    table = Table(title=f"recot demo — workspace {ws.root} ({result.seconds:.0f}s)")
    for col in ("step", "result", "time"):
        table.add_column(col)
    for st in result.stages:
        table.add_row(st.name, st.summary, "0s" if st.skipped else f"{st.seconds:.1f}s")
    console.print(table)
    console.print(f"next: [bold]recot ui --workspace {workspace}[/bold]  (viewer on http://127.0.0.1:8501) · "
                  f"[bold]recot curate report -w {workspace}[/bold] · [bold]recot review up -w {workspace}[/bold]")
