"""Deterministic alignment throughput: `run_task(ws, "align_user")` (one DuckDB query streamed to Parquet, then
written as a dataset version) vs a straightforward Python reference that builds the same sample rows in a loop
over the same splits and writes them with pyarrow — both measured in the same run on the same synthetic
catalog, so the ratio is meaningful on a noisy shared machine.

Data (seeded): U users × L train interactions (+1 valid, +1 test) over a catalog of `items` items with
random 3-level SIDs and 1–3 categories. align_user emits 3 variants per window (max_history 10,
min_history 3): 3 × U × (L − 3) rows.

    python benchmarks/synth_tasks.py [--users 5000] [--length 40] [--items 20000] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.records import SAMPLE_SCHEMA, stable_id  # noqa: E402
from storage.sid import format_sid  # noqa: E402
from storage.workspace import Workspace  # noqa: E402
from synth.tasks.run import run_task  # noqa: E402

CATS = ["Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Horror", "Crime", "War", "Western"]


def build(ws: Workspace, users: int, length: int, n_items: int, seed: int) -> None:
    rng = random.Random(seed)
    items = pa.table({
        "item_id": [str(i) for i in range(n_items)], "title": [f"Item {i}" for i in range(n_items)],
        "description": pa.nulls(n_items, pa.string()),
        "categories": [rng.sample(CATS, rng.randint(1, 3)) for _ in range(n_items)],
        "attributes": pa.nulls(n_items, pa.string()), "domain": ["default"] * n_items})
    codes = [[i % 256, (i // 256) % 256, i // 65536] for i in range(n_items)]
    sids = pa.table({"sid_version": [1] * n_items, "item_id": [str(i) for i in range(n_items)],
                     "codes": codes, "sid": [format_sid(c) for c in codes]})
    t0 = datetime(2020, 1, 1)
    u_col, i_col, ts_col, pos_col, split_col = [], [], [], [], []
    for u in range(users):
        seq = rng.sample(range(n_items), length + 2)
        for p, it in enumerate(seq):
            u_col.append(f"u{u}")
            i_col.append(str(it))
            ts_col.append(t0 + timedelta(minutes=p))
            pos_col.append(p)
            split_col.append("test" if p == length + 1 else "valid" if p == length else "train")
    splits = pa.table({"user_id": u_col, "item_id": i_col, "ts": ts_col, "position": pos_col, "split": split_col,
                       "domain": ["default"] * len(u_col)})
    with ws.transaction() as con:
        con.register("items_t", items)
        con.register("sids_t", sids)
        con.register("splits_t", splits)
        con.execute("INSERT INTO items SELECT item_id, title, description, categories, attributes::JSON, domain "
                    "FROM items_t")
        con.execute("INSERT INTO item_sids SELECT sid_version, item_id, codes, sid FROM sids_t")
        con.execute("INSERT INTO splits SELECT * FROM splits_t")
        con.execute("INSERT INTO interactions SELECT user_id, item_id, ts, 4.0, domain FROM splits_t")
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [n_items])


def python_reference(ws: Workspace, out: Path) -> int:
    """The same samples built the plain way: fetch train rows, loop per user and window, render strings."""
    rows = ws.query("""SELECT sp.user_id, sp.item_id, s.sid, i.title FROM splits sp
                       JOIN item_sids s ON s.item_id = sp.item_id AND s.sid_version = 1
                       JOIN items i ON i.item_id = sp.item_id
                       WHERE sp.split = 'train' ORDER BY sp.user_id, sp.position""")
    by_user: dict[str, list] = {}
    for r in rows:
        by_user.setdefault(r[0], []).append(r)
    now = datetime.now(UTC)
    recs = []
    for u, seq in by_user.items():
        for k in range(3, len(seq)):
            hist = seq[max(0, k - 10):k]
            h_sids = "\n".join(h[2] for h in hist)
            h_titles = "\n".join(h[3] for h in hist)
            tgt = seq[k]
            for v, q, a in (
                ("sid2sid", f"A user interacted with these items, oldest first:\n{h_sids}\nWhich item comes next? "
                            "Answer with its semantic ID.", tgt[2]),
                ("sid2title", f"A user interacted with these items, oldest first:\n{h_sids}\nWhat is the title of "
                              "the next item?", tgt[3]),
                ("title2sid", f"A user interacted with these items, oldest first:\n{h_titles}\nWhich item comes "
                              "next? Answer with its semantic ID.", tgt[2])):
                sid_ = stable_id("align_user", v, u, k)
                recs.append({"sample_id": sid_, "prompt_id": sid_, "task": "align_user", "level": "alignment",
                             "mode": "none", "think": False, "domain": "default", "user_id": u,
                             "history_item_ids": [h[1] for h in hist], "target_item_ids": [tgt[1]],
                             "target_sids": [tgt[2]],
                             "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                             "answer": a, "answer_sids": [a] if v != "sid2title" else [],
                             "extra": json.dumps({"variant": v, "train_rank": k}), "teacher": "catalog",
                             "template_version": "align_user@v1", "sid_version": 1, "created_at": now})
    table = pa.Table.from_pylist(recs, schema=SAMPLE_SCHEMA)
    pq.write_table(table, out, compression="zstd")
    return table.num_rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth_tasks.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recot-bench-synth-"))
    try:
        ws = Workspace.open(tmp / "ws")
        t = time.perf_counter()
        build(ws, a.users, a.length, a.items, a.seed)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        dv = run_task(ws, "align_user")
        recot_s = time.perf_counter() - t
        t = time.perf_counter()
        ref_rows = python_reference(ws, tmp / "ref.parquet")
        ref_s = time.perf_counter() - t
        assert ref_rows == dv.rows == 3 * a.users * (a.length - 3), (ref_rows, dv.rows)
        res = {"benchmark": "synth_tasks.align_user", "created_at": datetime.now(UTC).isoformat(),
               "machine": {"python": platform.python_version(), "platform": platform.platform()},
               "params": vars(a), "rows": dv.rows, "setup_s": round(build_s, 2),
               "recot_s": round(recot_s, 2), "recot_rows_per_s": round(dv.rows / recot_s),
               "python_reference_s": round(ref_s, 2), "python_reference_rows_per_s": round(ref_rows / ref_s),
               "speedup_vs_python": round(ref_s / recot_s, 2),
               "note": "recot includes writing the dataset version (manifest, catalog row); the reference "
                       "only writes one Parquet file"}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
