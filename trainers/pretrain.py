"""`recot train pretrain`: causal-LM training on the alignment corpus (SID ↔ text), after adding the SID
tokens to the tokenizer — the step that teaches a general LM what `<s_a_12>` means before any CoT.

Data: an alignment dataset version (`dataset:`), or none — then the catalog itself (item SID ↔ title lines
and train-split histories, see `trainers.export.catalog_corpus`). Uses TRL's SFTTrainer on a `text`
column (language-modeling format: loss on every token).

Two stages, as OpenOneRec's `--freeze_llm` recipe: stage 1 trains only the SID token embeddings (input rows,
and output rows when untied) with every other weight frozen — the new tokens get a meaning without
disturbing the LLM — then stage 2 trains everything. `freeze_llm: true` runs stage 1 only; `stages:` lists
stages run in order on the same model, each `{freeze_llm: bool, max_steps: N, learning_rate: x}` (unset
keys: the config's). Stage 1 runs without weight decay, which would otherwise shrink the frozen rows too.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from storage.datasets import resolve
from storage.errors import NotFound
from storage.workspace import Workspace
from trainers.common import (
    TrainResult,
    base_model_path,
    default_out_dir,
    finish,
    load_model_and_tokenizer,
    resolve_sid_version,
    training_run,
)
from trainers.config import TrainConfig
from trainers.export import dataset_summary, to_pretrain_dataset
from trainers.trl_cpu import compact_lm_head_on_cpu

log = logging.getLogger(__name__)


class PretrainStage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    freeze_llm: bool = False                 # True: only the SID token embeddings train
    max_steps: int | None = None             # None = the config's
    learning_rate: float | None = None


class PretrainConfig(TrainConfig):
    packing: bool = False                    # concatenate short texts into max_length blocks (GPU runs)
    freeze_llm: bool = False                 # one stage that trains only the SID token embeddings
    stages: list[PretrainStage] | None = None  # e.g. [{freeze_llm: true, max_steps: 200}, {freeze_llm: false}]

    def stage_list(self) -> list[PretrainStage]:
        return list(self.stages) if self.stages else [PretrainStage(freeze_llm=self.freeze_llm)]


def freeze_all_but_sid_rows(model: Any, sid_ids: list[int]) -> list[Any]:
    """Freeze every parameter except the embedding matrices, whose gradients are masked to the SID rows.
    Returns the hook handles (remove them to unfreeze)."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    handles = []
    mats = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())
            if m is not None}
    for w in mats.values():
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[torch.tensor(sid_ids, dtype=torch.long)] = 1
        w.requires_grad_(True)
        handles.append(w.register_hook(lambda g, mask=mask: g * mask))
    return handles


def unfreeze(model: Any, handles: list[Any]) -> None:
    for h in handles:
        h.remove()
    for p in model.parameters():
        p.requires_grad_(True)


def train_pretrain(ws: Workspace, cfg: PretrainConfig) -> TrainResult:
    from trl import SFTConfig, SFTTrainer

    dv = resolve(ws, cfg.dataset) if cfg.dataset else None
    base = base_model_path(cfg.model)
    sid_version = resolve_sid_version(ws, cfg.sid_version, dv, base)
    if sid_version is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    dv, ds = to_pretrain_dataset(ws, dv, sid_version=sid_version, max_rows=cfg.max_samples, seed=cfg.seed,
                                 domains=cfg.domains)
    data_refs = [dv.ref] if dv else [f"catalog:sid_version={sid_version}"]
    config = cfg.model_dump(mode="json")
    with training_run(ws, "pretrain", {**config, "datasets": data_refs, "base_model": base}) as run:
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run.id)
        model, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                     add_tokens=True, bf16=cfg.bf16)
        from trainers.tokenizer import sid_tokens

        sid_ids = [i for i in tok.convert_tokens_to_ids(sid_tokens(ws, sid_version)) if i is not None]
        history: list[dict[str, Any]] = []
        stages_done: list[dict[str, Any]] = []
        trainer: Any = None
        for n, stage in enumerate(cfg.stage_list(), 1):
            targs = cfg.training_args()
            targs.update({k: v for k, v in (("max_steps", stage.max_steps), ("learning_rate", stage.learning_rate))
                          if v is not None})
            handles = []
            if stage.freeze_llm:
                targs["weight_decay"] = 0.0
                handles = freeze_all_but_sid_rows(model, sid_ids)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            args = SFTConfig(output_dir=str(out_dir), max_length=cfg.max_length, packing=cfg.packing,
                             dataset_text_field="text", **targs)
            compact_lm_head_on_cpu()
            trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
            trainer.train()
            model = trainer.model
            unfreeze(model, handles)
            history += [{**h, "stage": n} for h in trainer.state.log_history]
            stages_done.append({"stage": n, "freeze_llm": stage.freeze_llm, "max_steps": targs["max_steps"],
                                "trainable_params": trainable, "sid_rows": len(sid_ids) if stage.freeze_llm else None})
            log.info("pretrain stage %d (freeze_llm=%s): %d trainable parameters", n, stage.freeze_llm, trainable)
        trainer.state.log_history = history
        return finish(run, "pretrain", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=data_refs, sid_version=sid_version, config=config,
                      extra={"data": dataset_summary(ds), "added_tokens": added, "stages": stages_done},
                      keys=("loss",))
