"""Curation benchmark: recot's chain vs an equivalent datatrove 0.10.1 pipeline on the same synthetic CoT
traces, in the same run; plus MinHash near-duplicate recall vs a datasketch reference.

Data (seeded, like BENCHMARKS.md): N traces `<think>reasoning</think>\\nI recommend <SID> (Title).` with
completions of 300–1,600 chars over a 5,000-item catalog; ~10% broken think tags, ~5% invalid SIDs (half
hallucinated, half malformed), ~5% exact duplicates and ~15% near duplicates (1–3 word edits) of other traces.

Contenders, each reading the same Parquet input and writing its result:
- recot: `run_chain(ws, 'bench', 'minimal')` — format + SID grounding + exact dedup + MinHash-LSH near
  dedup (128 perms, threshold 0.8, 5-word shingles), writing ALL rows with decisions + the verdicts table.
- datatrove: LocalPipelineExecutor stages — ParquetReader → ThinkFormatFilter + SidValidityFilter (small
  BaseFilter subclasses written here) → ParquetWriter; ExactDedupSignature / stage 2 / ExactDedupFilter;
  MinhashDedupSignature / Buckets / Cluster / Filter (its default MinhashConfig: 5-grams, 14 buckets × 8
  hashes) → ParquetWriter. Word tokenizer: spaCy (datatrove's English default) when installed, else
  datatrove's WhitespaceTokenizer (faster than spaCy, so the ratio is then conservative).
- recot without MinHash (format + SID + exact) vs one DuckDB SQL query doing the same over the Parquet file
  and writing the result (BENCHMARKS.md's "SQL over Parquet" row).
- MinHash alone: recot's near-dup stage vs rensa used the plain way (per-doc RMinHash + RMinHashLSH) vs
  datasketch (MinHash + MinHashLSH); recall = share of planted near-duplicate pairs with true 5-shingle
  Jaccard ≥ 0.8 that each one puts together.

    python benchmarks/curation.py [--rows 100000] [--seed 0] [--out benchmarks/results/curation.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.chain import run_chain  # noqa: E402
from curation.filters.dedup import NearDedupParams, near_duplicate_clusters  # noqa: E402
from curation.text import normalize_token  # noqa: E402
from storage.datasets import write_version  # noqa: E402
from storage.records import SAMPLE_SCHEMA  # noqa: E402
from storage.sid import SID_RE, find_malformed_sids, format_sid  # noqa: E402
from storage.workspace import Workspace  # noqa: E402

STOP = ("the a an of to in and that it is was for on with as this by at from or but be are not have has "
        "they their user likes watched because so which".split())


# ----------------------------------------------------------------------------------------------- data
def make_catalog(rng: np.random.Generator, n_items: int = 5000) -> tuple[list[str], list[str], list[str]]:
    codes = set()
    while len(codes) < n_items:
        codes.add(tuple(int(x) for x in rng.integers(0, 256, 3)))
    codes = sorted(codes)
    rng.shuffle(codes)
    syll = ["ka", "lo", "mi", "ter", "sa", "ven", "dor", "li", "na", "ro", "ble", "quin", "sha", "tor", "pe"]
    titles = [" ".join("".join(rng.choice(syll, rng.integers(2, 4))).title() for _ in range(rng.integers(1, 4)))
              + f" ({1950 + int(rng.integers(0, 70))})" for _ in range(n_items)]
    return [str(i) for i in range(n_items)], [format_sid(c) for c in codes], titles


def make_traces(n: int, seed: int):
    """Returns (completions, sample meta, catalog, planted near-dup pairs (src, dup), exact pairs)."""
    rng = np.random.default_rng(seed)
    item_ids, sids, titles = make_catalog(rng)
    syll = ["an", "bel", "cor", "dit", "el", "fan", "gor", "hu", "is", "jor", "ka", "lum", "mor", "nel", "or",
            "pra", "qui", "ros", "sel", "tum", "ur", "vel", "wes", "xan", "yor", "zel"]
    vocab = np.array(sorted({"".join(rng.choice(syll, rng.integers(1, 4))) for _ in range(6000)}) + STOP * 30)
    n_items = len(item_ids)
    role = rng.choice(3, size=n, p=[0.80, 0.05, 0.15])  # 0 base, 1 exact dup, 2 near dup
    role[0] = 0
    comps: list[str] = [""] * n
    targets = rng.integers(0, n_items, n)
    base_idx: list[int] = []
    near_pairs: list[tuple[int, int]] = []
    exact_pairs: list[tuple[int, int]] = []
    for i in range(n):
        if role[i] == 0 or not base_idx:
            n_words = int(rng.integers(12, 170))
            words = vocab[rng.integers(0, len(vocab), n_words)].tolist()
            hist = rng.integers(0, n_items, 3)
            for h in hist:  # history SIDs mentioned inside the reasoning
                words.insert(int(rng.integers(0, len(words))), sids[h])
            t = int(targets[i])
            comps[i] = f"<think>{' '.join(words)}.</think>\nI recommend {sids[t]} ({titles[t]})."
            base_idx.append(i)
            continue
        src = base_idx[int(rng.integers(0, len(base_idx)))]
        targets[i] = targets[src]
        if role[i] == 1:
            comps[i] = comps[src]
            exact_pairs.append((src, i))
        else:
            head, sep, tail = comps[src].partition("</think>")
            words = head[len("<think>"):].split(" ")
            for _ in range(int(rng.integers(1, 4))):
                j = int(rng.integers(1, max(2, len(words) - 1)))
                op = rng.integers(0, 3)
                w = str(vocab[rng.integers(0, len(vocab))])
                if op == 0:
                    words[j] = w
                elif op == 1:
                    words.insert(j, w)
                elif len(words) > 3 and not words[j].startswith("<|"):
                    del words[j]
            comps[i] = "<think>" + " ".join(words) + sep + tail
            near_pairs.append((src, i))
    # defects, independently of the roles
    broken = rng.random(n) < 0.10
    for i in np.flatnonzero(broken):
        k = rng.integers(0, 4)
        c = comps[i]
        swapped = c.replace("<think>", "</think>", 1).replace("</think>\n", "<think>\n", 1)
        comps[i] = (c.replace("</think>", "", 1) if k == 0 else c.replace("<think>", "", 1) if k == 1 else
                    "<think>" + c if k == 2 else swapped)
    bad_sid = rng.random(n) < 0.05
    sid_set = set(sids)
    for i in np.flatnonzero(bad_sid):
        t = sids[int(targets[i])]
        if rng.random() < 0.5:
            fake = t
            while fake in sid_set:
                fake = format_sid(tuple(int(x) for x in rng.integers(0, 256, 3)))
            comps[i] = comps[i].replace(t, fake)
        else:
            comps[i] = comps[i].replace(t, t.replace("<s_b_", "<s_c_").replace("<|sid_end|>", "", 1), 1) \
                if rng.random() < 0.5 else comps[i].replace(t, t.replace("<|sid_end|>", ""))
    return comps, targets, (item_ids, sids, titles), near_pairs, exact_pairs


def samples_table(comps: list[str], targets: np.ndarray, catalog) -> pa.Table:
    item_ids, sids, _ = catalog
    n = len(comps)
    msg_type = SAMPLE_SCHEMA.field("messages").type
    offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    roles = pa.array(["user", "assistant"] * n)
    contents = pa.array([x for c in comps for x in ("Recommend the next movie.", c)])
    messages = pa.ListArray.from_arrays(offsets, pa.StructArray.from_arrays([roles, contents], ["role", "content"]),
                                        type=msg_type)
    cols = {name: pa.nulls(n, SAMPLE_SCHEMA.field(name).type) for name in SAMPLE_SCHEMA.names}
    cols.update({
        "sample_id": pa.array([f"s{i:07d}" for i in range(n)]), "prompt_id": pa.array([f"p{i:07d}" for i in range(n)]),
        "task": pa.array(["r3_recommend"] * n), "level": pa.array(["R3"] * n), "mode": pa.array(["blind"] * n),
        "think": pa.array(np.ones(n, bool)), "messages": messages,
        "target_item_ids": pa.array([[item_ids[t]] for t in targets], pa.list_(pa.string())),
        "target_sids": pa.array([[sids[t]] for t in targets], pa.list_(pa.string())),
        "sid_version": pa.array(np.ones(n, np.int32)),
    })
    return pa.table([cols[name] for name in SAMPLE_SCHEMA.names], schema=SAMPLE_SCHEMA)


def build_workspace(root: Path, table: pa.Table, catalog) -> Workspace:
    item_ids, sids, titles = catalog
    ws = Workspace.open(root)
    cat = pa.table({"item_id": item_ids, "title": titles, "sid": sids,
                    "codes": pa.array([[int(x) for x in re.findall(r"_(\d+)>", s)] for s in sids],
                                      pa.list_(pa.int32()))})
    with ws.transaction("bench") as con:
        con.register("cat", cat)
        con.execute("INSERT INTO items (item_id, title, domain) SELECT item_id, title, 'bench' FROM cat")
        con.execute("INSERT INTO item_sids SELECT 1, item_id, codes, sid FROM cat")
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [len(item_ids)])
    write_version(ws, "bench", table, step="bench", schema=SAMPLE_SCHEMA)
    return ws


# ----------------------------------------------------------------------------------------------- recot
def run_recot(ws: Workspace, chain: str | dict, out: str) -> dict:
    t0 = time.perf_counter()
    dv = run_chain(ws, "bench@v1", chain, out=out)
    dt = time.perf_counter() - t0
    f = dv.manifest["funnel"]
    return {"seconds": round(dt, 3), "rows_per_s": round(f["rows"] / dt, 1), "kept": f["kept"],
            "rejected_by": f["rejected_by"], "stage_seconds": {s["name"]: s["seconds"] for s in f["filters"]}}


def run_duckdb_sql(input_glob: str, ws: Workspace, out_dir: Path) -> dict:
    """The same checks without MinHash as one SQL query over Parquet (the SQL-first reference)."""
    import duckdb

    sid_pat = SID_RE.pattern
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"ATTACH '{ws.db_path}' AS cat (READ_ONLY)")
    con.execute(f"""
        COPY (
          WITH s AS (SELECT sample_id, messages[2].content AS c FROM read_parquet('{input_glob}')),
          fmt AS (SELECT *, regexp_matches(c, '^\\s*<think>[\\s\\S]*?</think>\\s*\\S') AND
                           length(c) - length(replace(c, '<think>', '')) = 7 AND
                           length(c) - length(replace(c, '</think>', '')) = 8 AS fmt_ok FROM s),
          occ AS (SELECT sample_id, unnest(regexp_extract_all(c, '{sid_pat}')) AS sid FROM s),
          bad AS (SELECT DISTINCT sample_id FROM occ
                  ANTI JOIN cat.item_sids i ON i.sid = occ.sid AND i.sid_version = 1),
          mal AS (SELECT sample_id FROM s WHERE regexp_matches(regexp_replace(c, '{sid_pat}', '', 'g'),
                                                               '<\\|sid_begin\\|>|<s_[a-z]_\\d+>')),
          ok AS (SELECT * FROM fmt WHERE fmt_ok AND sample_id NOT IN (SELECT sample_id FROM bad)
                 AND sample_id NOT IN (SELECT sample_id FROM mal))
          SELECT sample_id, c FROM ok
          QUALIFY row_number() OVER (PARTITION BY md5_number(regexp_replace(lower(trim(c)), '\\s+', ' ', 'g'))
                                     ORDER BY sample_id) = 1
        ) TO '{out_dir / "sql.parquet"}' (FORMAT parquet)""")
    kept = con.execute(f"SELECT count(*) FROM read_parquet('{out_dir / 'sql.parquet'}')").fetchone()[0]
    con.close()
    dt = time.perf_counter() - t0
    n = pq.ParquetFile(sorted(Path(input_glob).parent.glob("part-*.parquet"))[0]).metadata.num_rows
    return {"seconds": round(dt, 3), "rows_per_s": round(n / dt, 1), "kept": int(kept)}


# ----------------------------------------------------------------------------------------------- datatrove
def run_datatrove(input_parquet_dir: Path, valid_sids: set, work: Path) -> dict:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer

    try:
        import spacy  # noqa: F401

        tokenizer, tok_name = "en", "spaCy (datatrove's English default)"
    except ImportError:
        tokenizer, tok_name = WhitespaceTokenizer(), "WhitespaceTokenizer (spaCy not installed)"

    # datatrove 0.10.1 passes str to xxhash, which xxhash>=4 refuses; restore the old behaviour (UTF-8
    # encode) so datatrove runs with its default hash function rather than a slower one.
    import datatrove.utils.hashes.xxhash as dt_xx
    import xxhash

    dt_xx.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)
    dt_xx.xxhash32 = lambda d: xxhash.xxh32_intdigest(d.encode() if isinstance(d, str) else d)

    struct = re.compile(r"^\s*<think>(.*?)</think>\s*\S", re.S)

    class ThinkFormatFilter(BaseFilter):
        name = "think format"

        def filter(self, doc):
            t = doc.text
            if t.count("<think>") != 1 or t.count("</think>") != 1 or not struct.match(t):
                return False, "broken think tags"
            return True

    class SidValidityFilter(BaseFilter):
        name = "SID validity"

        def filter(self, doc):
            for m in SID_RE.finditer(doc.text):
                if m.group(0) not in valid_sids:
                    return False, "hallucinated SID"
            if find_malformed_sids(doc.text):
                return False, "malformed SID"
            return True

    def adapter(self, data, path, id_in_file):
        return {"text": data["messages"][1]["content"], "id": data["sample_id"], "metadata": {}}

    def norm(doc):
        return " ".join(doc.text.lower().split()).encode()

    ex_cfg = ExactDedupConfig(content_getter=norm)
    mh_cfg = MinhashConfig()
    logs = work / "logs"
    stages = [
        [ParquetReader(str(input_parquet_dir), glob_pattern="part-*.parquet", adapter=adapter),
         ThinkFormatFilter(), SidValidityFilter(), ParquetWriter(str(work / "filtered"))],
        [ParquetReader(str(work / "filtered")), ExactDedupSignature(str(work / "ex_sigs"), ex_cfg)],
        [ExactFindDedups(str(work / "ex_sigs"), str(work / "ex_dups"), ex_cfg)],
        [ParquetReader(str(work / "filtered")), ExactDedupFilter(str(work / "ex_dups"), ex_cfg),
         ParquetWriter(str(work / "exact"))],
        [ParquetReader(str(work / "exact")),
         MinhashDedupSignature(str(work / "mh_sigs"), config=mh_cfg, language=tokenizer)],
        [MinhashDedupBuckets(str(work / "mh_sigs"), str(work / "mh_buckets"), config=mh_cfg)],
        [MinhashDedupCluster(str(work / "mh_buckets"), str(work / "mh_ids"), config=mh_cfg)],
        [ParquetReader(str(work / "exact")), MinhashDedupFilter(str(work / "mh_ids")),
         ParquetWriter(str(work / "out"))],
    ]
    t0 = time.perf_counter()
    stage_s = []
    for i, pipe in enumerate(stages):
        s0 = time.perf_counter()
        tasks = mh_cfg.num_buckets if i == 5 else 1
        LocalPipelineExecutor(pipeline=pipe, tasks=tasks, workers=1, logging_dir=str(logs / f"s{i}"),
                              skip_completed=False).run()
        stage_s.append(round(time.perf_counter() - s0, 3))
    dt = time.perf_counter() - t0
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (work / "out").rglob("*.parquet"))
    return {"seconds": round(dt, 3), "kept": int(kept), "tokenizer": tok_name, "stage_seconds": stage_s}


# ----------------------------------------------------------------------------------------------- MinHash
def shingles(text: str, k: int = 5) -> set:
    words = [w for w in (normalize_token(x) for x in text.lower().split()) if w]
    if len(words) < k:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


def minhash_compare(comps: list[str], near_pairs: list[tuple[int, int]], datasketch_limit: int | None) -> dict:
    import rensa
    from datasketch import MinHash, MinHashLSH

    n = len(comps)
    # ground truth: planted near-duplicate pairs with true 5-shingle Jaccard >= 0.8
    truth = []
    for a, b in near_pairs:
        sa, sb = shingles(comps[a]), shingles(comps[b])
        if sa and sb and len(sa & sb) / len(sa | sb) >= 0.8:
            truth.append((a, b))
    res: dict = {"planted_near_pairs": len(near_pairs), "true_pairs_ge_0_8": len(truth)}

    p = NearDedupParams()
    t0 = time.perf_counter()
    labels, _ = near_duplicate_clusters(pa.array(comps), p)
    dt = time.perf_counter() - t0
    found = sum(1 for a, b in truth if labels[a] >= 0 and labels[a] == labels[b])
    res["recot"] = {"seconds": round(dt, 3), "rows_per_s": round(n / dt, 1),
                    "recall": round(found / max(len(truth), 1), 4), "bands": p.bands, "verify": "exact Jaccard"}

    # rensa, the plain way: python shingling, one RMinHash per doc, RMinHashLSH insert + query
    t0 = time.perf_counter()
    lsh = rensa.RMinHashLSH(0.8, 128, 16)
    mhs = []
    for i, c in enumerate(comps):
        m = rensa.RMinHash(128, 42)
        m.update(list(shingles(c)))
        lsh.insert(i, m)
        mhs.append(m)
    cand = {}
    for a, b in truth:
        cand[(a, b)] = a in set(lsh.query(mhs[b]))
    dt = time.perf_counter() - t0
    res["rensa_plain"] = {"seconds": round(dt, 3), "rows_per_s": round(n / dt, 1),
                          "recall": round(sum(cand.values()) / max(len(truth), 1), 4),
                          "note": "LSH candidates only (no verification), 16 bands x 8 rows"}

    # datasketch reference (slow: optionally on the first `datasketch_limit` rows, speed only)
    m_n = n if datasketch_limit is None else min(n, datasketch_limit)
    t0 = time.perf_counter()
    dlsh = MinHashLSH(threshold=0.8, num_perm=128)
    dms = {}
    for i in range(m_n):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([s.encode() for s in shingles(comps[i])])
        dlsh.insert(i, m)
        dms[i] = m
    sub_truth = [(a, b) for a, b in truth if a < m_n and b < m_n]
    hits = sum(1 for a, b in sub_truth if a in set(dlsh.query(dms[b])))
    dt = time.perf_counter() - t0
    res["datasketch"] = {"rows": m_n, "seconds": round(dt, 3), "rows_per_s": round(m_n / dt, 1),
                         "recall": round(hits / max(len(sub_truth), 1), 4), "true_pairs_in_rows": len(sub_truth),
                         "params": {"b": dlsh.b, "r": dlsh.r}}
    if m_n < n:  # recot's recall on the same subset, for a like-for-like comparison
        res["recot"]["recall_on_datasketch_rows"] = round(
            sum(1 for a, b in sub_truth if labels[a] >= 0 and labels[a] == labels[b]) / max(len(sub_truth), 1), 4)
    return res


# ----------------------------------------------------------------------------------------------- main
NO_MINHASH = {"name": "no-minhash", "filters": [{"type": "format"},
                                              {"type": "sid_grounding", "params": {"check_titles": False}},
                                              {"type": "exact_dedup", "name": "exact_dup"}]}


def sql_only(args: argparse.Namespace) -> dict:
    """recot (format + SID grounding + exact dedup, every row and verdict written) vs one DuckDB SQL query
    (same checks, kept rows only), alternating for `args.only_sql` rounds on one dataset; median ratio."""
    import statistics

    tmp = Path(tempfile.mkdtemp(prefix="recot-bench-curation-"))
    try:
        comps, targets, catalog, _, _ = make_traces(args.rows, args.seed)
        ws = build_workspace(tmp / "ws", samples_table(comps, targets, catalog), catalog)
        del comps
        glob = str(ws.datasets_dir / "bench" / "v1" / "part-*.parquet")
        run_recot(ws, NO_MINHASH, "warmup")
        load_before = os.getloadavg()[0]
        rounds = []
        for r in range(args.only_sql):
            rn = run_recot(ws, NO_MINHASH, f"bench-nominhash-{r}")
            sql = run_duckdb_sql(glob, ws, tmp)
            rounds.append({"recot": rn, "duckdb_sql": sql,
                           "ratio": round(rn["rows_per_s"] / sql["rows_per_s"], 3)})
            print(f"round {r}: recot {rn['seconds']:.2f}s, duckdb {sql['seconds']:.2f}s, ratio {rounds[-1]['ratio']}",
                  flush=True)
        mid = sorted(rounds, key=lambda x: x["ratio"])[len(rounds) // 2]
        section = {"recot": mid["recot"], "duckdb_sql": mid["duckdb_sql"],
                   "ratio_recot_vs_duckdb_sql": round(statistics.median(x["ratio"] for x in rounds), 2),
                   "rounds": [x["ratio"] for x in rounds], "rows": args.rows,
                   "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                   "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        result = json.loads(args.out.read_text()) if args.out.exists() else {"benchmark": "curation"}
        result["without_minhash"] = section
        result.setdefault("goals", {})["without_minhash_ge_0_8x_duckdb_sql"] = \
            section["ratio_recot_vs_duckdb_sql"] >= 0.8
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print("without minhash:", section, flush=True)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasketch-rows", type=int, default=None, help="limit datasketch to the first N rows")
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "curation.json")
    ap.add_argument("--only-sql", type=int, metavar="ROUNDS", default=0,
                    help="only the no-MinHash comparison with DuckDB SQL, ROUNDS alternating rounds (median ratio); "
                         "updates that section of --out and keeps the rest")
    args = ap.parse_args(argv)
    if args.only_sql:
        return sql_only(args)

    tmp = Path(tempfile.mkdtemp(prefix="recot-bench-curation-"))
    try:
        t0 = time.perf_counter()
        comps, targets, catalog, near_pairs, exact_pairs = make_traces(args.rows, args.seed)
        table = samples_table(comps, targets, catalog)
        ws = build_workspace(tmp / "ws", table, catalog)
        lens = np.array([len(c) for c in comps])
        print(f"generated {args.rows:,} traces in {time.perf_counter() - t0:.1f}s "
              f"(completion chars p1 {np.percentile(lens, 1):.0f}, median {np.median(lens):.0f}, "
              f"p99 {np.percentile(lens, 99):.0f})", flush=True)
        input_dir = ws.datasets_dir / "bench" / "v1"

        result: dict = {
            "benchmark": "curation", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "data": {"rows": args.rows, "seed": args.seed, "completion_chars": {
                "min": int(lens.min()), "median": int(np.median(lens)), "max": int(lens.max())},
                "planted_exact_dups": len(exact_pairs), "planted_near_dups": len(near_pairs)},
        }
        rc = run_recot(ws, "minimal", "bench-curated")
        print("recot minimal chain:", rc, flush=True)
        result["recot_chain"] = rc
        if not args.skip_datatrove:
            dt = run_datatrove(input_dir, set(catalog[1]), tmp / "dt")
            dt["rows_per_s"] = round(args.rows / dt["seconds"], 1)
            print("datatrove:", dt, flush=True)
            result["datatrove_chain"] = dt
            result["ratio_recot_vs_datatrove"] = round(rc["rows_per_s"] / dt["rows_per_s"], 2)
        no_mh = {"name": "no-minhash", "filters": [{"type": "format"},
                                                   {"type": "sid_grounding", "params": {"check_titles": False}},
                                                   {"type": "exact_dedup", "name": "exact_dup"}]}
        rn = run_recot(ws, no_mh, "bench-nominhash")
        sql = run_duckdb_sql(str(input_dir / "part-*.parquet"), ws, tmp)
        result["without_minhash"] = {"recot": rn, "duckdb_sql": sql,
                                     "ratio_recot_vs_duckdb_sql": round(rn["rows_per_s"] / sql["rows_per_s"], 2)}
        print("without minhash:", result["without_minhash"], flush=True)
        result["minhash"] = minhash_compare(comps, near_pairs, args.datasketch_rows)
        print("minhash:", result["minhash"], flush=True)
        result["goals"] = {
            "ratio_vs_datatrove_issue_goal_2x": result.get("ratio_recot_vs_datatrove", 0) >= 2.0,
            "ratio_vs_datatrove_benchmarks_target_10x": result.get("ratio_recot_vs_datatrove", 0) >= 10.0,
            "minhash_recall_ge_0_95": result["minhash"]["recot"]["recall"] >= 0.95,
            "minhash_speed_ge_rensa_plain": result["minhash"]["recot"]["rows_per_s"]
            >= result["minhash"]["rensa_plain"]["rows_per_s"],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
