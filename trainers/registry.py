"""Trainer name → (module, config class, train function), imported lazily so `recot --help` stays fast."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

TRAINERS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("trainers.pretrain", "PretrainConfig", "train_pretrain"),
    "sft": ("trainers.sft", "SFTTrainConfig", "train_sft"),
    "rl": ("trainers.rl", "RLConfig", "train_rl"),
    "rft": ("trainers.rft", "RFTConfig", "train_rft"),
    "merge": ("trainers.merge", "MergeConfig", "train_merge"),
    "distill": ("trainers.distill", "DistillConfig", "train_distill"),
}


def get_trainer(name: str) -> tuple[type, Callable[..., Any]]:
    if name not in TRAINERS:
        raise KeyError(f"unknown trainer {name!r}; known: {sorted(TRAINERS)}")
    mod, cfg, fn = TRAINERS[name]
    m = importlib.import_module(mod)
    return getattr(m, cfg), getattr(m, fn)
