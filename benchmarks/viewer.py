"""Viewer paging benchmark: the trace browser's page queries on a 1M-sample dataset version vs the naive
approach (load the whole version into pandas, then filter and slice), measured in the same run.

Data (seeded): N samples in SAMPLE_SCHEMA-like columns (task, level, mode, teacher, user_id, keep,
rejected_by, reasoning ~200 chars, answer with a SID), written as one dataset version with
`storage.datasets.write_version` (Parquet parts of 250k rows, zstd).

Measured (median of R repeats each, cold in-memory DuckDB connection per query, like the viewer):
- first page (50 rows, no filter), a page deep in a filtered list (task + verdict, offset 5,000),
  a full-text search page (ILIKE-style `contains` over reasoning+answer), and the count that goes with a
  filtered page;
- reference: `pandas.read_parquet` of the whole version + the same filter + slice (what "load everything
  into pandas" costs per page).
Reports seconds and ratios reference / viewer (how many times faster the viewer's query is).

    python benchmarks/viewer.py [--rows 1000000] [--repeats 3] [--out benchmarks/results/viewer.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.datasets import write_version  # noqa: E402
from storage.workspace import Workspace  # noqa: E402
from ui.viewer import queries as q  # noqa: E402


def make_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    tasks = np.array(["r3_recommend", "r2_chain", "r1_derive", "align_item"])[rng.integers(0, 4, n)]
    words = np.array(["the", "user", "enjoys", "crime", "drama", "films", "from", "the", "nineties", "and",
                      "dislikes", "slow", "romance", "so", "next", "pick", "is", "a", "thriller", "with"])
    base = " ".join(words[rng.integers(0, len(words), 35)])
    reasoning = np.char.add(np.char.add(base, " #"), i.astype(str))
    needle = rng.integers(0, n, 20)
    reasoning[needle] = np.char.add(reasoning[needle], " unique-needle")
    a, b, c = rng.integers(0, 256, (3, n))
    answer = np.char.add(np.char.add(np.char.add(np.char.add(np.char.add(
        "<|sid_begin|><s_a_", a.astype(str)), "><s_b_"), b.astype(str)), "><s_c_"), c.astype(str))
    answer = np.char.add(answer, "><|sid_end|>")
    keep = rng.random(n) > 0.3
    return pa.table({
        "sample_id": pa.array(np.char.add("s", i.astype(str))),
        "task": pa.array(tasks), "level": pa.array(np.where(tasks == "align_item", "alignment", "R3")),
        "mode": pa.array(np.array(["none", "hint", "blind"])[rng.integers(0, 3, n)]),
        "teacher": pa.array(np.array(["openai:gpt-4o-mini", "local:smollm2"])[rng.integers(0, 2, n)]),
        "user_id": pa.array(np.char.add("u", rng.integers(0, 6040, n).astype(str))),
        "reasoning": pa.array(reasoning), "answer": pa.array(answer),
        "keep": pa.array(keep), "rejected_by": pa.array(np.where(keep, None, "judge")),
    })


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "viewer.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        t0 = time.perf_counter()
        dv = write_version(ws, "bench", make_table(args.rows, args.seed), step="bench")
        build_s = time.perf_counter() - t0
        print(f"built {dv.rows:,} samples in {build_s:.1f}s")

        cases = {
            "first_page": (q.TraceFilter(), 0),
            "filtered_deep_page": (q.TraceFilter(task="r2_chain", verdict="keep"), 5_000),
            "search_page": (q.TraceFilter(search="UNIQUE-NEEDLE"), 0),
        }
        viewer = {name: timed(lambda f=f, o=o: q.trace_page(ws, dv, f, limit=50, offset=o), args.repeats)
                  for name, (f, o) in cases.items()}
        viewer["filtered_count"] = timed(
            lambda: q.count_traces(ws, dv, q.TraceFilter(task="r2_chain", verdict="keep")), args.repeats)

        def naive(f: q.TraceFilter, offset: int) -> pd.DataFrame:
            df = pd.concat([pd.read_parquet(p) for p in sorted(dv.path.glob("part-*.parquet"))], ignore_index=True)
            if f.task:
                df = df[df["task"] == f.task]
            if f.verdict:
                df = df[df["keep"] == (f.verdict == "keep")]
            if f.search:
                hay = (df["reasoning"].fillna("") + "\n" + df["answer"].fillna("")).str.lower()
                df = df[hay.str.contains(f.search.lower(), regex=False)]
            return df.iloc[offset:offset + 50]

        reference = {name: timed(lambda f=f, o=o: naive(f, o), max(1, args.repeats - 1))
                     for name, (f, o) in cases.items()}

    result = {
        "benchmark": "viewer_paging", "rows": args.rows, "repeats": args.repeats,
        "created_at": datetime.now(UTC).isoformat(), "machine": platform.platform(),
        "build_s": round(build_s, 3),
        "viewer_s": {k: round(v, 4) for k, v in viewer.items()},
        "reference_pandas_s": {k: round(v, 4) for k, v in reference.items()},
        "speedup_vs_pandas": {k: round(reference[k] / viewer[k], 1) for k in reference},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
