"""Build a SID version: item vectors → residual K-means codes → collision level → catalog rows + report.

Everything the build writes (the `sid_versions` row with config and report, and one `item_sids` row per
item) goes in ONE DuckDB transaction, so a crash leaves either a complete version or nothing. The new
version number is max+1, taken inside that transaction under the writer lock.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from storage.errors import ConfigError, NotFound
from storage.redact import redact
from storage.runs import recorded_run
from storage.sid import LETTERS, format_sid
from storage.workspace import Workspace
from synth.sids.embed import embed_texts, item_text, load_user_vectors
from synth.sids.quantize import collision_level, residual_kmeans
from synth.sids.report import collision_rate, quality_report

log = logging.getLogger(__name__)

TEXT_FIELDS = ("title", "categories", "description")


class SidConfig(BaseModel):
    """How SIDs are built. Same config + same items (+ same vectors) → identical codes."""

    model_config = ConfigDict(extra="forbid")

    levels: int = Field(3, ge=1, le=len(LETTERS) - 1, description="codes per SID before the collision level")
    codebook_size: int = Field(256, ge=1, le=65536, description="K: codes per level")
    seed: int = 0
    embedder: str = "minilm"
    text_fields: tuple[str, ...] = TEXT_FIELDS
    vectors_path: str | None = Field(None, description="Parquet with item_id, vector; replaces the embedder")
    balanced: bool = False
    collision_aware: bool = Field(True, description="move colliding items to free last-level codes before "
                                                    "falling back to the extra level")
    batch_size: int = Field(128, ge=1)
    niter: int = Field(20, ge=1, description="k-means iterations per level")
    max_points_per_centroid: int = Field(256, ge=1, description="k-means trains on at most this × K points")
    threads: int | None = Field(None, ge=1, description="faiss threads (None: 1 for small catalogs, else default)")

    def model_post_init(self, __context: Any) -> None:
        bad = [f for f in self.text_fields if f not in TEXT_FIELDS]
        if bad:
            raise ConfigError(f"unknown text field(s) {bad}; use any of {list(TEXT_FIELDS)}")


@dataclass
class SidBuildResult:
    sid_version: int
    report: dict
    run_id: str
    item_ids: list[str]
    codes: list[tuple[int, ...]]
    sids: list[str]


@dataclass
class Quantized:
    """Codes and report of a build, before anything is written (also what the benchmark times)."""

    codes: list[tuple[int, ...]]
    sids: list[str]
    report: dict


def quantize_items(item_ids: list[str], vectors: np.ndarray, config: SidConfig) -> Quantized:
    """Residual K-means + collision level + quality report on given vectors (no catalog access)."""
    t0 = time.perf_counter()
    q = residual_kmeans(vectors, config.levels, config.codebook_size, seed=config.seed, niter=config.niter,
                        max_points_per_centroid=config.max_points_per_centroid, balanced=config.balanced,
                        collision_aware=config.collision_aware, item_ids=item_ids, threads=config.threads)
    extra, coll = collision_level(q.codes, item_ids)
    base = q.codes.tolist()
    full = [tuple(b) + ((int(e),) if e >= 0 else ()) for b, e in zip(base, extra.tolist())]
    sids = [format_sid(c) for c in full]
    if len(set(sids)) != len(sids):  # guaranteed by collision_level; a failure here is a bug, never data
        raise AssertionError("SIDs are not unique after the collision level")
    report = quality_report(vectors, q.codes, q.residual, full, config.codebook_size, q.k_per_level, coll)
    report["collision_rate_nearest"] = round(collision_rate(q.nearest_codes), 6)
    report["reassigned_last_level"] = int(q.reassigned)
    report["collision_aware"] = config.collision_aware
    report["quantize_s"] = round(time.perf_counter() - t0, 4)
    return Quantized(codes=full, sids=sids, report=report)


def _load_items(ws: Workspace) -> list[tuple]:
    rows = ws.query("SELECT item_id, title, categories, description FROM items ORDER BY item_id")
    if not rows:
        raise NotFound(f"no items in workspace {ws.root}; run `recot ingest ...` first")
    return rows


def build_sids(ws: Workspace, config: SidConfig | None = None, *, progress: bool = False) -> SidBuildResult:
    """Build and store a new SID version for every item in the catalog."""
    config = config or SidConfig()
    cfg = config.model_dump(mode="json")
    with ws.writer("sids"):
        with recorded_run(ws, "sids", cfg) as run:
            result = _build(ws, config, cfg, run.id, progress)
            run.stats = {"sid_version": result.sid_version, **{
                k: result.report[k] for k in ("n_items", "collision_rate_before", "collision_rate_after", "total_s")}}
    return result


def _build(ws: Workspace, config: SidConfig, cfg: dict, run_id: str, progress: bool) -> SidBuildResult:
    t0 = time.perf_counter()
    rows = _load_items(ws)
    item_ids = [str(r[0]) for r in rows]
    if config.vectors_path:
        vectors = load_user_vectors(config.vectors_path, item_ids)
        emb = {"model": f"user vectors ({Path(config.vectors_path).name})", "dims": int(vectors.shape[1]),
               "embedded": 0, "reused": 0}
    else:
        texts = [item_text(r[1], r[2], r[3], config.text_fields) for r in rows]
        empty = [iid for iid, t in zip(item_ids, texts) if not t]
        if empty:
            log.warning("%d item(s) have no text to embed (e.g. %s)", len(empty), empty[:3])
        vectors, emb = embed_texts(texts, cache_root=ws.cache_dir, embedder=config.embedder,
                                   batch_size=config.batch_size, progress=progress)
    embed_s = time.perf_counter() - t0
    qz = quantize_items(item_ids, vectors, config)
    report = {**qz.report,
              "embedding": {**emb, "seconds": round(embed_s, 3)},
              "balanced": config.balanced, "seed": config.seed}
    report["total_s"] = round(time.perf_counter() - t0, 3)

    table = pa.table({
        "item_id": pa.array(item_ids, pa.string()),
        "codes": pa.array([list(c) for c in qz.codes], pa.list_(pa.int32())),
        "sid": pa.array(qz.sids, pa.string()),
    })
    with ws.transaction("sids") as con:
        version = int(con.execute("SELECT coalesce(max(sid_version), 0) + 1 FROM sid_versions").fetchone()[0])
        report["sid_version"] = version
        report["run_id"] = run_id
        con.execute("INSERT INTO sid_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [version, datetime.now(UTC), config.levels, config.codebook_size, len(item_ids),
                     json.dumps(redact(cfg)), json.dumps(report)])
        con.register("_new_sids", table)
        con.execute("INSERT INTO item_sids SELECT ?, item_id, codes, sid FROM _new_sids", [version])
        con.unregister("_new_sids")
    log.info("SID version %d: %d items, collision rate %.4f → 0", version, len(item_ids),
             report["collision_rate_before"])
    return SidBuildResult(sid_version=version, report=report, run_id=run_id, item_ids=item_ids,
                          codes=qz.codes, sids=qz.sids)
