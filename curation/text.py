"""Vectorized text helpers shared by the filters: the completion of a sample, word tokens, word n-gram hashes.

Why not a Python loop per document: a corpus of 100k chains of thought is ~100 MB of text. Lower-casing and
whitespace splitting run in Arrow's C++ kernels; words are hashed once per *distinct* word (a corpus has far
fewer distinct words than words); n-gram hashes are combined with numpy over one flat array. The result
(`flat hashes + row offsets`) feeds rensa's MinHash directly and the repetition filter's counting.
"""
from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PUNCT = str.maketrans("", "", string.punctuation.replace("<", "").replace(">", "").replace("|", "").replace("_", "")
                       + "“”‘’«»–—…")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# Odd 64-bit multipliers for position-dependent n-gram combination (fixed: hashes must be stable across runs).
_MULTS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                   0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
                   0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63], dtype=np.uint64)


def chat_column(table: pa.Table) -> pa.Array:
    """Every message's content joined by newlines (prompt and completion): the identity of a whole sample, for
    exact deduplication of tasks whose answers repeat across different prompts (e.g. next-item alignment)."""
    if table.num_rows == 0:
        return pa.array([], pa.string())
    msgs = table.column("messages").combine_chunks()
    contents = pa.ListArray.from_arrays(msgs.offsets, msgs.values.field("content"))
    return pc.fill_null(pc.binary_join(contents, "\n"), "")


def completion_column(table: pa.Table) -> pa.Array:
    """The assistant's last message per sample (the raw completion, think block included).

    Falls back to `<think>reasoning</think>answer` rebuilt from the parsed columns when a sample has no
    assistant message (e.g. a row written by a tool that only filled reasoning/answer)."""
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.string())
    msgs = table.column("messages").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(msgs), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(msgs)
    off = msgs.offsets.to_numpy()
    last = np.where(lengths > 0, off[:-1] - off[0] + lengths - 1, 0)
    if len(flat):
        roles = flat.field("role").to_numpy(zero_copy_only=False)
        ok = (lengths > 0) & (roles[last] == "assistant")
        comp = pc.if_else(pa.array(ok), pc.take(flat.field("content"), pa.array(last)), pa.nulls(n, pa.string()))
    else:
        comp = pa.nulls(n, pa.string())
    if comp.null_count:
        reasoning = table.column("reasoning").to_pylist()
        answer = table.column("answer").to_pylist()
        out = comp.to_pylist()
        for i, c in enumerate(out):
            if c is None and (reasoning[i] is not None or answer[i] is not None):
                out[i] = (f"<think>{reasoning[i]}</think>" if reasoning[i] is not None else "") + (answer[i] or "")
        comp = pa.array(out, pa.string())
    return comp


@dataclass
class Tokens:
    """Word-token hashes of n documents as one flat uint64 array plus row offsets (len n + 1)."""

    hashes: np.ndarray
    offsets: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), self.counts)


def normalize_token(tok: str) -> str:
    """Lower-cased word without surrounding punctuation (SID tokens keep their `<…>` shape)."""
    return tok.translate(_PUNCT)


# ASCII characters that Arrow's utf8_split_whitespace splits on but ascii_split_whitespace does not (the
# information separators, Unicode bidi class B/S); every other ASCII character is treated alike by both.
_UTF8_ONLY_SPACE = "[\\x1c-\\x1f]"


def _split_lower(texts: pa.Array) -> pa.ListArray:
    """The lower-cased words of each text: `utf8_split_whitespace(utf8_trim_whitespace(utf8_lower(texts)))`, by
    the ASCII kernels (about twice as fast) when every text is ASCII: on ASCII they lower-case alike and split
    alike once the four separators only the UTF-8 kernel splits on are turned into spaces
    (tests/curation/test_curation_internals.py checks all 128 characters).

    Trimmed first: Arrow (26.0.1) splits leading/trailing whitespace into empty words, and the UTF-8 kernel's
    words for a trailing run of whitespace are not even stable — two empty ones, or sometimes one holding a
    space, depending on what the process did before (seen in a chain run; tests: test_curation_internals)."""
    if len(texts) and pc.all(pc.string_is_ascii(texts)).as_py():
        if pc.any(pc.match_substring_regex(texts, _UTF8_ONLY_SPACE)).as_py():
            texts = pc.replace_substring_regex(texts, _UTF8_ONLY_SPACE, " ")
        return pc.ascii_split_whitespace(pc.ascii_trim_whitespace(pc.ascii_lower(texts)))
    return pc.utf8_split_whitespace(pc.utf8_trim_whitespace(pc.utf8_lower(texts)))


MEMO_WORDS = 2_000_000
"""At most this many distinct words are remembered across batches (a bound on the memo's memory)."""


def word_tokens(texts: pa.Array | pa.ChunkedArray, memo: dict[str, tuple[int, bool]] | None = None) -> Tokens:
    """Tokenize: lower-case, split on whitespace, strip punctuation (per distinct word), hash with 64-bit BLAKE2b
    (stable across runs and machines).

    Tokens that are only punctuation disappear. Null texts have no tokens. `memo` (word → (hash, kept)) carries
    the per-word work from one record batch to the next (filled up to MEMO_WORDS words)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    n = len(texts)
    if n == 0:
        return Tokens(np.zeros(0, np.uint64), np.zeros(1, np.int64))
    words = _split_lower(pc.fill_null(texts, ""))
    offsets = words.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    flat = pc.list_flatten(words)
    if len(flat) == 0:
        return Tokens(np.zeros(0, np.uint64), offsets)
    enc = pc.dictionary_encode(flat)
    vocab = enc.dictionary.to_pylist()
    memo = {} if memo is None else memo
    filled: list[tuple[int, bool]] = []
    for w in vocab:
        k = memo.get(w)
        if k is None:
            normed = normalize_token(w)
            k = (int.from_bytes(hashlib.blake2b(normed.encode(), digest_size=8).digest(), "little"), bool(normed))
            if len(memo) < MEMO_WORDS:
                memo[w] = k
        filled.append(k)
    vocab_hash = np.fromiter((k[0] for k in filled), dtype=np.uint64, count=len(vocab))
    vocab_keep = np.fromiter((k[1] for k in filled), dtype=bool, count=len(vocab))
    idx = enc.indices.to_numpy()
    hashes = vocab_hash[idx]
    keep = vocab_keep[idx]
    if not keep.all():
        rows = np.repeat(np.arange(n), np.diff(offsets))
        hashes = hashes[keep]
        counts = np.bincount(rows[keep], minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Tokens(hashes, offsets)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads combined n-gram hashes over all 64 bits."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return h


def ngram_hashes(tok: Tokens, n: int) -> Tokens:
    """Hashes of word n-grams (shingles) per document. A document shorter than n words yields one shingle of
    all its words, so short texts still compare; empty documents yield none."""
    if n < 1 or n > len(_MULTS):
        raise ValueError(f"n-gram size must be 1..{len(_MULTS)}, got {n}")
    counts = tok.counts
    rows = len(counts)
    m = len(tok.hashes)
    if m == 0:
        return Tokens(np.zeros(0, np.uint64), np.zeros(rows + 1, np.int64))
    per_doc = np.where(counts >= n, counts - n + 1, np.where(counts > 0, 1, 0))
    out_offsets = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
    # window starts: for a normal document every word position whose window stays inside the document;
    # for a short one (count < n) only its first word, with the words past its end masked out.
    word_row = tok.row_ids()
    in_doc = np.arange(m) - tok.offsets[:-1][word_row]
    starts = np.flatnonzero((in_doc <= counts[word_row] - n) | ((in_doc == 0) & (counts[word_row] < n)))
    padded = np.concatenate([tok.hashes, np.zeros(n, np.uint64)])
    start_count = counts[word_row[starts]]
    any_short = bool((start_count < n).any())
    with np.errstate(over="ignore"):
        acc = padded[starts] * _MULTS[0]
        for j in range(1, n):
            term = padded[starts + j] * _MULTS[j]
            if any_short:
                term[j >= start_count] = 0
            acc += term
    return Tokens(_mix(acc), out_offsets)


def subset_tokens(tok: Tokens, rows: np.ndarray) -> Tokens:
    """The tokens of `rows` (positions), vectorized: one gather over the flat array."""
    counts = tok.counts[rows]
    offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if offs[-1] == 0:
        return Tokens(np.zeros(0, np.uint64), offs)
    # flat index = start of the row's run + position within the run
    run_of = np.repeat(np.arange(len(rows)), counts)
    idx = tok.offsets[rows][run_of] + (np.arange(offs[-1]) - offs[:-1][run_of])
    return Tokens(tok.hashes[idx], offs)


def text_keys(tok: Tokens, con: duckdb.DuckDBPyConnection | None = None) -> np.ndarray:
    """One 64-bit key per document from its token sequence (order-sensitive): equal keys ⇔ equal normalized
    word sequences (up to 64-bit hash collisions). Empty documents all get key 0.

    DuckDB's hash of the token list (one vectorized pass; a numpy mix-and-reduce over every token took 4-15x
    longer). Keys are for grouping within one DuckDB version, not for storing."""
    n = len(tok.offsets) - 1
    out = np.zeros(n, np.uint64)
    if len(tok.hashes) == 0:
        return out
    lists = pa.LargeListArray.from_arrays(pa.array(np.asarray(tok.offsets, np.int64)),
                                          pa.array(np.asarray(tok.hashes, np.uint64)))
    with (con.cursor() if con is not None else duckdb.connect()) as cur:
        cur.register("t", pa.table({"_row": pa.array(np.arange(n, dtype=np.int64)), "w": lists}))
        h = cur.sql("SELECT hash(w) AS h FROM t ORDER BY _row").fetchnumpy()["h"]
    nz = tok.counts > 0
    out[nz] = np.asarray(h, np.uint64)[nz]
    return out
