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
"""
from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import rensa
from pydantic import model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.base import FilterContext, FilterParams, SetFilter, Verdicts, register
from curation.text import Tokens, ngram_hashes, subset_tokens, text_keys, word_tokens


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
class ExactDedupFilter(SetFilter[ExactDedupParams], type_name="exact_dedup", review_label="other"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: ExactDedupParams = self.params
        n = table.num_rows
        if p.normalize:
            keys = text_keys(ctx.tokens(p.field, table))
        else:
            keys = np.array([hash_text(x) for x in table.column(p.field).to_pylist()], dtype=np.uint64)
        t = pa.table({"_row": pa.array(np.arange(n), pa.int64()), "h": pa.array(keys, pa.uint64()),
                      "sample_id": table.column("sample_id"), "prompt_id": table.column("prompt_id"),
                      "rank": pa.array(np.nan_to_num(ctx.rank_score, nan=0.0))})
        part = "prompt_id, h" if p.per_prompt else "h"
        con = duckdb.connect()
        try:
            con.register("t", t)
            res = con.sql(f"""
                SELECT _row, first_value(sample_id) OVER w AS best, count(*) OVER (PARTITION BY {part}) AS size,
                       row_number() OVER w AS rn
                FROM t WINDOW w AS (PARTITION BY {part} ORDER BY rank DESC, sample_id)
                QUALIFY size > 1""").to_arrow_table()
        finally:
            con.close()
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


def _band_pairs(sig: np.ndarray, bands: int) -> np.ndarray | None:
    """Candidate pairs (rows of `sig` sharing a bucket in some band), unique and sorted; None when there are
    none."""
    r = sig.shape[1] // bands
    mult = np.array([((0x9E3779B97F4A7C15 ^ (i * 0x632BE59BD9B4E019)) & 0xFFFFFFFFFFFFFFFF) | 1 for i in range(r)],
                    dtype=np.uint64)
    pairs = []
    with np.errstate(over="ignore"):
        for b in range(bands):
            key = (sig[:, b * r:(b + 1) * r] * mult).sum(axis=1)
            order = np.lexsort((np.arange(len(key)), key))
            k = key[order]
            same = np.r_[False, k[1:] == k[:-1]]          # member i shares the bucket of member i-1
            if not same.any():
                continue
            first = np.maximum.accumulate(np.where(~same, np.arange(len(k)), 0))
            idx = np.flatnonzero(same)
            # each bucket member is linked to its predecessor (chain) and to the bucket's first member (star):
            # all pairs for buckets of ≤ 3 members; for larger buckets a subset (the other bands and the
            # transitive closure of the verified links usually supply the rest)
            pairs.append(np.stack([order[idx - 1], order[idx]], 1))
            star = idx[first[idx] != idx - 1]
            if len(star):
                pairs.append(np.stack([order[first[star]], order[star]], 1))
    if not pairs:
        return None
    return np.unique(np.sort(np.concatenate(pairs), axis=1), axis=0)


@register
class NearDedupFilter(SetFilter[NearDedupParams], type_name="near_dedup", review_label="other"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: NearDedupParams = self.params
        n = table.num_rows
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
