"""The quality report of a SID build: how well the codes describe the items and how evenly they use the
codebooks. Stored as JSON with the SID version, printed by `recot sids build` / `recot sids show`.

Definitions (all over the n items of the build):
- collision_rate_nearest: fraction of items whose L-code tuple is shared with at least one other item when
  every level uses its nearest centroid (plain residual K-means — what a reference quantizer gives).
- collision_rate_before: the same for the codes actually stored, i.e. after the collision-aware last level
  moved colliding items to free codes, before the extra level.
- collision_rate_after: the same over full SIDs (with the extra level) — 0 by construction.
- per level: utilisation = distinct codes used / K; entropy (bits) of the code distribution and its
  normalised value entropy / log2(K); items per used code (min/max/mean).
- reconstruction: mean squared residual ‖x − Σ centroids‖² and relative = Σ‖residual‖² / Σ‖x‖².
"""
from __future__ import annotations

import math

import numpy as np


def collision_rate(codes: np.ndarray) -> float:
    """Fraction of rows whose code tuple appears more than once."""
    n = len(codes)
    if n == 0:
        return 0.0
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.ravel()] > 1).sum() / n)


def level_stats(col: np.ndarray, k: int) -> dict:
    _, counts = np.unique(col, return_counts=True)
    p = counts / counts.sum()
    ent = float(-(p * np.log2(p)).sum())
    return {
        "codebook_size": int(k),
        "codes_used": int(len(counts)),
        "utilisation": round(len(counts) / k, 6),
        "entropy_bits": round(ent, 6),
        "entropy_normalised": round(ent / math.log2(k), 6) if k > 1 else 1.0,
        "items_per_code": {"min": int(counts.min()), "max": int(counts.max()),
                           "mean": round(float(counts.mean()), 4)},
    }


def quality_report(x: np.ndarray, codes: np.ndarray, residual: np.ndarray, full_codes: list[tuple[int, ...]],
                   codebook_size: int, k_per_level: list[int], collision: dict) -> dict:
    n = len(x)
    sq_res = float((residual.astype(np.float64) ** 2).sum())
    sq_x = float((x.astype(np.float64) ** 2).sum())
    n_unique_full = len(set(full_codes))
    levels = [dict(level_stats(codes[:, lv], codebook_size), level=lv + 1, letter="abcdefghijklmnopqrstuvwxyz"[lv],
                   k_trained=int(k_per_level[lv]))
              for lv in range(codes.shape[1])]
    extra_max = max((len(c) > codes.shape[1] and c[-1] for c in full_codes), default=0)
    return {
        "n_items": int(n),
        "levels": int(codes.shape[1]),
        "codebook_size": int(codebook_size),
        "collision_rate_before": round(collision_rate(codes), 6),
        "collision_rate_after": round(1.0 - n_unique_full / n, 6) if n else 0.0,
        "colliding_items": int(collision["items"]),
        "collision_groups": int(collision["groups"]),
        "max_group_size": int(collision["max_group"]),
        "items_with_extra_level": int(sum(len(c) > codes.shape[1] for c in full_codes)),
        "extra_level_size": int(extra_max) + 1 if collision["items"] else 0,
        "unique_sids": int(n_unique_full),
        "per_level": levels,
        "reconstruction": {
            "mse": round(sq_res / n, 8) if n else 0.0,
            "relative": round(sq_res / sq_x, 8) if sq_x else 0.0,
        },
    }
