"""`recot train pretrain`: causal-LM training on the alignment corpus (SID ↔ text), after adding the SID
tokens to the tokenizer — the step that teaches a general LM what `<s_a_12>` means before any CoT.

Data: an alignment dataset version (`dataset:`), or none — then the catalog itself (item SID ↔ title lines
and train-split histories, see `trainers.export.catalog_corpus`). Uses TRL's SFTTrainer on a `text`
column (language-modeling format: loss on every token).
"""
from __future__ import annotations

from pathlib import Path

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


class PretrainConfig(TrainConfig):
    packing: bool = False                    # concatenate short texts into max_length blocks (GPU runs)


def train_pretrain(ws: Workspace, cfg: PretrainConfig) -> TrainResult:
    from trl import SFTConfig, SFTTrainer

    dv = resolve(ws, cfg.dataset) if cfg.dataset else None
    base = base_model_path(cfg.model)
    sid_version = resolve_sid_version(ws, cfg.sid_version, dv, base)
    if sid_version is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    dv, ds = to_pretrain_dataset(ws, dv, sid_version=sid_version, max_rows=cfg.max_samples, seed=cfg.seed)
    data_refs = [dv.ref] if dv else [f"catalog:sid_version={sid_version}"]
    config = cfg.model_dump(mode="json")
    with training_run(ws, "pretrain", {**config, "datasets": data_refs, "base_model": base}) as run:
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run.id)
        model, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                     add_tokens=True, bf16=cfg.bf16)
        args = SFTConfig(output_dir=str(out_dir), max_length=cfg.max_length, packing=cfg.packing,
                         dataset_text_field="text", **cfg.training_args())
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        trainer.train()
        return finish(run, "pretrain", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=data_refs, sid_version=sid_version, config=config,
                      extra={"data": dataset_summary(ds), "added_tokens": added}, keys=("loss",))
