"""Make TRL's fused LM head score only the labelled positions on CPU too.

TRL (`trl/trainer/utils.py`, `add_fused_lm_head`) computes the per-token log-probabilities in vocabulary chunks.
On Triton devices (CUDA, XPU) it projects only the positions that carry a label; everywhere else it projects EVERY
position, because on accelerators without Triton a batch-dependent number of positions would change the tile
shapes and force a recompilation. CPU has no such compiler, but takes the same branch: an R3 window has ~150
prompt tokens and ~6 answer tokens, so the 49,925-way output layer does ~25× the work needed (measured on
2 cores: 113 s vs ~12 s per 64-window step). The loss is identical either way — prompt positions are masked out
(checked in tests/trainers/test_trl_cpu.py); only where the projection is computed changes.

TRL has no switch for this, so `compact_lm_head_on_cpu()` wraps the private `_use_triton` that
`add_fused_lm_head`'s forward reads at call time: CPU answers True (compact), every other device keeps TRL's
own answer. It is idempotent, and the chunked kernels themselves (Triton vs torch) are untouched: they decide
with their own module's `_use_triton`. A TRL upgrade that renames the hook makes this a no-op with a warning,
never a wrong loss.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_PATCHED = "_recot_compact_on_cpu"


def compact_lm_head_on_cpu() -> bool:
    """Patch once per process; returns whether the compact CPU path is active."""
    import trl.trainer.utils as tu

    original = getattr(tu, "_use_triton", None)
    if original is None:
        log.warning("trl.trainer.utils._use_triton not found (TRL changed): the fused LM head projects every "
                    "position on CPU, which is slower but computes the same loss")
        return False
    if getattr(original, _PATCHED, False):
        return True

    def use_compact(device):  # type: ignore[no-untyped-def]
        return device.type == "cpu" or original(device)

    setattr(use_compact, _PATCHED, True)
    tu._use_triton = use_compact
    return True
