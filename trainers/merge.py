"""`recot train merge`: unify per-task specialists by weight averaging (model soup / task-arithmetic with
equal or given weights). No gradient steps: load each state dict, average in float32, save.

All specialists must share the architecture and vocabulary (same base model, same SID version), which is
what specializing from one SFT model gives; anything else is refused with the mismatching tensor named.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from storage.errors import ConfigError
from storage.workspace import Workspace
from trainers.common import TrainResult, default_out_dir, model_lineage, save_model, training_run
from trainers.config import TrainConfig


class MergeConfig(TrainConfig):
    models: list[str] = Field(default_factory=list)    # specialist folders
    weights: list[float] | None = None                 # None = equal; normalized to sum 1


def average_state_dicts(models: list, weights: list[float]) -> dict:
    """Weighted average of the models' parameters (float32 accumulation, cast back to the first's dtype)."""
    import torch

    sds = [m.state_dict() for m in models]
    keys = list(sds[0])
    for i, sd in enumerate(sds[1:], start=2):
        if list(sd) != keys:
            missing = sorted(set(keys) ^ set(sd))[:3]
            raise ConfigError(f"model #{i} has different parameters than model #1 (e.g. {missing})")
        for k in keys:
            if sd[k].shape != sds[0][k].shape:
                raise ConfigError(f"model #{i}: tensor {k} has shape {tuple(sd[k].shape)}, model #1 "
                                  f"{tuple(sds[0][k].shape)} — merge needs the same base model and SID version")
    out = {}
    for k in keys:
        if not sds[0][k].is_floating_point():
            out[k] = sds[0][k]
            continue
        acc = torch.zeros_like(sds[0][k], dtype=torch.float32)
        for w, sd in zip(weights, sds):
            acc += w * sd[k].float()
        out[k] = acc.to(sds[0][k].dtype)
    return out


def train_merge(ws: Workspace, cfg: MergeConfig) -> TrainResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if len(cfg.models) < 2:
        raise ConfigError("merge needs at least two models under `models:`")
    weights = cfg.weights or [1.0] * len(cfg.models)
    if len(weights) != len(cfg.models) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"merge: weights {weights} must be {len(cfg.models)} non-negative numbers, not all 0")
    weights = [w / sum(weights) for w in weights]
    for m in cfg.models:
        if not (Path(m) / "config.json").exists():
            raise ConfigError(f"merge: {m} is not a model folder (no config.json)")
    config = cfg.model_dump(mode="json")
    with training_run(ws, "merge", {**config, "normalized_weights": weights}) as run:
        run_id = run.id
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run_id)
        dtype = torch.bfloat16 if cfg.bf16 else torch.float32
        models = [AutoModelForCausalLM.from_pretrained(m, dtype=dtype) for m in cfg.models]
        merged = models[0]
        merged.load_state_dict(average_state_dicts(models, weights))
        tok = AutoTokenizer.from_pretrained(cfg.models[0])
        lineages = [model_lineage(m) for m in cfg.models]
        sid_versions = {lin.get("sid_version") for lin in lineages if lin.get("sid_version") is not None}
        if len(sid_versions) > 1:
            raise ConfigError(f"merge: specialists use different SID versions {sorted(sid_versions)}")
        sid_version = sid_versions.pop() if sid_versions else cfg.sid_version
        datasets = sorted({d for lin in lineages for d in lin.get("datasets", [])})
        lineage = {"run_id": run_id, "kind": "merge", "base_model": cfg.models[0], "models": cfg.models,
                   "weights": weights, "datasets": datasets, "sid_version": sid_version,
                   "parents": [{"model": m, "run_id": lin.get("run_id"), "kind": lin.get("kind")}
                               for m, lin in zip(cfg.models, lineages)]}
        save_model(merged, tok, out_dir, lineage)
        run.stats = {"out_dir": str(out_dir), "models": cfg.models, "weights": weights,
                     "datasets": datasets, "sid_version": sid_version}
        return TrainResult(run_id=run_id, out_dir=out_dir, metrics={"weights": weights})
