"""`recot train distill`: unify per-task specialists into one student by multi-teacher on-policy
distillation, on TRL's `DistillationTrainer` (TRL ≥ 1.x: the student generates completions itself and is
trained to match the teacher's next-token distribution under a generalized JSD, `beta`; Agarwal et al. 2023).

Routing: every prompt must be answered by *its task's* specialist. TRL's trainer holds one teacher, so recot
groups the prompts by task and runs one DistillationTrainer stage per (round, task) with that task's
specialist as teacher, the student carried over between stages in memory. `rounds > 1` interleaves tasks
(A, B, A, B, …) to limit forgetting of earlier tasks. Tasks without a listed teacher fall back to
`default_teacher` or are refused, so no prompt is silently taught by the wrong specialist.
"""
from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field

from storage.errors import ConfigError
from storage.workspace import Workspace
from trainers.common import (
    TrainResult,
    base_model_path,
    default_out_dir,
    finish,
    load_model_and_tokenizer,
    model_lineage,
    resolve_sid_version,
    training_run,
)
from trainers.config import TrainConfig
from trainers.export import dataset_summary, to_grpo_dataset

log = logging.getLogger(__name__)


class DistillConfig(TrainConfig):
    teachers: dict[str, str] = Field(default_factory=dict)   # task → specialist model folder
    default_teacher: str | None = None                       # for tasks not listed in `teachers`
    rounds: int = 1
    beta: float = 0.5                                        # 0 forward KL, 1 reverse KL, 0.5 JSD
    max_completion_length: int = 32
    temperature: float = 1.0
    levels: list[str] | None = None
    tasks: list[str] | None = None
    use_vllm: bool = False


def route(tasks: list[str], cfg: DistillConfig) -> dict[str, str]:
    """task → teacher folder for every task in the data; refuses tasks that have no teacher."""
    routing, missing = {}, []
    for t in sorted(set(tasks)):
        teacher = cfg.teachers.get(t) or cfg.default_teacher
        if teacher is None:
            missing.append(t)
        else:
            routing[t] = teacher
    if missing:
        raise ConfigError(f"distill: no teacher for task(s) {missing}; list them under `teachers:` "
                          f"(have {sorted(cfg.teachers)}) or set `default_teacher:`")
    for t, path in routing.items():
        if not (Path(path) / "config.json").exists():
            raise ConfigError(f"distill: teacher for task {t!r} ({path}) is not a model folder")
    return routing


def train_distill(ws: Workspace, cfg: DistillConfig) -> TrainResult:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DistillationConfig, DistillationTrainer

    if not cfg.dataset:
        raise ConfigError("distill needs a prompt dataset: set `dataset:` or pass --dataset NAME@vN")
    if not cfg.teachers and not cfg.default_teacher:
        raise ConfigError("distill needs `teachers:` (task → specialist folder) or `default_teacher:`")
    dv, ds = to_grpo_dataset(ws, cfg.dataset, levels=cfg.levels, tasks=cfg.tasks, max_rows=cfg.max_samples,
                             seed=cfg.seed, domains=cfg.domains)
    routing = route(ds["task"], cfg)
    # the student starts from `model`, else from the first specialist's base model, else the embedded model
    first_lineage = model_lineage(next(iter(routing.values())))
    base = base_model_path(cfg.model or first_lineage.get("base_model"))
    sid_version = resolve_sid_version(ws, cfg.sid_version, dv, next(iter(routing.values())))
    config = cfg.model_dump(mode="json")
    with training_run(ws, "distill", {**config, "dataset": dv.ref, "base_model": base, "routing": routing}) as run:
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run.id)
        student, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                       add_tokens=cfg.add_sid_tokens, bf16=cfg.bf16)
        dtype = torch.bfloat16 if cfg.bf16 else torch.float32
        teachers = {path: AutoModelForCausalLM.from_pretrained(path, dtype=dtype) for path in set(routing.values())}
        for path, t in teachers.items():
            if t.config.vocab_size != student.config.vocab_size:
                raise ConfigError(f"distill: teacher {path} has vocab {t.config.vocab_size}, the student "
                                  f"{student.config.vocab_size}; both need the same base model + SID version")
        stages, history, trainer = [], [], None
        for r in range(cfg.rounds):
            for task, path in routing.items():
                part = ds.filter(lambda x, task=task: x["task"] == task).select_columns(["prompt"])
                targs = cfg.training_args()
                targs.setdefault("use_vllm", cfg.use_vllm)
                args = DistillationConfig(output_dir=str(out_dir.parent / f".{run.id}-stage"), beta=cfg.beta,
                                          max_completion_length=cfg.max_completion_length,
                                          temperature=cfg.temperature, **targs)
                trainer = DistillationTrainer(model=student, teacher_model=teachers[path], args=args,
                                              train_dataset=part, processing_class=tok)
                trainer.train()
                student = trainer.accelerator.unwrap_model(trainer.model)
                for h in trainer.state.log_history:
                    history.append({**h, "stage_task": task, "stage_round": r + 1})
                stages.append({"round": r + 1, "task": task, "teacher": path, "prompts": len(part)})
                log.info("distill round %d task %s (teacher %s): %d prompts", r + 1, task, path, len(part))
        trainer.state.log_history = history
        return finish(run, "distill", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=[dv.ref], sid_version=sid_version, config=config,
                      extra={"routing": routing, "stages": stages, "data": dataset_summary(ds),
                             "teachers": {t: model_lineage(p).get("run_id") for t, p in routing.items()}},
                      keys=("loss",))
