"""SID build benchmark: recot's quantizer vs straightforward references, measured in the same run.

Data: N synthetic clustered vectors (384-d like MiniLM, L2-normalised, fixed seed) with cluster structure
at three scales (`hier_blobs`), optionally (--hard) single-scale isotropic blobs, plus the real 1,682
MovieLens-100k item embeddings.

Contenders (all 3 levels x 256 codes, same faiss thread count):
- recot: `synth.sids.build.quantize_items` — residual K-means (faiss k-means per level on a seeded
  sample, exact assignment), collision-aware last level, extra collision level, full quality report.
- faiss_rq: `faiss.ResidualQuantizer(d, 3, 8)` with its defaults (beam search), train + compute_codes.
- kmeans_loop: plain per-level `faiss.Kmeans` on all points (no sampling cap), nearest-centroid codes.

Collision rate = fraction of items whose 3-code tuple is shared with another item (before any extra level).
The goal: recot's time ≤ 1.0x faiss_rq's at an equal or lower collision rate.

    python benchmarks/sids.py [--quick] [--threads N] [--hard] [--skip-loop] [--no-movielens]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.atomic import atomic_write_json  # noqa: E402
from synth.sids.build import SidConfig, quantize_items  # noqa: E402
from synth.sids.report import collision_rate  # noqa: E402

LEVELS, K = 3, 256


def blobs(n: int, d: int, centers: int, seed: int) -> np.ndarray:
    """Clustered unit vectors: blob centres on the sphere, isotropic noise, re-normalised."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    sizes = rng.dirichlet(np.ones(centers) * 2.0)  # uneven blob sizes, like real catalogs
    lab = rng.choice(centers, size=n, p=sizes)
    x = c[lab] + rng.standard_normal((n, d)).astype(np.float32) * (0.6 / np.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def hier_blobs(n: int, d: int, seed: int, branching: tuple[int, ...] = (32, 32, 32),
               scales: tuple[float, ...] = (1.0, 0.5, 0.25), noise: float = 0.5) -> np.ndarray:
    """Clustered unit vectors with structure at several scales, like item catalogs (category →
    sub-category → near-duplicates): a leaf is the sum of one random offset per scale, points add small
    isotropic noise. Uneven top-level sizes (Dirichlet)."""
    rng = np.random.default_rng(seed)
    offsets = []
    shape: tuple[int, ...] = ()
    for b, sc in zip(branching, scales):
        shape = shape + (b,)
        o = rng.standard_normal(shape + (d,)).astype(np.float32)
        offsets.append(o / np.linalg.norm(o, axis=-1, keepdims=True) * sc)
    labels = [rng.choice(branching[0], size=n, p=rng.dirichlet(np.ones(branching[0]) * 2.0))]
    labels += [rng.integers(0, b, n) for b in branching[1:]]
    x = np.zeros((n, d), dtype=np.float32)
    for lv, o in enumerate(offsets):
        x += o[tuple(labels[: lv + 1])]
    x += rng.standard_normal((n, d)).astype(np.float32) * (noise / np.sqrt(d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def mse(x: np.ndarray, recon: np.ndarray) -> float:
    return float(((x.astype(np.float64) - recon) ** 2).sum(1).mean())


def run_recot(x: np.ndarray, ids: list[str] | None = None, seed: int = 0) -> dict:
    ids = ids or [f"i{i:07d}" for i in range(len(x))]
    t0 = time.perf_counter()
    cfg = SidConfig(levels=LEVELS, codebook_size=K, seed=seed, threads=faiss.omp_get_max_threads())
    q = quantize_items(ids, x, cfg)
    dt = time.perf_counter() - t0
    r = q.report
    return {"seconds": round(dt, 3), "collision_rate": r["collision_rate_before"],
            "collision_rate_nearest_centroid": r["collision_rate_nearest"],
            "collision_rate_after_extra_level": r["collision_rate_after"],
            "items_with_extra_level": r["items_with_extra_level"],
            "reassigned_last_level": r["reassigned_last_level"],
            "unique_sids": r["unique_sids"], "mse": r["reconstruction"]["mse"]}


def run_faiss_rq(x: np.ndarray) -> dict:
    t0 = time.perf_counter()
    rq = faiss.ResidualQuantizer(x.shape[1], LEVELS, 8)
    rq.train(x)
    codes = rq.compute_codes(x)
    dt = time.perf_counter() - t0
    unpacked = np.stack([_unpack(codes, lv) for lv in range(LEVELS)], axis=1)
    return {"seconds": round(dt, 3), "collision_rate": round(collision_rate(unpacked), 6),
            "mse": round(mse(x, rq.decode(codes)), 8), "max_beam_size": int(rq.max_beam_size)}


def _unpack(codes: np.ndarray, lv: int) -> np.ndarray:
    """Code of level lv from faiss' packed 8-bit codes (one byte per level)."""
    return codes[:, lv].astype(np.int32)


def run_kmeans_loop(x: np.ndarray, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    r = x.copy()
    codes = np.zeros((len(x), LEVELS), dtype=np.int32)
    for lv in range(LEVELS):
        km = faiss.Kmeans(x.shape[1], K, niter=20, seed=seed + lv, max_points_per_centroid=len(x))
        km.train(r)
        _, a = km.index.search(r, 1)
        codes[:, lv] = a[:, 0]
        r -= km.centroids[a[:, 0]]
    dt = time.perf_counter() - t0
    return {"seconds": round(dt, 3), "collision_rate": round(collision_rate(codes), 6),
            "mse": round(float((r.astype(np.float64) ** 2).sum(1).mean()), 8)}


def movielens_vectors() -> tuple[np.ndarray, list[str], dict]:
    """The 1,682 MovieLens-100k item embeddings (ingest + MiniLM into a temp workspace; timed)."""
    from storage.ingest.movielens import ingest_movielens_100k
    from storage.workspace import Workspace
    from synth.sids.build import build_sids

    tmp = Path(tempfile.mkdtemp(prefix="recot-bench-sids-"))
    try:
        ws = Workspace.open(tmp / "ws")
        ingest_movielens_100k(ws)
        t0 = time.perf_counter()
        res = build_sids(ws, SidConfig())
        total = time.perf_counter() - t0
        from synth.sids.embed import embed_texts, item_text

        # The very vectors build_sids quantized (all cache hits now), with the real item ids.
        rows = ws.query("SELECT item_id, title, categories, description FROM items ORDER BY item_id")
        x, _ = embed_texts([item_text(r[1], r[2], r[3]) for r in rows], cache_root=ws.cache_dir)
        ids = [str(r[0]) for r in rows]
        rep = res.report
        info = {"n_items": rep["n_items"], "unique_sids": rep["unique_sids"],
                "build_sids_seconds_total": round(total, 2),
                "embedding_seconds": rep["embedding"]["seconds"],
                "collision_rate_nearest": rep["collision_rate_nearest"],
                "collision_rate_before": rep["collision_rate_before"],
                "collision_rate_after": rep["collision_rate_after"],
                "reconstruction_relative": rep["reconstruction"]["relative"]}
        return np.ascontiguousarray(x), ids, info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(name: str, x: np.ndarray, loop: bool = True, ids: list[str] | None = None) -> dict:
    print(f"[{name}] {x.shape[0]:,} x {x.shape[1]} vectors", flush=True)
    out = {"n": int(x.shape[0]), "dims": int(x.shape[1])}
    out["recot"] = run_recot(x, ids)
    print(f"  recot       {out['recot']}", flush=True)
    out["faiss_rq"] = run_faiss_rq(x)
    print(f"  faiss_rq    {out['faiss_rq']}", flush=True)
    if loop:
        out["kmeans_loop"] = run_kmeans_loop(x)
        print(f"  kmeans_loop {out['kmeans_loop']}", flush=True)
    ref = out["faiss_rq"]
    out["time_ratio_vs_faiss_rq"] = round(out["recot"]["seconds"] / ref["seconds"], 3)
    out["collision_rate_le_faiss_rq"] = out["recot"]["collision_rate"] <= ref["collision_rate"]
    out["goal_met"] = out["time_ratio_vs_faiss_rq"] <= 1.0 and out["collision_rate_le_faiss_rq"]
    if loop:
        out["time_ratio_vs_kmeans_loop"] = round(out["recot"]["seconds"] / out["kmeans_loop"]["seconds"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20k synthetic vectors instead of 100k")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="faiss OpenMP threads for every contender (default 1: stable on shared machines)")
    ap.add_argument("--no-movielens", action="store_true")
    ap.add_argument("--hard", action="store_true",
                    help="also run single-scale isotropic blobs (a worst case for residual quantizers)")
    ap.add_argument("--skip-loop", action="store_true", help="skip the plain per-level k-means reference")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sids.json"))
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    n = args.n or (20_000 if args.quick else 100_000)
    result = {
        "benchmark": "sids", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "faiss": faiss.__version__,
                    "faiss_threads": args.threads},
        "config": {"levels": LEVELS, "codebook_size": K, "quick": args.quick},
        "goal": "recot time <= 1.0x faiss ResidualQuantizer at equal or lower collision rate",
    }
    x = hier_blobs(n, 384, seed=0)
    result["synthetic"] = {"generator": "hier_blobs(branching=(32, 32, 32), scales=(1, .5, .25), noise=.5)",
                           **compare("synthetic", x, loop=not args.skip_loop)}
    if args.hard:
        x = blobs(n, 384, centers=max(n // 100, 10), seed=0)
        result["synthetic_isotropic"] = {
            "generator": "blobs(n/100 centres, noise norm 0.6): deep levels see isotropic noise (hub codes)",
            **compare("synthetic-isotropic", x, loop=not args.skip_loop)}
    if not args.no_movielens:
        mx, mids, info = movielens_vectors()
        result["movielens_100k"] = {**compare("movielens-100k", mx, loop=True, ids=mids), "build_sids": info}
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k.startswith(("synthetic", "movielens"))}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
