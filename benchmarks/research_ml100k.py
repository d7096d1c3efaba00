"""The results ladder on MovieLens-100k (a benchmark, not a test): what each step of recot's recipe buys, on the
SAME test users with the SAME protocol, CPU only, fixed seeds.

    python benchmarks/research_ml100k.py                   # full ladder (aimed at <= 60 min, 2 idle cores)
    python benchmarks/research_ml100k.py --quick           # the same rows, a few steps each, the first 100 test users
    python benchmarks/research_ml100k.py --budget-scale 0.5 --users 0

Workspace (built once under --workspace, reused when present): ingest MovieLens-100k from its installed package
→ SIDs (MiniLM + residual K-means, 3 × 256) → sliding-window R3 direct answers over TRAIN histories
(`trainers.windows`) → three-level CoT for R3 from the skeleton teacher (`skeleton:v1`, r3_recommend v2, hint
mode, think and no-think variants) → the default curation chain over the CoT.

Protocol (every row): leave-last-out — each user's test item is the target; the prompt shows the user's last
`HISTORY` train+valid items as SIDs only (history_format=sid, no dates: the same prompt the windows and the
CoT corpus were built with); candidates are all catalog items; `--exclude-seen` (default on) removes each
user's train+valid items from every ranked list, models included (trie pruning in `trainers.decoding`); K = 10
constrained beams; HR@K / NDCG@K from `trainers.metrics`. The test users are the first `--users` users in id
order (0 = all 943), identical for every row.

Model (every trained row): `scratch-L2-H256` — a 2-layer Llama, hidden 256, 4 heads, tied embeddings,
initialised from scratch (seed 0) with SmolLM2-135M's tokenizer + the SID tokens (`trainers.models`). Why
not the embedded SmolLM2 or its first layers: see docs/results.md (calibration).

Rows:
  baselines: random, most-popular (train split), item-kNN (`trainers.baselines`);
  sft-direct: scratch → SFT on R3 windows (no-think direct answers);
  align→sft-direct: scratch → alignment pretraining on the catalog corpus (item SID ↔ title lines, train
      histories as SID sequences) → the same SFT;
  +cot(think_ratio=0.5): align→sft-direct → SFT on the skeleton CoT corpus, half thinking rows; evaluated
      think, no-think and race (5 think + 5 no-think candidates, think first);
  +grpo: +cot → a short GRPO on window prompts (catalog rewards);
  cot think_ratio=0 / 1: align→sft-direct → SFT on the CoT corpus with only no-think rows / only thinking rows,
      both evaluated no-think (thinking-supervision transfer).

Writes benchmarks/results/research_ml100k.json and the measured block of docs/results.md (between its markers).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

HISTORY = 10          # items shown in every prompt (windows, CoT corpus, evaluation)
K = 10
SEED = 0
MODEL_NAME = "scratch-L2-H128"
MODEL_SPEC = dict(layers=2, hidden=128, heads=4)
WINDOWS = "r3_windows_sid"   # answers are the target SID alone (what the evaluation reads); see docs/results.md

# Full-budget steps (x --budget-scale). Batch sizes are fixed, so a step is the same work in every mode.
STEPS = {"pretrain": 100, "sft": 150, "cot": 40, "grpo": 10, "transfer": 40}
BATCH = {"pretrain": 8, "sft": 64, "cot": 8, "grpo": 8, "transfer": 8}
# --quick: a fixed small profile for a busy machine (same rows, same batch sizes, fewer steps and users)
QUICK_STEPS = {"pretrain": 10, "sft": 20, "cot": 10, "grpo": 2, "transfer": 10}
QUICK_USERS = 100
FULL_USERS = 500      # the first 500 test users (of 943): the evaluation budget; baselines also on all users

log = logging.getLogger("research_ml100k")
# --resume: stages and rows of an interrupted run (its ladder-<model>/partial.json), reused instead of recomputed
RESUME: dict[str, dict[str, Any]] = {"stages": {}, "rows": {}}


def stamp(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ workspace
def build_workspace(ws) -> dict[str, Any]:
    """Ingest → SIDs → windows → skeleton CoT → curation. Each step is skipped when its output exists."""
    from storage.datasets import list_versions
    from trainers.demo import ingest, sids

    t0 = time.monotonic()
    out: dict[str, Any] = {}
    out["ingest"] = ingest(ws, progress=False).summary
    s = sids(ws, progress=False)
    out["sids"] = s.summary
    have = {dv.name: dv for dv in list_versions(ws)}
    if WINDOWS not in have:
        from trainers.windows import write_r3_windows

        have[WINDOWS] = write_r3_windows(ws, WINDOWS, max_history=HISTORY, min_history=3, history_format="sid",
                                         dates=False, answer_format="{sid}")
    out["windows"] = {"ref": have[WINDOWS].ref, "rows": have[WINDOWS].rows, "answer": "{sid}"}
    if "cot_skeleton" not in have:
        from synth.tasks.run import run_task

        have["cot_skeleton"] = run_task(ws, "r3_recommend", teacher="skeleton:v1", dataset="cot_skeleton", options={
            "mode": "hint", "think": "both", "history_format": "sid", "dates": False, "max_history": HISTORY,
            "template_version": 2, "cross_domain": "off", "seed": SEED})
    out["cot"] = {"ref": have["cot_skeleton"].ref, "rows": have["cot_skeleton"].rows}
    if "cot_skeleton-curated" not in have:
        from curation.chain import run_chain

        have["cot_skeleton-curated"] = run_chain(ws, have["cot_skeleton"], "default", progress=False)
    cv = have["cot_skeleton-curated"]
    kept = ws.query(f"SELECT count(*) FILTER (WHERE keep), count(*) FILTER (WHERE keep AND think) "
                    f"FROM read_parquet('{cv.glob}')")[0]
    out["cot_curated"] = {"ref": cv.ref, "rows": cv.rows, "kept": kept[0], "kept_think": kept[1]}
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


# ------------------------------------------------------------------------------------------------ evaluation
class Harness:
    """The same test users, prompts and protocol for every row."""

    def __init__(self, ws, *, users: int, exclude_seen: bool, think_budget: int, batch_size: int):
        from storage.sid_catalog import SidCatalog, latest_sid_version
        from trainers.evaluate import test_cases

        self.ws = ws
        self.sid_version = latest_sid_version(ws)
        self.catalog = SidCatalog.load(ws, self.sid_version)
        self.cases = test_cases(ws, self.sid_version, max_users=users or None, max_history=HISTORY)
        self.targets = [c["target_sid"] for c in self.cases]
        self.exclude = [set(c["seen_sids"]) for c in self.cases] if exclude_seen else None
        self.exclude_seen, self.think_budget, self.batch_size = exclude_seen, think_budget, batch_size

    def prompts(self, think: bool) -> list[list[dict]]:
        from trainers.prompts import r3_messages

        return [r3_messages(c["history"], think=think, history_format="sid", dates=False) for c in self.cases]

    def metrics(self, ranked: list[list[str]]) -> dict[str, float]:
        from trainers.metrics import ranking_metrics

        m = ranking_metrics(ranked, self.targets, (1, 5, 10))
        return {k: round(v, 4) for k, v in m.items() if k.startswith(("HR", "NDCG"))}

    def baselines(self) -> dict[str, dict[str, float]]:
        from trainers.baselines import baseline_rankings

        ranked = baseline_rankings(self.ws, self.cases, self.catalog, K, exclude_seen=self.exclude_seen, seed=SEED)
        return {name: self.metrics(r) for name, r in ranked.items()}

    def model(self, model_dir: Path, modes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        import torch

        from trainers.decoding import decode
        from trainers.evaluate import load_for_eval
        from trainers.metrics import race_merge

        torch.manual_seed(SEED)
        model, tok = load_for_eval(model_dir, self.ws, self.sid_version)
        out: dict[str, dict[str, Any]] = {}
        ranked: dict[bool, list[list[str]]] = {}
        for think in sorted({m != "no_think" for m in modes} | ({True, False} if "race" in modes else set())):
            t0 = time.monotonic()
            dec = decode(model, tok, self.catalog.trie, self.prompts(think), think=think, num_beams=K,
                         think_budget=self.think_budget, batch_size=self.batch_size, exclude=self.exclude)
            ranked[think] = [d.sids for d in dec]
            mode = "think" if think else "no_think"
            if mode in modes:
                out[mode] = {**self.metrics(ranked[think]), "eval_s": round(time.monotonic() - t0, 1)}
                if think:
                    out[mode]["closed_think"] = round(sum(d.closed for d in dec) / len(dec), 3)
        if "race" in modes:
            merged = [race_merge(t, n, K) for t, n in zip(ranked[True], ranked[False])]
            out["race"] = self.metrics(merged)
        return out


# ------------------------------------------------------------------------------------------------ training
def rl_rollout(kind: str) -> dict[str, Any]:
    """GRPO's completions: free sampling, or MiniOneRec's constrained beams (`trainers.rl`, `rollout: beam`):
    an untrained model's free samples almost never name a catalog SID, so every catalog reward is 0."""
    return {} if kind == "sample" else {"rollout": kind}


def steps(kind: str, scale: float, quick: bool = False) -> int:
    if quick:
        return QUICK_STEPS[kind]
    return max(2, int(round(STEPS[kind] * scale)))


def train(kind: str, ws, workdir: Path, name: str, *, model: Path, dataset: str | None, n_steps: int, lr: float,
          max_length: int, **extra: Any) -> tuple[Path, dict[str, Any]]:
    """One training stage through recot's trainers; returns (model folder, its record)."""
    from trainers.common import LINEAGE_FILE
    from trainers.config import load_config

    out = workdir / name
    if name in RESUME["stages"] and (out / LINEAGE_FILE).exists():   # --resume: this stage finished before
        stamp(f"resumed {name} from {out}")
        return out, {**RESUME["stages"][name], "resumed": True}
    bs = BATCH[extra.pop("batch_key", kind)]
    common = dict(model=str(model), dataset=dataset, out=str(out), max_steps=n_steps, per_device_train_batch_size=bs,
                  learning_rate=lr, max_length=max_length, seed=SEED, logging_steps=max(1, n_steps // 10),
                  max_samples=extra.pop("max_samples", None))
    trl = {"lr_scheduler_type": "cosine", "warmup_steps": max(1, n_steps // 20), **extra.pop("trl", {})}
    t0 = time.monotonic()
    if kind == "pretrain":
        from trainers.pretrain import PretrainConfig, train_pretrain

        res = train_pretrain(ws, load_config(PretrainConfig, None, None, **common, trl=trl, **extra))
    elif kind == "sft":
        from trainers.sft import SFTTrainConfig, train_sft

        res = train_sft(ws, load_config(SFTTrainConfig, None, None, **common, trl=trl, **extra))
    elif kind == "rl":
        from trainers.rl import RLConfig, train_rl

        res = train_rl(ws, load_config(RLConfig, None, None, **common, trl=trl, **extra))
    else:
        raise ValueError(kind)
    rec = {"stage": name, "trainer": kind, "base": model.name, "dataset": dataset, "steps": n_steps, "batch": bs,
           "samples_seen": n_steps * bs, "lr": lr, "seconds": round(time.monotonic() - t0, 1),
           "loss": res.metrics.get("loss"), "reward": res.metrics.get("reward"), "run_id": res.run_id, **extra}
    stamp(f"trained {name}: {n_steps} steps × {bs} in {rec['seconds']} s; loss {rec['loss']}")
    return res.out_dir, rec


# ------------------------------------------------------------------------------------------------ ladder
def run(args: argparse.Namespace) -> dict[str, Any]:
    from storage.workspace import Workspace
    from trainers.models import scratch_model

    t_start = time.monotonic()
    scale = args.budget_scale
    ws = Workspace.open(args.workspace)
    work = Path(args.workspace) / f"ladder-{MODEL_NAME}"
    stamp(f"workspace {args.workspace}")
    data = build_workspace(ws)
    stamp(f"data ready: {json.dumps(data)}")
    h = Harness(ws, users=args.users, exclude_seen=args.exclude_seen, think_budget=args.think_budget,
                batch_size=args.eval_batch)
    stamp(f"{len(h.cases)} test users")
    rows: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    prior_wall = 0.0   # wall time of the interrupted attempts a --resume continues (the total is reported)

    if args.resume and (work / "partial.json").exists():
        prior = json.loads((work / "partial.json").read_text())
        RESUME["stages"] = {st["stage"]: st for st in prior["stages"]}
        prior_wall = float(prior.get("wall_s", 0.0))
        for r in prior["rows"]:
            kept = {k: v for k, v in r.items() if k not in ("row", "mode")}
            RESUME["rows"].setdefault(r["row"], {})[r["mode"]] = kept
        stamp(f"resuming: stages {sorted(RESUME['stages'])}, rows {sorted(RESUME['rows'])}")

    def add(row: str, metrics: dict[str, dict[str, Any]], **info: Any) -> None:
        for mode, m in metrics.items():
            rows.append({"row": row, "mode": mode, **m, **info})
            stamp(f"{row} [{mode}]: HR@10 {m.get('HR@10')} NDCG@10 {m.get('NDCG@10')}")
        partial = {"rows": rows, "stages": stages, "wall_s": round(prior_wall + time.monotonic() - t_start, 1)}
        (work / "partial.json").write_text(json.dumps(partial, indent=2, default=str))

    def evaluate(row: str, model_dir: Path, modes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        done = RESUME["rows"].get(row, {})
        if all(m in done for m in modes):
            return {m: {k: v for k, v in done[m].items() if k not in ("model", "train_s")} for m in modes}
        return h.model(model_dir, modes)

    work.mkdir(parents=True, exist_ok=True)
    for name, m in h.baselines().items():
        add(name, {"-": m}, model="-")
    everyone = h if not args.users else Harness(ws, users=0, exclude_seen=args.exclude_seen,
                                                think_budget=args.think_budget, batch_size=args.eval_batch)
    baselines_all = {"test_users": len(everyone.cases), **everyone.baselines()}
    stamp(f"baselines on all {len(everyone.cases)} test users: {baselines_all}")

    init = work / "init"
    if not (init / "config.json").exists():
        scratch_model(ws, init, seed=SEED, **MODEL_SPEC)
    win, cot = data["windows"]["ref"], data["cot_curated"]["ref"]
    n_sft = steps("sft", scale, args.quick)

    # 1. SFT no-think on R3 direct answers (windows)
    m_direct, rec = train("sft", ws, work, "sft-direct", model=init, dataset=win, n_steps=n_sft, lr=1e-3,
                          max_length=192, max_samples=n_sft * BATCH["sft"])
    stages.append(rec)
    add("sft-direct", evaluate("sft-direct", m_direct, ("no_think",)), model=MODEL_NAME, train_s=rec["seconds"])

    # 2. alignment pretraining (catalog corpus) → the same SFT
    m_align, rec = train("pretrain", ws, work, "align", model=init, dataset=None,
                         n_steps=steps("pretrain", scale, args.quick), lr=1e-3, max_length=256)
    stages.append(rec)
    m_align_sft, rec2 = train("sft", ws, work, "align-sft-direct", model=m_align, dataset=win, n_steps=n_sft,
                              lr=1e-3, max_length=192, max_samples=n_sft * BATCH["sft"])
    stages.append(rec2)
    add("align→sft-direct", evaluate("align→sft-direct", m_align_sft, ("no_think",)), model=MODEL_NAME,
        train_s=round(rec["seconds"] + rec2["seconds"], 1))

    # 3. + SFT on the skeleton teacher's three-level CoT (half thinking rows): think / no-think / race
    n_cot = steps("cot", scale, args.quick)
    m_cot, rec = train("sft", ws, work, "cot-mix", model=m_align_sft, dataset=cot, n_steps=n_cot, lr=5e-4,
                       max_length=768, think_ratio=0.5, batch_key="cot")
    stages.append(rec)
    add("+cot (think_ratio 0.5)", evaluate("+cot (think_ratio 0.5)", m_cot, ("no_think", "think", "race")),
        model=MODEL_NAME,
        train_s=rec["seconds"])

    # 4. thinking-supervision transfer: the same CoT prompts, only no-think rows vs only thinking rows
    n_tr = steps("transfer", scale, args.quick)
    for ratio in (0.0, 1.0):
        m_tr, rec = train("sft", ws, work, f"cot-ratio{int(ratio)}", model=m_align_sft, dataset=cot, n_steps=n_tr,
                          lr=5e-4, max_length=768, think_ratio=ratio, batch_key="transfer")
        stages.append(rec)
        add(f"cot think_ratio {ratio:g}", evaluate(f"cot think_ratio {ratio:g}", m_tr, ("no_think",)),
            model=MODEL_NAME, train_s=rec["seconds"])

    # 5. + a short GRPO on window prompts (run last, listed before the transfer rows; catalog rewards)
    n_rl = steps("grpo", scale, args.quick)
    try:
        m_rl, rec = train("rl", ws, work, "grpo", model=m_cot, dataset=win, n_steps=n_rl, lr=1e-5, max_length=256,
                          max_samples=n_rl * BATCH["grpo"], num_generations=4, max_completion_length=24,
                          temperature=1.0, batch_key="grpo", **rl_rollout(args.rl_rollout))
        stages.append(rec)
        add("+grpo", evaluate("+grpo", m_rl, ("no_think",)), model=MODEL_NAME, train_s=rec["seconds"])
    except Exception as e:  # recorded as a failed row, never silently dropped; the other rows still run
        log.exception("GRPO stage failed")
        rows.append({"row": "+grpo", "mode": "failed", "model": MODEL_NAME, "error": f"{type(e).__name__}: {e}"})

    total = prior_wall + time.monotonic() - t_start
    order = ["random", "popular", "item_knn", "sft-direct", "align→sft-direct", "+cot (think_ratio 0.5)", "+grpo",
             "cot think_ratio 0", "cot think_ratio 1"]
    rows.sort(key=lambda r: order.index(r["row"]) if r["row"] in order else len(order))
    best = max((r for r in rows if r["model"] != "-" and "error" not in r), key=lambda r: r.get("HR@10", 0.0))
    pop = next(r for r in rows if r["row"] == "popular")
    return {
        "benchmark": "research_ml100k", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else ("full" if scale == 1.0 else f"budget-scale {scale}"),
        "steps": {k: steps(k, scale, args.quick) for k in STEPS},
        "budget_scale": scale, "command": " ".join(["python", "benchmarks/research_ml100k.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "python": platform.python_version()},
        "protocol": {"split": "leave-last-out (test item per user; history = train+valid)", "history_items": HISTORY,
                     "history_format": "sid", "dates": False, "exclude_seen": args.exclude_seen, "k": K,
                     "beams": K, "think_budget": args.think_budget, "test_users": len(h.cases),
                     "users_option": args.users,
                     "race": "5 think + 5 no-think, think first (trainers.metrics.race_merge)"},
        "model": {"name": MODEL_NAME, **MODEL_SPEC, "init": "from scratch, seed 0",
                  "tokenizer": "SmolLM2-135M-Instruct + SID tokens"},
        "data": data, "stages": stages, "rows": rows, "resumed": sorted(RESUME["stages"]),
        "goal": {"best_row": best["row"], "best_mode": best["mode"], "best_HR@10": best.get("HR@10"),
                 "popular_HR@10": pop.get("HR@10"), "beats_popular": best.get("HR@10", 0) > pop.get("HR@10", 0)},
        "baselines_all_users": baselines_all, "rl_rollout": args.rl_rollout,
        "wall_s": round(total, 1), "wall_s_this_attempt": round(time.monotonic() - t_start, 1),
    }


BEGIN, END = "<!-- ladder:begin (written by benchmarks/research_ml100k.py) -->", "<!-- ladder:end -->"


def render_table(result: dict[str, Any]) -> str:
    """The measured block of docs/results.md: table, protocol, command, wall times — from the JSON only."""
    p, m, g = result["protocol"], result["model"], result["goal"]
    lines = [
        f"Run: `{result['command']}` — mode **{result['mode']}** (steps per stage {result['steps']}), "
        f"{result['created_at']}, wall time **{result['wall_s'] / 60:.1f} min** on {result['machine']['cpus']} "
        f"cores (1-min load average at the end: {result['machine']['load_avg_at_end'][0]:.1f}).",
        "",
        f"Test users: **{p['test_users']}** (the first by user id), leave-last-out, history = the last "
        f"{p['history_items']} train+valid items as SIDs only (no titles, no dates), candidates = all catalog items, "
        f"seen items excluded: **{'yes' if p['exclude_seen'] else 'no'}** (every row), {p['beams']} constrained "
        f"beams, think budget {p['think_budget']} tokens. Model of every trained row: **{m['name']}** "
        f"({m['layers']} layers, hidden {m['hidden']}, {m['heads']} heads, {m['init']}, {m['tokenizer']}).",
        "",
        "| row | mode | HR@1 | HR@5 | HR@10 | NDCG@10 | train s | eval s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['row']} | failed: {r['error'][:120]} | | | | | | |")
            continue
        lines.append(f"| {r['row']} | {r['mode']} | {r.get('HR@1', 0):.4f} | {r.get('HR@5', 0):.4f} | "
                     f"{r.get('HR@10', 0):.4f} | {r.get('NDCG@10', 0):.4f} | {r.get('train_s', '')} | "
                     f"{r.get('eval_s', '')} |")
    ball = result.get("baselines_all_users")
    if ball and ball["test_users"] != p["test_users"]:
        lines += ["", f"The baselines on all {ball['test_users']} test users (same protocol): " + ", ".join(
            f"{name} HR@10 {m['HR@10']:.4f} / NDCG@10 {m['NDCG@10']:.4f}" for name, m in ball.items()
            if name != "test_users") + "."]
    lines += ["", "Training stages (steps × batch = samples seen, seconds, first → last logged loss):", ""]
    for st in result["stages"]:
        loss = st.get("loss") or {}
        data = st["dataset"] or "catalog corpus"
        lines.append(f"- `{st['stage']}` ({st['trainer']}, from `{st['base']}`, data `{data}`"
                     f"{', think_ratio ' + str(st['think_ratio']) if 'think_ratio' in st else ''}): "
                     f"{st['steps']} × {st['batch']} = {st['samples_seen']:,} samples, {st['seconds']} s, loss "
                     f"{loss.get('first', float('nan')):.3f} → {loss.get('last', float('nan')):.3f}")
    verdict = "beats" if g["beats_popular"] else "does **not** beat"
    lines += ["", f"Goal: the best trained row ({g['best_row']}, {g['best_mode']}: HR@10 {g['best_HR@10']}) {verdict} "
              f"most-popular (HR@10 {g['popular_HR@10']}) on the same users."]
    return "\n".join(lines)


def write_docs(result: dict[str, Any], path: Path) -> None:
    """Replace the measured block of docs/results.md (between the markers); the rest is hand-written."""
    text = path.read_text() if path.exists() else f"# Results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{render_table(result)}\n{END}{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", default="/tmp/recot-research-ml100k", help="built once, reused when present")
    p.add_argument("--quick", action="store_true", help=f"steps {QUICK_STEPS}, the first {QUICK_USERS} test users")
    p.add_argument("--budget-scale", type=float, default=None, help="multiply every stage's steps (default 1)")
    p.add_argument("--users", type=int, default=None, help="test users (first N by id; 0 = all)")
    p.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--think-budget", type=int, default=448, help="reasoning tokens before </think> is forced")
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--rl-rollout", choices=("beam", "sample"), default="beam",
                   help="GRPO completions: constrained beams over the SID trie (MiniOneRec) or free sampling")
    p.add_argument("--resume", action="store_true", help="reuse the stages and rows an interrupted run finished "
                                                          "(<workspace>/ladder-<model>/partial.json)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "research_ml100k.json"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results.md"), help="'' to leave the docs alone")
    args = p.parse_args()
    if args.budget_scale is None:
        args.budget_scale = 1.0
    if args.users is None:
        args.users = QUICK_USERS if args.quick else FULL_USERS
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.manual_seed(SEED)
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.docs:
        write_docs(result, Path(args.docs))
    stamp(f"wrote {args.out} ({result['wall_s']} s); goal: {result['goal']}")


if __name__ == "__main__":
    main()
