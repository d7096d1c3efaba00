"""`recot demo`: the main job end to end on embedded defaults, with no network —
ingest MovieLens-100k (shipped in an installed package) → SIDs (packaged MiniLM + residual K-means) →
deterministic alignment corpus + a small CoT batch with the embedded teacher → curation → a workspace the
viewer opens. Optionally SFT for a few steps and evaluate on CPU (`--train`).

Each step is a call into the packages (the same functions the other commands use); the command only
sequences them. Re-running resumes: ingest and SIDs are skipped when present, teacher requests come from
the durable cache, and sample ids are deterministic.
"""
from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws

ALIGNMENT_TASKS = ("align_item", "align_token", "align_relational", "r0_item_qa")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    workspace: WorkspaceOpt = DEFAULT_WS,
    users: Annotated[int, typer.Option(help="users in the CoT batch (R3 hint + blind, R1, R2) with the embedded teacher")] = 4,
    align_users: Annotated[int, typer.Option(help="users for the user-level alignment task (sliding windows)")] = 100,
    max_tokens: Annotated[int, typer.Option(help="teacher max new tokens per CoT answer")] = 160,
    train: Annotated[bool, typer.Option("--train/--no-train", help="also SFT a few steps on CPU and run `recot eval`")] = False,
    rebuild: Annotated[bool, typer.Option(help="re-ingest and rebuild SIDs even if present")] = False,
) -> None:
    """Run the main job end to end on embedded defaults (no network) and print where to look next."""
    from storage.datasets import DatasetVersion
    from storage.ingest.movielens import ingest_movielens_100k
    from storage.sid_catalog import latest_sid_version
    from synth.sids.build import SidConfig, build_sids
    from synth.tasks.run import run_task
    from curation.chain import run_chain
    from curation.report import funnel

    ws = open_ws(workspace)
    t0 = time.monotonic()
    steps: list[tuple[str, str, str]] = []

    def step(name: str):
        console.rule(f"[bold]{name}")
        return time.monotonic()

    s = step("1/5 ingest MovieLens-100k")
    if rebuild or ws.counts()["items"] == 0:
        rep = ingest_movielens_100k(ws, progress=True)
        steps.append(("ingest", f"{rep.users:,} users, {rep.items:,} items, {rep.interactions:,} interactions",
                      f"{time.monotonic() - s:.1f}s"))
    else:
        steps.append(("ingest", "catalog present (skipped; --rebuild to redo)", "0s"))

    s = step("2/5 semantic IDs (3 x 256, residual K-means)")
    if rebuild or latest_sid_version(ws) is None:
        res = build_sids(ws, SidConfig(), progress=True)
        r = res.report
        steps.append(("sids", f"v{res.sid_version}: collisions {r.get('collision_rate_before', 0):.4f} → "
                      f"{r.get('collision_rate_after', 0):.4f}", f"{time.monotonic() - s:.1f}s"))
    else:
        steps.append(("sids", f"v{latest_sid_version(ws)} present (skipped)", "0s"))

    s = step("3/5 alignment corpus (deterministic, from the catalog)")
    made: list[DatasetVersion] = []
    for task in ALIGNMENT_TASKS:
        made.append(run_task(ws, task, dataset=task, progress=True))
    made.append(run_task(ws, "align_user", dataset="align_user", options={"users": align_users}, progress=True))
    steps.append(("alignment", ", ".join(f"{d.ref} ({d.rows:,})" for d in made), f"{time.monotonic() - s:.1f}s"))

    s = step("4/5 CoT batch with the embedded teacher (SmolLM2-135M-Instruct, CPU)")
    cot = []
    cot_opts = {"users": users, "max_tokens": max_tokens}
    narr = run_task(ws, "align_item_narrative", dataset="align_item_narrative",
                    options={"limit": 2 * users, "max_tokens": max_tokens}, progress=True)
    cot.append(narr)
    # grounding (description -> SID) from the teacher's descriptions
    cot.append(run_task(ws, "r0_grounding", dataset="r0_grounding", options={"source": narr.ref}, progress=True))
    cot.append(run_task(ws, "r3_recommend", dataset="cot", options={**cot_opts, "mode": "hint"}, progress=True))
    cot.append(run_task(ws, "r3_recommend", dataset="cot_blind", options={**cot_opts, "mode": "blind"}, progress=True))
    cot.append(run_task(ws, "r1_derive", dataset="cot_r1", options=cot_opts, progress=True))
    cot.append(run_task(ws, "r2_evolve", dataset="cot_r2", options=cot_opts, progress=True))
    steps.append(("cot", ", ".join(f"{d.ref} ({d.rows})" for d in cot), f"{time.monotonic() - s:.1f}s"))

    s = step("5/5 curation (default chain)")
    curated = []
    for dv in made + cot:
        cv = run_chain(ws, dv, "default", progress=False)
        f = funnel(ws, cv)
        curated.append((cv, f))
    steps.append(("curate", ", ".join(f"{cv.ref}: kept {f.get('kept', '?')}/{f.get('rows', cv.rows)}"
                                      for cv, f in curated), f"{time.monotonic() - s:.1f}s"))

    if train:
        s = step("extra: SFT a few steps on CPU, then eval on the test split")
        from trainers.evaluate import evaluate_model
        from trainers.sft import SFTTrainConfig, train_sft

        src = next(cv for cv, _ in curated if cv.name == "align_item-curated")
        result = train_sft(ws, SFTTrainConfig(dataset=src.ref, max_steps=3, max_samples=64, max_length=192))
        ev = evaluate_model(ws, result.out_dir, ks=(1, 5, 10), max_users=8, num_beams=10)
        m = ev.metrics.get("no_think", {})
        steps.append(("train+eval", f"model {result.out_dir.name}; HR@10 {m.get('HR@10', 0.0):.3f} "
                      f"on {ev.n_users} test users", f"{time.monotonic() - s:.1f}s"))

    table = Table(title=f"recot demo — workspace {ws.root} ({time.monotonic() - t0:.0f}s)")
    for col in ("step", "result", "time"):
        table.add_column(col)
    for row in steps:
        table.add_row(*row)
    console.print(table)
    console.print(f"next: [bold]recot ui --workspace {workspace}[/bold]  (viewer on http://127.0.0.1:8501) · "
                  f"[bold]recot curate report -w {workspace}[/bold] · [bold]recot review up -w {workspace}[/bold]")
