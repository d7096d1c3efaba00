"""Residual K-means: L levels × K codes, with faiss doing the clustering (no hand-written k-means).

Level 1 clusters the vectors; level l clusters what levels 1..l-1 left unexplained (the residual). An
item's codes are its nearest centroid at each level. faiss' k-means is deterministic for a fixed seed
(seeded sampling and init; the per-thread centroid update splits by centroid, not by point), so the same
vectors and seed give the same codes.

Speed: faiss trains on at most `max_points_per_centroid × K` points per level (a seeded sample) and then
assigns every point with an exact flat search — on 100k vectors that is the bulk of the saving against
training on everything.

Balanced assignment (optional): after training a level, points are assigned greedily, most confident
first, to the nearest centroid that still has room, with capacity ceil(n / K) per centroid. This spreads
items over the codebook (higher utilisation and entropy, fewer collisions on skewed data) at the price
of a larger reconstruction error.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import faiss
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class QuantizeResult:
    codes: np.ndarray                 # int32 [n, L]
    centroids: list[np.ndarray]       # per level [k_l, d]
    residual: np.ndarray              # float32 [n, d], what the L levels leave unexplained
    k_per_level: list[int] = field(default_factory=list)  # effective codebook size per level (≤ K)
    nearest_codes: np.ndarray | None = None  # codes with plain nearest-centroid assignment at every level
    reassigned: int = 0                      # items the collision-aware last level moved


def _kmeans(x: np.ndarray, k: int, *, seed: int, niter: int, max_points_per_centroid: int) -> np.ndarray:
    """Centroids [k_eff, d] of x; when x has ≤ k distinct rows they are the centroids (exact, no training)."""
    n, d = x.shape
    if n <= 4 * k:
        uniq = np.unique(x, axis=0)
        if len(uniq) <= k:
            return np.ascontiguousarray(uniq, dtype=np.float32)
        k = min(k, len(uniq))
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, verbose=False, spherical=False,
                      max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _assign(x: np.ndarray, centroids: np.ndarray, *, balanced: bool) -> np.ndarray:
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    k = len(centroids)
    if not balanced or k == 1:
        _, idx = index.search(x, 1)
        return idx[:, 0].astype(np.int32)
    # Capacity-constrained greedy assignment: each point may go to one of its `m` nearest centroids
    # (m grows until everything fits), most confident points first.
    n = len(x)
    cap = math.ceil(n / k)
    m = min(k, 16)
    while True:
        dist, idx = index.search(x, m)
        order = np.argsort(dist[:, 0] - (dist[:, 1] if m > 1 else 0), kind="stable")  # biggest margin first
        load = np.zeros(k, dtype=np.int64)
        out = np.full(n, -1, dtype=np.int32)
        for p in order:
            for c in idx[p]:
                if c >= 0 and load[c] < cap:
                    out[p] = c
                    load[c] += 1
                    break
        left = np.flatnonzero(out < 0)
        if len(left) == 0:
            return out
        if m >= k:  # cannot happen (k * cap >= n), kept as a guard
            raise RuntimeError("balanced assignment failed to place every point")
        m = min(k, m * 4)


# Below this many points OpenMP start-up and spin-waiting cost more than the parallel work saves
# (measured: 1,682 × 384-d, 3 × 256 takes 0.2 s on one thread and 1.7 s on two busy cores).
SMALL_PROBLEM = 20_000


@contextlib.contextmanager
def faiss_threads(n: int | None) -> Iterator[None]:
    """Run faiss with `n` OpenMP threads (None: leave faiss' default), restoring the setting afterwards."""
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def residual_kmeans(x: np.ndarray, levels: int, codebook_size: int, *, seed: int = 0, niter: int = 20,
                    max_points_per_centroid: int = 256, balanced: bool = False, collision_aware: bool = False,
                    item_ids: list[str] | None = None, threads: int | None = None) -> QuantizeResult:
    """Quantize rows of x into `levels` codes each (residual K-means, `codebook_size` codes per level).

    collision_aware: spread colliding items over free last-level codes (see spread_last_level); ties are
    broken by `item_ids` order (row order when None).
    threads: faiss OpenMP threads; None → 1 for small inputs (< SMALL_PROBLEM rows), faiss' default else."""
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"need a non-empty 2-d array of vectors, got shape {x.shape}")
    if levels < 1 or codebook_size < 1:
        raise ValueError("levels and codebook_size must be ≥ 1")
    if threads is None and len(x) < SMALL_PROBLEM:
        threads = 1
    rank = np.arange(len(x), dtype=np.int64)
    if item_ids is not None:
        rank[np.argsort(np.asarray(item_ids, dtype=object), kind="stable")] = np.arange(len(x))
    with faiss_threads(threads):
        return _residual_kmeans(x, levels, codebook_size, seed=seed, niter=niter,
                                max_points_per_centroid=max_points_per_centroid, balanced=balanced,
                                collision_aware=collision_aware, rank=rank)


def _residual_kmeans(x: np.ndarray, levels: int, codebook_size: int, *, seed: int, niter: int,
                     max_points_per_centroid: int, balanced: bool, collision_aware: bool,
                     rank: np.ndarray) -> QuantizeResult:
    residual = np.ascontiguousarray(x, dtype=np.float32).copy()
    codes = np.zeros((len(x), levels), dtype=np.int32)
    cents: list[np.ndarray] = []
    ks: list[int] = []
    nearest_last = None
    moved = 0
    for lv in range(levels):
        c = _kmeans(residual, codebook_size, seed=seed + lv, niter=niter,
                    max_points_per_centroid=max_points_per_centroid)
        a = _assign(residual, c, balanced=balanced)
        if lv == levels - 1:
            nearest_last = a.copy()
            if collision_aware:
                a, moved = spread_last_level(codes[:, :lv], a, residual, c, rank)
        codes[:, lv] = a
        residual -= c[a]
        cents.append(c)
        ks.append(len(c))
        log.debug("level %d: k=%d, mean sq residual %.5f", lv, len(c), float((residual ** 2).sum(1).mean()))
    plain = codes.copy()
    plain[:, -1] = nearest_last
    return QuantizeResult(codes=codes, centroids=cents, residual=residual, k_per_level=ks,
                          nearest_codes=plain, reassigned=moved)


def tuple_keys(codes: np.ndarray) -> np.ndarray:
    """One int64 id per distinct row of `codes` (equal rows ↔ equal ids)."""
    if codes.shape[1] == 0:
        return np.zeros(len(codes), dtype=np.int64)
    base = int(codes.max()) + 1 if codes.size else 1
    if base ** codes.shape[1] < 2 ** 62:
        key = np.zeros(len(codes), dtype=np.int64)
        for lv in range(codes.shape[1]):
            key = key * base + codes[:, lv].astype(np.int64)
        return key
    return np.unique(codes, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def spread_last_level(prefix_codes: np.ndarray, last: np.ndarray, residual: np.ndarray, centroids: np.ndarray,
                      rank: np.ndarray, *, candidates: int = 32) -> tuple[np.ndarray, int]:
    """Collision-aware last level: within each group of items sharing all L codes, the item nearest the
    shared centroid keeps it and the others move to their nearest last-level code that no item with the
    same first L-1 codes uses. Only colliding items move, each by as little as possible, and only to a
    code that still explains part of its residual (‖r − c‖² ≤ ‖r‖², i.e. no worse than having no last
    level at all), so the reconstruction barely changes while most collisions disappear before the extra
    level is needed (identical vectors included). Items that find no such free code keep theirs and get
    the extra level.

    Deterministic: movers are processed in order of (distance to their centroid, rank = item-id order).
    Returns (new last codes, number of items moved)."""
    k = len(centroids)
    prefix = tuple_keys(prefix_codes)
    full = prefix * k + last.astype(np.int64)
    _, inv, counts = np.unique(full, return_inverse=True, return_counts=True)
    coll = np.flatnonzero(counts[inv.ravel()] > 1)
    if len(coll) == 0 or k == 1:
        return last, 0
    d = ((residual[coll] - centroids[last[coll]]) ** 2).sum(1)
    order = np.lexsort((rank[coll], d, full[coll]))
    sorted_idx = coll[order]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = full[sorted_idx][1:] != full[sorted_idx][:-1]
    movers = sorted_idx[~keep]
    mover_d = d[order][~keep]
    movers = movers[np.lexsort((rank[movers], mover_d))]
    # Codes already taken in every prefix group a mover belongs to (by everyone who is not moving).
    affected = np.isin(prefix, np.unique(prefix[movers]))
    affected[movers] = False
    used: dict[int, set[int]] = {}
    for p, c in zip(prefix[affected].tolist(), last[affected].tolist()):
        used.setdefault(p, set()).add(c)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    m = min(k, candidates)
    r_movers = np.ascontiguousarray(residual[movers])
    dist, cand = index.search(r_movers, m)
    budget = (r_movers.astype(np.float64) ** 2).sum(1) * (1 + 1e-6) + 1e-12  # error with no last level
    out = last.copy()
    moved = 0

    def pick(codes_row: np.ndarray, dist_row: np.ndarray, taken: set[int], limit: float) -> int | None:
        for c, dc in zip(codes_row.tolist(), dist_row.tolist()):
            if dc > limit:
                return None  # candidates come sorted by distance: nothing further qualifies
            if c >= 0 and c not in taken:
                return c
        return None

    for row, i in enumerate(movers.tolist()):
        taken = used.setdefault(int(prefix[i]), set())
        choice = pick(cand[row], dist[row], taken, budget[row])
        if choice is None and m < k and len(taken) < k and dist[row, -1] <= budget[row]:
            wd, wide = index.search(r_movers[row:row + 1], k)
            choice = pick(wide[0], wd[0], taken, budget[row])
        if choice is None:  # every code of this prefix is taken: the extra level will separate it
            choice = int(last[i])
        elif choice != last[i]:
            moved += 1
        out[i] = choice
        taken.add(choice)
    return out, moved


def collision_level(codes: np.ndarray, item_ids: list[str]) -> tuple[np.ndarray, dict]:
    """Extra code per item: 0..m-1 within each group of items sharing all L codes (ordered by item_id),
    -1 for items without a collision. Returns (extra [n] int32, stats)."""
    n = len(codes)
    extra = np.full(n, -1, dtype=np.int32)
    if n == 0:
        return extra, {"groups": 0, "items": 0, "max_group": 0}
    # Sort by (codes..., item_id) so each colliding group is contiguous and ordered by item id.
    ids = np.asarray(item_ids, dtype=object)
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.argsort(ids, kind="stable")] = np.arange(n)
    order = np.lexsort((id_rank,) + tuple(codes[:, lv] for lv in range(codes.shape[1] - 1, -1, -1)))
    sc = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sc[1:] != sc[:-1]).any(axis=1)
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, n))
    group_of = np.cumsum(new_group) - 1
    rank_in_group = np.arange(n) - starts[group_of]
    colliding = sizes[group_of] > 1
    extra[order[colliding]] = rank_in_group[colliding].astype(np.int32)
    stats = {"groups": int((sizes > 1).sum()), "items": int(colliding.sum()),
             "max_group": int(sizes.max()), "distinct_tuples": int(len(starts))}
    return extra, stats
