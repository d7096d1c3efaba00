"""`recot train rft`: rejection-sampling fine-tuning (a.k.a. expert iteration / STaR with outcome checks).

Each round: sample `n` completions per prompt from the CURRENT model through the teacher engine (local
backend pointed at the model folder, so sampling gets the engine's cache, batching and accounting; or, with
`sampler: constrained`, in-process and two-stage — the reasoning sampled freely up to `think_budget` tokens,
then the answer sampled inside the SID trie after `</think>`, so every answer is a catalog SID), keep
the correct ones with curation's outcome check (`curation.rewards`: well-formed answer whose first SID is the
reference; at most `keep_per_prompt` per prompt), SFT on them, and continue from the new weights.
Accepted samples of each round are written as a dataset version (SAMPLE_SCHEMA) with the prompt dataset as
parent, so every RFT step is traceable like a synth step.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from curation.rewards import answer_sids, exact_hit, format_reward, prefix_partial_reward
from storage.answer import reasoning_and_answer
from storage.datasets import write_version
from storage.errors import ConfigError, RecotError
from storage.records import samples_from_pylist, stable_id
from storage.workspace import Workspace
from trainers.common import (
    TrainResult,
    base_model_path,
    default_out_dir,
    finish,
    load_model_and_tokenizer,
    model_lineage,
    resolve_sid_version,
    save_model,
    training_run,
)
from trainers.config import TrainConfig
from trainers.export import to_grpo_dataset
from trainers.sft import build_sft_trainer

log = logging.getLogger(__name__)


class RFTConfig(TrainConfig):
    rounds: int = 1
    n: int = 4                               # samples per prompt per round
    temperature: float = 1.0
    max_new_tokens: int = 48                 # engine sampler: completion tokens
    think_budget: int = 1024                 # constrained sampler: reasoning tokens before </think> is forced
    keep_per_prompt: int = 1                 # best-k correct samples kept per prompt
    min_reward: float = 1.0                  # keep when prefix-partial reward (no bonus) ≥ this; 1.0 = exact
    levels: list[str] | None = None
    tasks: list[str] | None = None
    teacher_batch_size: int = 4              # local backend batch (TeacherConfig.local_batch_size)
    # engine: the teacher engine's local backend on the model folder (cache, accounting; the default);
    # constrained: in-process sampling whose answers are always catalog SIDs (trainers.decoding) — useful
    # when the model does not yet emit well-formed SIDs on its own
    sampler: Literal["engine", "constrained"] = "engine"
    # specialize-then-unify: domain → specialist model folder; each prompt is sampled from its domain's
    # specialist (domains not listed: from the current model), the kept samples train the current model
    specialists: dict[str, str] = Field(default_factory=dict)

    @field_validator("specialists", mode="before")
    @classmethod
    def _specialists_from_text(cls, v: Any) -> Any:
        """`--specialists books=DIR_A,movies=DIR_B` → {books: DIR_A, movies: DIR_B}."""
        if isinstance(v, str):
            pairs = [p.strip() for p in v.split(",") if p.strip()]
            bad = [p for p in pairs if "=" not in p]
            if bad:
                raise ValueError(f"specialists: expected DOMAIN=MODEL_DIR pairs, got {bad[0]!r}")
            return dict(p.split("=", 1) for p in pairs)
        return v


def specialist_groups(domains: list[str], cfg: RFTConfig) -> list[tuple[str | None, list[int]]]:
    """(specialist folder or None = the current model, prompt indices) per sampling source."""
    by: dict[str | None, list[int]] = {}
    for i, d in enumerate(domains):
        by.setdefault(cfg.specialists.get(d), []).append(i)
    for path in by:
        if path is not None and not (Path(path) / "config.json").exists():
            raise ConfigError(f"rft: specialist {path} is not a model folder (no config.json)")
    return list(by.items())


def sample_round(ws: Workspace, model_dir: Path, prompts, cfg: RFTConfig, round_id: str) -> list[list[str]]:
    """n completions per prompt from the model in `model_dir`, through the teacher engine."""
    from synth.teacher.config import TeacherConfig
    from synth.teacher.engine import make_engine
    from synth.teacher.types import ChatRequest, SamplingParams

    tcfg = TeacherConfig(backend="local", model=round_id, local_model_path=str(model_dir),
                         local_batch_size=cfg.teacher_batch_size)
    engine = make_engine(tcfg, ws)
    params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_new_tokens, n=cfg.n, seed=cfg.seed)
    reqs = [ChatRequest.from_messages(list(p), params, template_version="rft") for p in prompts]
    responses = engine.run(reqs, progress=False)
    return [r.choices if r.ok else [] for r in responses]


def select_correct(completions: list[str], targets: list[str], think: bool, cfg: RFTConfig) -> list[tuple[float, str]]:
    """(score, text) of the completions that pass the outcome check, best first, at most keep_per_prompt."""
    fmt = format_reward(None, completions, think=[think] * len(completions))
    scored = []
    for text, ok in zip(completions, fmt):
        sids = answer_sids(text)
        if not ok or not sids:
            continue
        score = max(prefix_partial_reward(sids[0], t, valid_sids=None) - 0.1 for t in targets)
        if score >= cfg.min_reward or (cfg.min_reward >= 1.0 and exact_hit(sids[:1], targets)):
            scored.append((score, text))
    scored.sort(key=lambda x: -x[0])
    return scored[:cfg.keep_per_prompt]


def train_rft(ws: Workspace, cfg: RFTConfig) -> TrainResult:
    from datasets import Dataset

    if not cfg.dataset:
        raise ConfigError("rft needs a dataset with R3 prompts: set `dataset:` or pass --dataset NAME@vN")
    if cfg.rounds < 1 or cfg.n < 1:
        raise ConfigError("rft: rounds and n must be ≥ 1")
    dv, prompts_ds = to_grpo_dataset(ws, cfg.dataset, levels=cfg.levels, tasks=cfg.tasks,
                                     max_rows=cfg.max_samples, seed=cfg.seed, domains=cfg.domains)
    base = base_model_path(cfg.model)
    sid_version = resolve_sid_version(ws, cfg.sid_version, dv, base)
    config = cfg.model_dump(mode="json")
    with training_run(ws, "rft", {**config, "dataset": dv.ref, "base_model": base}) as run:
        run_id = run.id
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run_id)
        work = ws.root / "models" / f".{run_id}-rounds"
        model, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                     add_tokens=cfg.add_sid_tokens, bf16=cfg.bf16)
        current = work / "r0"
        save_model(model, tok, current, {"run_id": run_id, "round": 0, "base_model": base})
        rounds, produced, trainer = [], [], None
        groups = specialist_groups(prompts_ds["domain"], cfg)
        for r in range(1, cfg.rounds + 1):
            outs: list[list[str]] = [[] for _ in range(len(prompts_ds))]
            source: list[str] = [""] * len(prompts_ds)
            for spec, idx in groups:
                sub = prompts_ds.select(idx)
                if cfg.sampler == "engine":
                    got = sample_round(ws, Path(spec) if spec else current, sub["prompt"], cfg,
                                       f"rft:{run_id}:r{r}" + (f":{spec}" if spec else ""))
                else:
                    from storage.sid_catalog import SidCatalog
                    from trainers.decoding import sample_constrained

                    sampler_model = model
                    if spec:
                        sampler_model, _, _ = load_model_and_tokenizer(spec, add_tokens=False, bf16=cfg.bf16)
                    got = sample_constrained(sampler_model, tok, SidCatalog.load(ws, sid_version).trie,
                                             sub["prompt"], sub["think"], n=cfg.n, temperature=cfg.temperature,
                                             think_budget=cfg.think_budget, seed=cfg.seed + r)
                for i, o in zip(idx, got):
                    outs[i], source[i] = o, spec or "current"
            rows, sft_rows = [], []
            now = datetime.now(UTC)
            for row, comps, src in zip(prompts_ds, outs, source):
                for score, text in select_correct(comps, row["target_sids"], row["think"], cfg):
                    reasoning, answer = reasoning_and_answer(text)
                    sid = stable_id("rft", run_id, r, row["prompt_id"], text)
                    msgs = list(row["prompt"]) + [{"role": "assistant", "content": text}]
                    rows.append({"sample_id": sid, "prompt_id": row["prompt_id"], "task": row["task"],
                                 "level": row["level"], "mode": "blind", "think": row["think"],
                                 "domain": row["domain"],
                                 "target_sids": row["target_sids"], "messages": msgs, "reasoning": reasoning,
                                 "answer": answer, "answer_sids": answer_sids(text),
                                 "teacher": f"{cfg.sampler}:rft:{run_id}:r{r}" if src == "current"
                                 else f"specialist:{src}", "template_version": "rft",
                                 "run_id": run_id, "sid_version": sid_version, "created_at": now,
                                 "extra": f'{{"round": {r}, "score": {score}}}'})
                    sft_rows.append({"prompt": list(row["prompt"]),
                                     "completion": [{"role": "assistant", "content": text}]})
            n_sampled = sum(len(c) for c in outs)
            log.info("rft round %d: kept %d of %d samples", r, len(sft_rows), n_sampled)
            info = {"round": r, "sampled": n_sampled, "kept": len(sft_rows)}
            if not sft_rows:
                rounds.append({**info, "trained": False})
                continue
            kept = write_version(ws, f"rft_{run_id}", samples_from_pylist(rows), step="rft", run_id=run_id,
                                 parents=[(dv.name, dv.version)], config={"round": r, **config})
            produced.append(kept.ref)
            trainer = build_sft_trainer(model, tok, Dataset.from_list(sft_rows), cfg, work / f"r{r}-trainer")
            trainer.train()
            model = trainer.model
            current = work / f"r{r}"
            save_model(trainer, tok, current, {"run_id": run_id, "round": r, "dataset": kept.ref})
            rounds.append({**info, "trained": True, "dataset": kept.ref})
        if trainer is None:
            raise RecotError(f"rft kept no correct sample in {cfg.rounds} round(s) of n={cfg.n}; raise n or "
                             "start from an SFT model that already hits sometimes")
        result = finish(run, "rft", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                        datasets=[dv.ref, *produced], sid_version=sid_version, config=config,
                        extra={"rounds": rounds, "added_tokens": added,
                               "specialists": {d: {"model": p, "run_id": model_lineage(p).get("run_id")}
                                               for d, p in cfg.specialists.items()}}, keys=("loss",))
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        return result
