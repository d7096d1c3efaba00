"""The demo pipeline — the main job end to end on embedded defaults, with no network: ingest MovieLens-100k
(shipped in an installed package) → SIDs (packaged MiniLM + residual K-means) → a deterministic alignment
corpus + a three-level cognition CoT corpus from the skeleton teacher (no model: the data-derived cognition
skeleton verbalized, a baseline and a demonstration) + a small CoT batch with the embedded teacher → curation;
optionally SFT for a few steps and evaluate on CPU.

One function per stage, each a call into the packages (the same functions the other commands use) that
returns what it made; `run_demo` sequences them. `recot demo` (ui/commands/demo.py) prints the result and
the end-to-end test asserts on it. Re-running resumes: ingest and SIDs are skipped when present, teacher requests
come from the durable cache, and sample ids are deterministic.

It lives in trainers/ because it is the most downstream package: it may call every other one.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage.datasets import DatasetVersion
from storage.workspace import Workspace

ALIGNMENT_TASKS = ("align_item", "align_token", "align_relational", "r0_item_qa")
# (name, title) of each stage, in order; the title is what the CLI shows as the stage starts.
STAGES = (
    ("ingest", "1/6 ingest MovieLens-100k"),
    ("sids", "2/6 semantic IDs (3 x 256, residual K-means)"),
    ("alignment", "3/6 alignment corpus (deterministic, from the catalog)"),
    ("cot_skeleton", "4/6 three-level CoT from the skeleton teacher (skeleton:v1, no model)"),
    ("cot", "5/6 CoT batch with the embedded teacher (SmolLM2-135M-Instruct, CPU)"),
    ("curate", "6/6 curation (default chain)"),
    ("train+eval", "extra: SFT a few steps on CPU, then eval on the test split"),
)


@dataclass
class DemoConfig:
    users: int = 4           # users in the CoT batch (R3 hint + blind, R1, R2)
    skeleton_users: int = 200  # users in the skeleton-teacher R3 corpus (hint mode, three-level v2 template)
    align_users: int = 100   # users for the user-level alignment task (sliding windows)
    max_tokens: int = 160    # teacher max new tokens per CoT answer
    train: bool = False      # also SFT a few steps on CPU and evaluate
    rebuild: bool = False    # re-ingest and rebuild SIDs even if present
    progress: bool = True


@dataclass
class StageResult:
    """One stage: a one-line summary, its time, and the dataset versions it wrote."""

    name: str
    summary: str
    seconds: float = 0.0
    skipped: bool = False
    outputs: list[DatasetVersion] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)


def ingest(ws: Workspace, *, rebuild: bool = False, progress: bool = True) -> StageResult:
    from storage.ingest.movielens import ingest_movielens_100k

    t0 = time.monotonic()
    if not rebuild and ws.counts()["items"] > 0:
        return StageResult("ingest", "catalog present (skipped; --rebuild to redo)", skipped=True)
    rep = ingest_movielens_100k(ws, progress=progress)
    return StageResult("ingest", f"{rep.users:,} users, {rep.items:,} items, {rep.interactions:,} interactions",
                       time.monotonic() - t0)


def sids(ws: Workspace, *, rebuild: bool = False, progress: bool = True) -> StageResult:
    from storage.sid_catalog import latest_sid_version
    from synth.sids.build import SidConfig, build_sids

    t0 = time.monotonic()
    present = latest_sid_version(ws)
    if not rebuild and present is not None:
        return StageResult("sids", f"v{present} present (skipped)", skipped=True, details={"sid_version": present})
    res = build_sids(ws, SidConfig(), progress=progress)
    r = res.report
    return StageResult("sids", f"v{res.sid_version}: collisions {r.get('collision_rate_before', 0):.4f} → "
                       f"{r.get('collision_rate_after', 0):.4f}", time.monotonic() - t0,
                       details={"sid_version": res.sid_version, "report": r})


def alignment(ws: Workspace, *, align_users: int = 100, progress: bool = True) -> StageResult:
    from synth.tasks.run import run_task

    t0 = time.monotonic()
    made = [run_task(ws, task, dataset=task, progress=progress) for task in ALIGNMENT_TASKS]
    made.append(run_task(ws, "align_user", dataset="align_user", options={"users": align_users},
                         progress=progress))
    return StageResult("alignment", ", ".join(f"{d.ref} ({d.rows:,})" for d in made), time.monotonic() - t0,
                       outputs=made)


def cot_skeleton(ws: Workspace, *, users: int = 200, progress: bool = True) -> StageResult:
    """R3 three-level traces (template v2, hint mode) written by the skeleton teacher: every claim comes from the
    user's train history, so the corpus is structurally right and grounded — labelled `skeleton:v1` everywhere."""
    from synth.tasks.run import run_task
    from synth.teacher.config import TeacherConfig

    t0 = time.monotonic()
    dv = run_task(ws, "r3_recommend", dataset="cot_skeleton", teacher=TeacherConfig(backend="skeleton", model="v1"),
                  options={"users": users, "mode": "hint"}, progress=progress)
    return StageResult("cot_skeleton", f"{dv.ref} ({dv.rows})", time.monotonic() - t0, outputs=[dv])


def cot(ws: Workspace, *, users: int = 4, max_tokens: int = 160, progress: bool = True) -> StageResult:
    from synth.tasks.run import run_task

    t0 = time.monotonic()
    opts = {"users": users, "max_tokens": max_tokens}
    narr = run_task(ws, "align_item_narrative", dataset="align_item_narrative",
                    options={"limit": 2 * users, "max_tokens": max_tokens}, progress=progress)
    made = [
        narr,
        # grounding (description -> SID) from the teacher's descriptions
        run_task(ws, "r0_grounding", dataset="r0_grounding", options={"source": narr.ref}, progress=progress),
        run_task(ws, "r3_recommend", dataset="cot", options={**opts, "mode": "hint"}, progress=progress),
        run_task(ws, "r3_recommend", dataset="cot_blind", options={**opts, "mode": "blind"}, progress=progress),
        run_task(ws, "r1_derive", dataset="cot_r1", options=opts, progress=progress),
        run_task(ws, "r2_evolve", dataset="cot_r2", options=opts, progress=progress),
    ]
    return StageResult("cot", ", ".join(f"{d.ref} ({d.rows})" for d in made), time.monotonic() - t0, outputs=made)


def curate(ws: Workspace, versions: list[DatasetVersion]) -> StageResult:
    """The default chain over each version; `details["funnels"]` maps each curated ref to its funnel."""
    from curation.chain import run_chain
    from curation.report import funnel

    t0 = time.monotonic()
    curated, funnels = [], {}
    for dv in versions:
        cv = run_chain(ws, dv, "default", progress=False)
        curated.append(cv)
        funnels[cv.ref] = funnel(ws, cv)
    summary = ", ".join(f"{cv.ref}: kept {funnels[cv.ref].get('kept', '?')}/{funnels[cv.ref].get('rows', cv.rows)}"
                        for cv in curated)
    return StageResult("curate", summary, time.monotonic() - t0, outputs=curated, details={"funnels": funnels})


def train_and_eval(ws: Workspace, curated: list[DatasetVersion]) -> StageResult:
    """SFT a few steps on the curated item-alignment corpus, then HR/NDCG on a few test users."""
    from trainers.evaluate import evaluate_model
    from trainers.sft import SFTTrainConfig, train_sft

    t0 = time.monotonic()
    src = next(cv for cv in curated if cv.name == "align_item-curated")
    result = train_sft(ws, SFTTrainConfig(dataset=src.ref, max_steps=3, max_samples=64, max_length=192))
    ev = evaluate_model(ws, result.out_dir, ks=(1, 5, 10), max_users=8, num_beams=10, baselines=True)
    m, pop = ev.metrics.get("no_think", {}), ev.metrics.get("popular", {})
    return StageResult("train+eval", f"model {result.out_dir.name}; HR@10 {m.get('HR@10', 0.0):.3f} vs "
                       f"most-popular {pop.get('HR@10', 0.0):.3f} on the same {ev.n_users} test users",
                       time.monotonic() - t0,
                       details={"model_dir": result.out_dir, "metrics": ev.metrics})


def run_demo(ws: Workspace, cfg: DemoConfig | None = None, *,
             on_stage: Callable[[str, str], None] | None = None) -> DemoResult:
    """Run every stage in order; `on_stage(name, title)` is called as each one starts (the CLI prints it)."""
    cfg = cfg or DemoConfig()
    titles = dict(STAGES)
    t0 = time.monotonic()
    out = DemoResult()

    def start(name: str) -> None:
        if on_stage is not None:
            on_stage(name, titles[name])

    start("ingest")
    out.stages.append(ingest(ws, rebuild=cfg.rebuild, progress=cfg.progress))
    start("sids")
    out.stages.append(sids(ws, rebuild=cfg.rebuild, progress=cfg.progress))
    start("alignment")
    made = alignment(ws, align_users=cfg.align_users, progress=cfg.progress)
    out.stages.append(made)
    start("cot_skeleton")
    skeleton = cot_skeleton(ws, users=cfg.skeleton_users, progress=cfg.progress)
    out.stages.append(skeleton)
    start("cot")
    teacher = cot(ws, users=cfg.users, max_tokens=cfg.max_tokens, progress=cfg.progress)
    out.stages.append(teacher)
    start("curate")
    curated = curate(ws, made.outputs + skeleton.outputs + teacher.outputs)
    out.stages.append(curated)
    if cfg.train:
        start("train+eval")
        out.stages.append(train_and_eval(ws, curated.outputs))
    out.seconds = time.monotonic() - t0
    return out
