"""`recot train sft`: supervised fine-tuning on curated CoT chats with TRL's SFTTrainer.

Rows are conversational prompt/completion pairs, so the loss covers the assistant answer only (reasoning +
SIDs), never the prompt's history. Thinking and non-thinking rows are mixed at `think_ratio` (None keeps
the dataset's own mix), so one model learns both `/think` and `/no_think` behaviour.
"""
from __future__ import annotations

import logging
from pathlib import Path

from storage.errors import ConfigError
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
from trainers.export import dataset_summary, to_sft_dataset

log = logging.getLogger(__name__)


class SFTTrainConfig(TrainConfig):
    think_ratio: float | None = None        # share of thinking rows; None = as in the dataset
    levels: list[str] | None = None         # e.g. [R3]; None = all levels
    tasks: list[str] | None = None


def build_sft_trainer(model, tokenizer, train_dataset, cfg: TrainConfig, out_dir: Path):
    """The TRL SFTTrainer for prompt/completion chats (shared with RFT, which re-runs SFT each round)."""
    from trl import SFTConfig, SFTTrainer

    from trainers.trl_cpu import compact_lm_head_on_cpu

    compact_lm_head_on_cpu()  # loss on the answer only: do not project the prompt positions on CPU either
    args = SFTConfig(output_dir=str(out_dir), max_length=cfg.max_length, completion_only_loss=True,
                     **cfg.training_args())
    return SFTTrainer(model=model, args=args, train_dataset=train_dataset.select_columns(["prompt", "completion"]),
                      processing_class=tokenizer)


def train_sft(ws: Workspace, cfg: SFTTrainConfig) -> TrainResult:
    if not cfg.dataset:
        raise ConfigError("sft needs a curated dataset: set `dataset:` in the config or pass --dataset NAME@vN")
    dv, ds = to_sft_dataset(ws, cfg.dataset, think_ratio=cfg.think_ratio, levels=cfg.levels, tasks=cfg.tasks,
                            max_rows=cfg.max_samples, seed=cfg.seed, domains=cfg.domains)
    base = base_model_path(cfg.model)
    sid_version = resolve_sid_version(ws, cfg.sid_version, dv, base)
    config = cfg.model_dump(mode="json")
    with training_run(ws, "sft", {**config, "dataset": dv.ref, "base_model": base}) as run:
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run.id)
        model, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                     add_tokens=cfg.add_sid_tokens, bf16=cfg.bf16)
        trainer = build_sft_trainer(model, tok, ds, cfg, out_dir)
        trainer.train()
        return finish(run, "sft", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=[dv.ref], sid_version=sid_version, config=config,
                      extra={"data": dataset_summary(ds), "added_tokens": added}, keys=("loss",))
