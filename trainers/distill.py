"""`recot train distill`: unify specialists into one student by multi-teacher on-policy distillation, on TRL's
`DistillationTrainer` (TRL ≥ 1.x: the student generates completions itself and is trained to match the
teacher's next-token distribution under a generalized JSD, `beta`; Agarwal et al. 2023).

Routing: every prompt is answered by the specialist of *its* group — its domain (`route_by: domain`, the
specialize-then-unify recipe of OneReason: one RL specialist per domain) or its task (`route_by: task`).
By default (`mixed_batches: true`) the batches mix groups, as in the recipe: `RoutedDistillationTrainer`
keeps every teacher loaded, tags each generated row with its teacher, and computes the loss of each row
against that row's teacher inside the batch (one teacher forward per teacher present, losses summed over the
batch's tokens, so the result equals one loss over the mixed batch). `mixed_batches: false` runs one stage per
(round, group) instead, the student carried over between stages (the older sequential behaviour). Groups
without a listed teacher fall back to `default_teacher` or are refused, so no prompt is silently taught by
the wrong specialist. The lineage keeps the routing, the per-group prompt counts, and (mixed) the first
batches' rows with their group and teacher.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

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
    teachers: dict[str, str] = Field(default_factory=dict)   # group (domain or task) → specialist model folder
    default_teacher: str | None = None                       # for groups not listed in `teachers`
    route_by: Literal["domain", "task"] = "task"             # what a prompt's teacher is chosen by
    mixed_batches: bool = True                               # groups mixed inside batches (else one stage each)
    rounds: int = 1
    beta: float = 0.5                                        # 0 forward KL, 1 reverse KL, 0.5 JSD
    max_completion_length: int = 32
    temperature: float = 1.0
    levels: list[str] | None = None
    tasks: list[str] | None = None
    use_vllm: bool = False


BATCH_LOG_LIMIT = 64  # micro-batches whose per-row routing is kept in the lineage


def route(groups: list[str], cfg: DistillConfig) -> dict[str, str]:
    """group → teacher folder for every group (domain or task, `route_by`) in the data; refuses groups that
    have no teacher."""
    routing, missing = {}, []
    for t in sorted(set(groups)):
        teacher = cfg.teachers.get(t) or cfg.default_teacher
        if teacher is None:
            missing.append(t)
        else:
            routing[t] = teacher
    what = cfg.route_by
    if missing:
        raise ConfigError(f"distill: no teacher for {what}(s) {missing}; list them under `teachers:` "
                          f"(have {sorted(cfg.teachers)}) or set `default_teacher:`")
    for t, path in routing.items():
        if not (Path(path) / "config.json").exists():
            raise ConfigError(f"distill: teacher for {what} {t!r} ({path}) is not a model folder")
    return routing


def routed_trainer_class() -> type:
    """`DistillationTrainer` with one teacher per row: built lazily (TRL imports are slow)."""
    import torch
    from trl import DistillationTrainer

    class RoutedDistillationTrainer(DistillationTrainer):  # type: ignore[misc]
        """Each generated row carries `teacher_index`; the loss of a micro-batch is the sum, over the teachers
        present, of the loss of their rows against them (normalised by the whole batch's token count)."""

        def __init__(self, *args: Any, teachers: dict[str, Any], routing: dict[str, str], route_key: str,
                     **kwargs: Any) -> None:
            self.teacher_paths = list(teachers)
            self.groups = sorted(routing)
            self.routing = routing
            self.route_key = route_key
            self.batch_log: list[dict[str, list[str]]] = []
            super().__init__(*args, teacher_model=teachers[self.teacher_paths[0]], **kwargs)
            self.teachers = [self.teacher_model] + [
                self.accelerator.prepare_model(teachers[p], evaluation_mode=True) for p in self.teacher_paths[1:]]

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            out = super()._generate_and_score_completions(inputs)
            device = out["prompt_ids"].device
            keys = [str(x[self.route_key]) for x in inputs]
            if out["prompt_ids"].shape[0] != len(keys):
                raise RuntimeError("distill: generated rows do not line up with the prompts; cannot route")
            out["teacher_index"] = torch.tensor([self.teacher_paths.index(self.routing[k]) for k in keys],
                                                device=device)
            out["group_index"] = torch.tensor([self.groups.index(k) for k in keys], device=device)
            return out

        def _compute_loss(self, unwrapped_student: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
            idx = inputs["teacher_index"]
            n = idx.shape[0]
            if num_items_in_batch is None:  # normalise every part by the WHOLE batch's tokens
                mask = inputs["completion_mask"]
                num_items_in_batch = (mask * inputs["tool_mask"] if "tool_mask" in inputs else mask).sum()
            loss = entropy = n_valid = None
            first = self.teacher_model
            try:
                for t in idx.unique().tolist():
                    rows = (idx == t).nonzero().squeeze(1)
                    part = {k: v[rows] if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == n else v
                            for k, v in inputs.items()}
                    self.teacher_model = self.teachers[t]
                    l_, e_, n_ = super()._compute_loss(unwrapped_student, part, num_items_in_batch)
                    loss = l_ if loss is None else loss + l_
                    entropy = e_ if entropy is None else entropy + e_
                    n_valid = n_ if n_valid is None else n_valid + n_
            finally:
                self.teacher_model = first
            if self.model.training and len(self.batch_log) < BATCH_LOG_LIMIT:
                self.batch_log.append({
                    self.route_key: [self.groups[g] for g in inputs["group_index"].tolist()],
                    "teacher": [self.teacher_paths[t] for t in idx.tolist()]})
            return loss, entropy, n_valid

    return RoutedDistillationTrainer


def train_distill(ws: Workspace, cfg: DistillConfig) -> TrainResult:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DistillationConfig, DistillationTrainer

    if not cfg.dataset:
        raise ConfigError("distill needs a prompt dataset: set `dataset:` or pass --dataset NAME@vN")
    if not cfg.teachers and not cfg.default_teacher:
        raise ConfigError(f"distill needs `teachers:` ({cfg.route_by} → specialist folder) or `default_teacher:`")
    dv, ds = to_grpo_dataset(ws, cfg.dataset, levels=cfg.levels, tasks=cfg.tasks, max_rows=cfg.max_samples,
                             seed=cfg.seed, domains=cfg.domains)
    key = cfg.route_by
    routing = route(ds[key], cfg)
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
        teachers = {path: AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
                    for path in dict.fromkeys(routing.values())}
        for path, t in teachers.items():
            if t.config.vocab_size != student.config.vocab_size:
                raise ConfigError(f"distill: teacher {path} has vocab {t.config.vocab_size}, the student "
                                  f"{student.config.vocab_size}; both need the same base model + SID version")

        def make_args() -> Any:
            targs = cfg.training_args()
            targs.setdefault("use_vllm", cfg.use_vllm)
            return DistillationConfig(output_dir=str(out_dir.parent / f".{run.id}-stage"), beta=cfg.beta,
                                      max_completion_length=cfg.max_completion_length,
                                      temperature=cfg.temperature, **targs)

        counts = {g: sum(1 for x in ds[key] if x == g) for g in routing}
        stages: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        batches: list[dict[str, list[str]]] = []
        trainer: Any = None
        for r in range(cfg.rounds):
            if cfg.mixed_batches:
                part = ds.select_columns(["prompt", key]).shuffle(seed=cfg.seed + r)
                trainer = routed_trainer_class()(model=student, teachers=teachers, routing=routing, route_key=key,
                                                 args=make_args(), train_dataset=part, processing_class=tok)
                trainer.train()
                student = trainer.accelerator.unwrap_model(trainer.model)
                history += [{**h, "stage_round": r + 1} for h in trainer.state.log_history]
                batches += trainer.batch_log
                stages += [{"round": r + 1, key: g, "teacher": p, "prompts": counts[g], "mixed": True}
                           for g, p in routing.items()]
                log.info("distill round %d: %d prompts, groups mixed in batches: %s", r + 1, len(part), counts)
                continue
            for group, path in routing.items():
                part = ds.filter(lambda x, g=group: x[key] == g).select_columns(["prompt"])
                trainer = DistillationTrainer(model=student, teacher_model=teachers[path], args=make_args(),
                                              train_dataset=part, processing_class=tok)
                trainer.train()
                student = trainer.accelerator.unwrap_model(trainer.model)
                for h in trainer.state.log_history:
                    history.append({**h, f"stage_{key}": group, "stage_round": r + 1})
                stages.append({"round": r + 1, key: group, "teacher": path, "prompts": len(part)})
                log.info("distill round %d %s %s (teacher %s): %d prompts", r + 1, key, group, path, len(part))
        trainer.state.log_history = history
        return finish(run, "distill", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=[dv.ref], sid_version=sid_version, config=config,
                      extra={"routing": routing, "route_by": key, "stages": stages, "data": dataset_summary(ds),
                             "batches": batches,
                             "teachers": {t: model_lineage(p).get("run_id") for t, p in routing.items()}},
                      keys=("loss",))
