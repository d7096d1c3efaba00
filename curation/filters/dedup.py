"""Exact and near-duplicate removal. Both keep the *best* sample of each group: the highest rank score so
far (the sum of the scores earlier filters gave the sample), ties broken by the smallest sample_id — so the
result does not depend on row order.

Exact: rows are grouped by a 64-bit key of the normalized text — the sequence of lower-cased words with
punctuation stripped (`curation.text`), so case, whitespace and punctuation do not hide a duplicate — and
one DuckDB window picks the best of each group (`normalize: false` hashes the raw text instead).

Near (MinHash-LSH, rensa): word 5-gram shingles (`curation.text`, vectorized), 128-permutation MinHash
signatures computed by rensa over one flat hash buffer, rensa's banded LSH to flag rows that share a band
with any other row, then — on the flagged rows only — the same banding in numpy to list candidate pairs,
each verified by the *exact* Jaccard of the two shingle sets (≥ threshold), and connected components as
clusters. Exact verification means no false positives, and recall is limited only by the banding
(16 bands × 8 rows: a pair at Jaccard 0.8 becomes a candidate with probability 1 − (1 − 0.8⁸)¹⁶ ≈ 0.95,
at 0.85 ≈ 0.99).

Distributed (`--executor ray`, or any executor in storage/executor.py): both run as a map stage plus
partitioned set-level tasks, with the same verdicts as in-process. Exact: the row keys are computed per batch
(`map_batches`), rows are partitioned by key (`h mod P`), and each partition runs the same DuckDB window — a
group never straddles two partitions. Near: signatures, band keys and shingle sets are computed per batch;
the (band, bucket key, row) triples are partitioned by bucket, each partition lists its buckets' candidate
pairs (the same chain + star links as in-process), the pairs are verified by exact Jaccard in P tasks, and
the driver only joins the verified edges into clusters (connected components over the few linked rows).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rensa
from pydantic import model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.base import FilterContext, FilterParams, SetFilter, Verdicts, register
from curation.text import Tokens, ngram_hashes, subset_tokens, text_keys, word_tokens
from storage.executor import map_batches, map_partitions

DEFAULT_PARTITIONS = 8
"""Partitions of a distributed dedup (at least the cluster's worker count; more only adds task overhead)."""


class _Distributable:
    """Set-level filters that can run partitioned on an executor; the chain hands them its executor."""

    distributed = True
    executor: str = "local"
    partitions: int = DEFAULT_PARTITIONS

    def on_executor(self, executor: str, partitions: int | None = None) -> Any:
        """A copy of this filter that runs partitioned on `executor`."""
        other = copy.copy(self)
        other.executor = executor
        other.partitions = partitions or self.partitions
        return other


def _best_order(sample_ids: list[str], rank: np.ndarray) -> np.ndarray:
    """Row order best-first: rank score descending, then sample_id ascending."""
    r = np.nan_to_num(rank, nan=0.0)
    return np.lexsort((np.array(sample_ids, dtype=object).astype(str), -r))


class ExactDedupParams(FilterParams):
    field: str = "_completion"
    normalize: bool = True
    per_prompt: bool = False
    """True: only identical texts for the same prompt_id are duplicates."""


@register
class ExactDedupFilter(_Distributable, SetFilter[ExactDedupParams], type_name="exact_dedup",
                       review_label="other"):
    def reads(self) -> tuple[str, ...]:
        return (self.params.field, "sample_id", "prompt_id")

    def prepare(self, batch: pa.Table, ctx: FilterContext) -> pa.Table:
        """In-process: each row's 64-bit text key instead of its text (the chain keeps 8 bytes per row)."""
        if self.executor != "local":
            return batch
        p: ExactDedupParams = self.params
        if p.normalize:  # the batch's word tokens are shared with the filters that read the same field
            with ctx.sql() as con:
                keys = text_keys(ctx.tokens(p.field, batch), con)
        else:
            keys = np.array([hash_text(x) for x in batch.column(p.field).to_pylist()], dtype=np.uint64)
        return pa.table({"sample_id": batch.column("sample_id"), "prompt_id": batch.column("prompt_id"),
                         KEY: pa.array(keys, pa.uint64())})

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: ExactDedupParams = self.params
        n = table.num_rows
        if KEY in table.column_names:  # prepared by the chain, batch by batch
            keys = table.column(KEY).to_numpy()
        elif self.executor != "local":
            keys = map_batches(table.select([p.field]).rename_columns(["text"]),
                               partial(_exact_key_batch, normalize=p.normalize), executor=self.executor,
                               batch_size=EXECUTOR_BATCH_ROWS).column("h").to_numpy()
        elif p.normalize:
            keys = text_keys(ctx.tokens(p.field, table))
        else:
            keys = np.array([hash_text(x) for x in table.column(p.field).to_pylist()], dtype=np.uint64)
        t = pa.table({"_row": pa.array(np.arange(n), pa.int64()), "h": pa.array(keys, pa.uint64()),
                      "sample_id": table.column("sample_id"), "prompt_id": table.column("prompt_id"),
                      "rank": pa.array(np.nan_to_num(ctx.rank_score, nan=0.0))})
        if self.executor != "local":
            parts = _split_by(t, keys, self.partitions)
            res = pa.concat_tables(map_partitions(partial(exact_groups, per_prompt=p.per_prompt), parts,
                                                  executor=self.executor))
        else:
            res = exact_groups(t, per_prompt=p.per_prompt)
        reasons: list[str | None] = [None] * n
        keep = np.ones(n, bool)
        rows = res.column("_row").to_numpy()
        rn = res.column("rn").to_numpy()
        best = res.column("best").to_pylist()
        size = res.column("size").to_numpy()
        what = "normalized text" if p.normalize else "text"
        for r, k, b, s in zip(rows, rn, best, size):
            if k > 1:
                keep[r] = False
                reasons[r] = f"exact duplicate: same {what} as {b} (group of {s}, kept {b})"
        return Verdicts(keep, reasons, np.full(n, np.nan))


EXECUTOR_BATCH_ROWS = 8192
KEY = "_exact_key"
ELIG, BANDS = "_near_eligible", "_near_bands"


def exact_groups(t: pa.Table, per_prompt: bool = False) -> pa.Table:
    """Rows of `t` (_row, h, sample_id, prompt_id, rank) in a duplicate group: `_row`, the group's best
    sample_id, its size and the row's rank in it (1 = kept)."""
    part = "prompt_id, h" if per_prompt else "h"
    con = duckdb.connect()
    try:
        con.register("t", t)
        return con.sql(f"""
            SELECT _row, first_value(sample_id) OVER w AS best, count(*) OVER (PARTITION BY {part}) AS size,
                   row_number() OVER w AS rn
            FROM t WINDOW w AS (PARTITION BY {part} ORDER BY rank DESC, sample_id)
            QUALIFY size > 1""").to_arrow_table()
    finally:
        con.close()


def _exact_key_batch(batch: pa.Table, normalize: bool = True, con: duckdb.DuckDBPyConnection | None = None
                     ) -> pa.Table:
    """Map stage of distributed exact dedup: each row's 64-bit text key (row-local)."""
    col = batch.column("text")
    if normalize:
        keys = text_keys(word_tokens(col), con)
    else:
        keys = np.array([hash_text(x) for x in col.to_pylist()], dtype=np.uint64)
    return pa.table({"h": pa.array(keys, pa.uint64())})


def _split_by(t: pa.Table, keys: np.ndarray, parts: int) -> list[pa.Table]:
    """`t` split into `parts` tables by `keys mod parts` (rows with equal keys land together)."""
    pid = (np.asarray(keys, np.uint64) % np.uint64(parts)).astype(np.int64)
    order = np.argsort(pid, kind="stable")
    bounds = np.searchsorted(pid[order], np.arange(parts + 1))
    return [t.take(pa.array(order[bounds[i]:bounds[i + 1]], pa.int64())) for i in range(parts)
            if bounds[i + 1] > bounds[i]]


def hash_text(text: str | None) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b((text or "").encode(), digest_size=8).digest(), "little")


class NearDedupParams(FilterParams):
    field: str = "_completion"
    num_perm: int = 128
    threshold: float = 0.8
    shingle_words: int = 5
    min_words: int = 10
    """Texts shorter than this many words are left to exact dedup: a one-SID or one-title answer has too few
    shingles for a meaningful Jaccard, and the same short answer to different prompts is not a duplicate."""
    bands: int = 16
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> NearDedupParams:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        if not 0 < self.threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        return self


def minhash_matrix(sh: Tokens, num_perm: int, seed: int) -> Any:
    return rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        np.ascontiguousarray(sh.hashes, dtype=np.uint64), sh.offsets.astype(np.uint64), num_perm, seed)


def near_duplicate_clusters(texts: pa.Array | Tokens, p: NearDedupParams
                            ) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Cluster label per text (−1: no near duplicate) and the verified pairs' exact Jaccard. `texts` may be
    the texts or their word tokens (`curation.text.word_tokens`)."""
    tok = texts if isinstance(texts, Tokens) else word_tokens(texts)
    n = len(tok.offsets) - 1
    labels = np.full(n, -1, np.int64)
    sh = ngram_hashes(tok, p.shingle_words)
    has = np.flatnonzero((sh.counts > 0) & (tok.counts >= p.min_words))
    if len(has) < 2:
        return labels, {}
    sub = subset_tokens(sh, has) if len(has) < n else sh
    mat = minhash_matrix(sub, p.num_perm, p.seed)
    lsh = rensa.RMinHashLSH(p.threshold, p.num_perm, p.bands)
    flags = np.asarray(lsh.query_duplicate_flags_matrix_one_shot(mat), dtype=bool)
    cand = has[flags]
    if len(cand) < 2:
        return labels, {}
    csh = subset_tokens(sh, cand)
    sig = np.array(minhash_matrix(csh, p.num_perm, p.seed).to_rows(), dtype=np.uint64)
    pr = _band_pairs(sig, p.bands)
    if pr is None:
        return labels, {}
    sets = [np.unique(csh.hashes[csh.offsets[i]:csh.offsets[i + 1]]) for i in range(len(cand))]
    sims = {}
    keep_edges = []
    for a, b in pr:
        sa, sb = sets[a], sets[b]
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        j = inter / (len(sa) + len(sb) - inter)
        if j >= p.threshold:
            keep_edges.append((a, b))
            sims[(int(cand[a]), int(cand[b]))] = j
    if not keep_edges:
        return labels, sims
    e = np.array(keep_edges)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(cand), len(cand)))
    _, comp = connected_components(g, directed=False)
    in_edge = np.zeros(len(cand), bool)
    in_edge[e.ravel()] = True
    labels[cand[in_edge]] = comp[in_edge]
    return labels, sims


def band_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """One 64-bit bucket key per row and band (rows × bands): equal keys ⇔ equal band values (up to hash
    collisions)."""
    r = sig.shape[1] // bands
    mult = np.array([((0x9E3779B97F4A7C15 ^ (i * 0x632BE59BD9B4E019)) & 0xFFFFFFFFFFFFFFFF) | 1 for i in range(r)],
                    dtype=np.uint64)
    with np.errstate(over="ignore"):
        return np.stack([(sig[:, b * r:(b + 1) * r] * mult).sum(axis=1) for b in range(bands)], axis=1) \
            if len(sig) else np.zeros((0, bands), np.uint64)


def _band_pairs(sig: np.ndarray, bands: int) -> np.ndarray | None:
    """Candidate pairs (rows of `sig` sharing a bucket in some band), unique and sorted; None when there are
    none."""
    n = len(sig)
    pr = bucket_pairs(np.repeat(np.arange(bands, dtype=np.int64)[None, :], n, 0).ravel(),
                      band_keys(sig, bands).ravel(), np.repeat(np.arange(n, dtype=np.int64), bands))
    return pr if len(pr) else None


def bucket_pairs(band: np.ndarray, key: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Candidate pairs (k × 2, sorted, unique) from (band, bucket key, row) triples: each bucket member is
    linked to its predecessor (chain) and to the bucket's first member (star), in row order — all pairs for
    buckets of ≤ 3 members; for larger buckets a subset (the other bands and the transitive closure of the
    verified links usually supply the rest). Only rows within one bucket are linked, so triples may be split
    by bucket over partitions and the union of their pairs is the same."""
    if len(row) < 2:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((row, key, band))
    k, b, r = key[order], band[order], row[order]
    same = np.r_[False, (k[1:] == k[:-1]) & (b[1:] == b[:-1])]   # member i shares the bucket of member i-1
    if not same.any():
        return np.zeros((0, 2), np.int64)
    first = np.maximum.accumulate(np.where(~same, np.arange(len(k)), 0))
    idx = np.flatnonzero(same)
    pairs = [np.stack([r[idx - 1], r[idx]], 1)]
    star = idx[first[idx] != idx - 1]
    if len(star):
        pairs.append(np.stack([r[first[star]], r[star]], 1))
    return np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)


def _bucket_pairs_task(part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    return bucket_pairs(*part)


def _verify_task(part: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> np.ndarray:
    """Exact Jaccard of candidate pairs (local row indices into the given shingle sets); the pairs ≥ threshold
    as rows (a, b, jaccard)."""
    pairs, hashes, offsets, threshold = part
    sets = [hashes[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    out = []
    for a, b in pairs:
        sa, sb = sets[a], sets[b]
        inter = len(np.intersect1d(sa, sb, assume_unique=True))
        j = inter / (len(sa) + len(sb) - inter)
        if j >= threshold:
            out.append((a, b, j))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


def near_band_keys(tok: Tokens, p: NearDedupParams) -> tuple[np.ndarray, np.ndarray]:
    """Per document: eligible for near dedup (enough words and shingles), and its `p.bands` LSH bucket keys (zero
    when not eligible). Row-local."""
    n = len(tok.offsets) - 1
    sh = ngram_hashes(tok, p.shingle_words)
    elig = (sh.counts > 0) & (tok.counts >= p.min_words)
    has = np.flatnonzero(elig)
    keys = np.zeros((n, p.bands), np.uint64)
    if len(has):
        sub = subset_tokens(sh, has)
        sig = np.array(minhash_matrix(sub, p.num_perm, p.seed).to_rows(), dtype=np.uint64)
        keys[has] = band_keys(sig, p.bands)
    return elig, keys


def shingle_sets(tok: Tokens, p: NearDedupParams) -> pa.ListArray:
    """Per document, its sorted unique shingle hashes (what the exact Jaccard of a candidate pair is taken on)."""
    sh = ngram_hashes(tok, p.shingle_words)
    sets = [np.unique(sh.hashes[sh.offsets[i]:sh.offsets[i + 1]]) for i in range(len(sh.offsets) - 1)]
    offs = np.concatenate([[0], np.cumsum([len(x) for x in sets])]).astype(np.int64)
    flat = np.concatenate(sets) if sets else np.zeros(0, np.uint64)
    return pa.LargeListArray.from_arrays(pa.array(offs, pa.int64()), pa.array(flat, pa.uint64()))


def _near_map_batch(batch: pa.Table, p: NearDedupParams) -> pa.Table:
    """Map stage of distributed near dedup (row-local): eligibility, band keys and the sorted unique shingle set."""
    tok = word_tokens(batch.column("text"))
    elig, keys = near_band_keys(tok, p)
    return pa.table({"elig": pa.array(elig, pa.bool_()),
                     "bands": pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel(), pa.uint64()), p.bands),
                     "shingles": shingle_sets(tok, p)})


def near_duplicate_clusters_partitioned(texts: pa.Array | pa.ChunkedArray, p: NearDedupParams, *,
                                        executor: str = "local", partitions: int = DEFAULT_PARTITIONS
                                        ) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """`near_duplicate_clusters` as map + partitioned tasks on `executor` (see the module doc); same result."""
    n = len(texts)
    mapped = map_batches(pa.table({"text": texts}), partial(_near_map_batch, p=p), executor=executor,
                         batch_size=EXECUTOR_BATCH_ROWS)
    shingles = mapped.column("shingles").combine_chunks()
    bands = pc.list_flatten(mapped.column("bands")).to_numpy().reshape(n, p.bands)
    return clusters_from_bands(mapped.column("elig").to_numpy(zero_copy_only=False), bands,
                               lambda rows: shingles.take(pa.array(rows, pa.int64())), p, executor=executor,
                               partitions=partitions)


def clusters_from_bands(elig: np.ndarray, bands: np.ndarray, shingles_of: Callable[[np.ndarray], pa.Array],
                        p: NearDedupParams, *, executor: str = "local", partitions: int = DEFAULT_PARTITIONS
                        ) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Near-duplicate clusters from each row's eligibility and band keys (n × bands): candidate pairs from shared
    buckets (partitioned by bucket), verified by the exact Jaccard of the shingle sets `shingles_of(rows)` gives
    for the rows in some candidate pair only (sorted unique hashes per row, aligned with `rows`)."""
    n = len(elig)
    labels = np.full(n, -1, np.int64)
    rows = np.flatnonzero(elig)
    if len(rows) < 2:
        return labels, {}
    if executor == "local":  # band by band: a bucket is one band's key, so the same pairs, O(rows) memory at a time
        found = [x for b in range(p.bands)
                 if len(x := bucket_pairs(np.full(len(rows), b, np.int64), bands[rows, b], rows))]
    else:
        sub = bands[rows]
        band = np.repeat(np.arange(p.bands, dtype=np.int64)[None, :], len(rows), 0).ravel()
        key = sub.ravel()
        row = np.repeat(rows, p.bands)
        with np.errstate(over="ignore"):
            pid = ((key + band.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) % np.uint64(partitions)).astype(int)
        order = np.argsort(pid, kind="stable")
        cuts = np.searchsorted(pid[order], np.arange(partitions + 1))
        parts = [(band[o], key[o], row[o]) for o in (order[cuts[i]:cuts[i + 1]] for i in range(partitions))
                 if len(o) > 1]
        found = [x for x in map_partitions(_bucket_pairs_task, parts, executor=executor) if len(x)]
    if not found:
        return labels, {}
    pairs = np.unique(np.concatenate(found), axis=0)
    involved_all = np.unique(pairs)
    shingles = shingles_of(involved_all)
    chunks = []
    for chunk in np.array_split(pairs, min(partitions, len(pairs))):
        involved, local = np.unique(chunk, return_inverse=True)
        sub = shingles.take(pa.array(np.searchsorted(involved_all, involved), pa.int64()))
        offs = sub.offsets.to_numpy() - sub.offsets[0].as_py()
        chunks.append((local.reshape(-1, 2), pc.list_flatten(sub).to_numpy(), offs, p.threshold, involved))
    verified = map_partitions(_verify_task, [c[:4] for c in chunks], executor=executor)
    edges, sims = [], {}
    for (_, _, _, _, involved), v in zip(chunks, verified):
        for a, b, j in v:
            ga, gb = int(involved[int(a)]), int(involved[int(b)])
            edges.append((ga, gb))
            sims[(ga, gb)] = float(j)
    if not edges:
        return labels, sims
    e = np.array(edges)
    nodes, local = np.unique(e, return_inverse=True)
    local = local.reshape(-1, 2)
    g = coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(nodes), len(nodes)))
    _, comp = connected_components(g, directed=False)
    labels[nodes] = comp
    return labels, sims


@register
class NearDedupFilter(_Distributable, SetFilter[NearDedupParams], type_name="near_dedup", review_label="other"):
    def reads(self) -> tuple[str, ...]:
        return (self.params.field, "sample_id")

    def prepare(self, batch: pa.Table, ctx: FilterContext) -> pa.Table:
        """In-process: each row's eligibility and band keys instead of its text (the chain keeps 8 bytes per band
        per row); `check` reads the text of the rows in candidate pairs again (`FilterContext.column_of`)."""
        if self.executor != "local" or ctx.source is None:
            return batch
        elig, keys = near_band_keys(ctx.tokens(self.params.field, batch), self.params)
        return pa.table({"sample_id": batch.column("sample_id"), ELIG: pa.array(elig, pa.bool_()),
                         BANDS: pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel(), pa.uint64()),
                                                                  self.params.bands)})

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: NearDedupParams = self.params
        n = table.num_rows
        if BANDS in table.column_names:  # prepared by the chain, batch by batch
            bands = pc.list_flatten(table.column(BANDS).combine_chunks()).to_numpy().reshape(n, p.bands)

            def shingles_of(rows: np.ndarray) -> pa.Array:  # a slice at a time: tokens' temporaries stay small
                texts = ctx.column_of(p.field, rows)
                step = EXECUTOR_BATCH_ROWS
                return pa.concat_arrays([shingle_sets(word_tokens(texts.slice(i, step)), p)
                                         for i in range(0, len(texts), step)])

            labels, sims = clusters_from_bands(table.column(ELIG).to_numpy(zero_copy_only=False), bands, shingles_of,
                                               p, partitions=self.partitions)
        elif self.executor != "local":
            labels, sims = near_duplicate_clusters_partitioned(table.column(p.field), p, executor=self.executor,
                                                               partitions=self.partitions)
        else:
            labels, sims = near_duplicate_clusters(ctx.tokens(p.field, table), p)
        reasons: list[str | None] = [None] * n
        keep = np.ones(n, bool)
        score = np.full(n, np.nan)
        rows = np.flatnonzero(labels >= 0)
        if len(rows):
            ids = table.column("sample_id").to_pylist()
            sub_ids = [ids[i] for i in rows]
            order = rows[_best_order(sub_ids, ctx.rank_score[rows])]
            best_of: dict[int, int] = {}
            size = np.bincount(labels[rows])
            for r in order:  # best-first: the first row seen of each cluster is kept
                lab = labels[r]
                if lab not in best_of:
                    best_of[lab] = r
                    continue
                b = best_of[lab]
                keep[r] = False
                j = sims.get((min(r, b), max(r, b)))
                how = f"Jaccard {j:.2f} with {ids[b]}" if j is not None else f"linked to {ids[b]} through the cluster"
                reasons[r] = f"near duplicate: {how} (cluster of {size[lab]}, kept {ids[b]})"
        return Verdicts(keep, reasons, score)
