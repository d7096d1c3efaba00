"""kill -9 the real `recot` CLI in the middle of each long step, then re-run it; after the kill and after the
resume the workspace must pass `recot workspace check`, nothing may be lost or duplicated, and a resumed
teacher job must never re-ask a request that had already completed.

The kill point is random but seeded (RECOT_CRASH_SEED, default 11): a random delay after the process
starts, or after a progress marker (the first cached teacher answer) appears. Review push has its own
kill -9 test on the real Argilla stack (not repeated here):
tests/review/test_review_resume.py::test_kill_9_during_push_then_push_again_sends_each_record_once."""
from __future__ import annotations

import random
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import yaml
from reliability_util import (
    SEED,
    assert_check_after_kill,
    assert_check_ok,
    build_catalog,
    kill9,
    recot_popen,
    recot_run,
    sample_table,
    wait_until,
    write_generic_files,
)

from storage.workspace import Workspace


def _counts(ws_path: Path, domain: str) -> tuple:
    ws = Workspace.open(ws_path, create=False)
    return ws.query("""SELECT (SELECT count(*) FROM items WHERE domain = $d),
                              (SELECT count(*) FROM users WHERE domain = $d),
                              (SELECT count(*) FROM interactions WHERE domain = $d),
                              (SELECT count(*) FROM splits WHERE domain = $d)""", {"d": domain})[0]


def _parts(folder: Path, columns: list[str]):
    return pq.read_table(sorted(str(p) for p in folder.glob("part-*.parquet")), columns=columns)


# ------------------------------------------------------------------------------------------------ ingest
NEW = (4000, 15_000, 400_000, 400_000)   # items, users, interactions, split rows of the big file


def test_ingest_killed_mid_way_keeps_the_old_catalog_and_resumes_exactly(tmp_path):
    """Re-ingesting a domain is one transaction: killed anywhere, the previous rows stay complete; the
    re-run then holds exactly the new file's rows (no duplicate interaction)."""
    rng = random.Random(SEED)
    ws = tmp_path / "ws"
    small = write_generic_files(tmp_path / "small", n_items=50, n_inter=400, n_users=40)
    big = write_generic_files(tmp_path / "big", n_items=4000, n_inter=400_000, n_users=15_000, seed=1)
    r = recot_run(["ingest", "generic", "-w", ws, "--items", small["items"], "--interactions",
                   small["interactions"], "--domain", "shop", "--no-progress"])
    assert r.returncode == 0, r.stderr
    before = _counts(ws, "shop")
    assert before[0] == 50 and before[2] == 400

    args = ["ingest", "generic", "-w", ws, "--items", big["items"], "--interactions", big["interactions"],
            "--domain", "shop", "--progress"]
    killed = 0
    for _ in range(2):
        job = recot_popen(args, log=tmp_path / "ingest.log")
        # progress marker: the staging file exists (files are being read), then a random moment in the
        # rest of the reading or in the catalog transaction
        assert wait_until(lambda: any((ws / "tmp").glob(".tmp-stage-*")), timeout=60, proc=job)
        time.sleep(rng.uniform(0.0, 0.8))
        if not kill9(job):                            # finished first: its rows are now the "old" ones
            before = _counts(ws, "shop")
            continue
        killed += 1
        assert_check_after_kill(ws)
        # all or nothing: the old rows untouched, or (killed after the commit) exactly the new ones
        now = _counts(ws, "shop")
        assert now in (before, NEW), now
        before = now
    assert killed >= 1, "ingest finished before the kill; make the file bigger"

    r = recot_run(args)
    assert r.returncode == 0, r.stderr
    items, users, inter, splits = _counts(ws, "shop")
    assert (items, users, inter, splits) == NEW
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT (user_id, item_id, ts)) FROM interactions").fetchone()[0] \
            == 400_000
        assert con.execute("SELECT count(*) FROM runs WHERE kind = 'ingest' AND status = 'done'").fetchone()[0] >= 2
    finally:
        con.close()
    assert not list((ws / "tmp").glob(".tmp-*"))    # the successful run left no staging file
    assert_check_ok(ws)


# ------------------------------------------------------------------------------------------------ synth
def _completed(cache_dir: Path) -> int:
    return sum(seg.read_bytes().count(b'"ok":true') for seg in cache_dir.glob("seg-*.jsonl")) \
        if cache_dir.exists() else 0


def _good_answer(body, attempt):
    import re

    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    sids = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", user)
    return (f"<think>The history leans one way; the next film continues it.</think>\n"
            f"Answer: {sids[0] if sids else 'none'}")


def test_synth_teacher_task_killed_then_resumed_asks_nothing_twice(tmp_path):
    from fakes.fault_server import FaultServer

    from synth.teacher.cache import TeacherCache

    rng = random.Random(SEED + 1)
    ws_path = tmp_path / "ws"
    build_catalog(Workspace.open(ws_path), n_items=300, n_users=120)
    with FaultServer("scripted", script=_good_answer, latency_s=0.05) as srv:
        teacher = tmp_path / "teacher.yaml"
        teacher.write_text(yaml.safe_dump({"backend": "openai", "model": "slow-scripted", "base_url": srv.base_url,
                                           "api_key_env": "RECOT_TEST_NO_KEY", "max_concurrency": 4,
                                           "max_retries": 2, "backoff_base_s": 0.01, "timeout_s": 10}))
        args = ["synth", "run", "r3_recommend", "-w", ws_path, "--teacher", teacher, "--n", "2",
                "--no-progress", "-O", "min_history=2"]
        cache_dir = ws_path / "cache" / "teacher"
        killed = 0
        for _ in range(2):
            done = _completed(cache_dir)
            job = recot_popen(args, log=tmp_path / "synth.log")
            # progress marker: this run's first new cached answer, then a random extra moment
            assert wait_until(lambda done=done: _completed(cache_dir) > done, timeout=60, proc=job), \
                (tmp_path / "synth.log").read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 1.0))
            killed += kill9(job)
            assert_check_after_kill(ws_path)
            assert not Workspace.open(ws_path, create=False).query("SELECT * FROM dataset_versions")
        assert killed == 2, "the synth job finished before the kill; slow the server down"
        n_before_resume = len(srv.log)
        assert 0 < _completed(cache_dir) < 120

        r = recot_run(args)
        assert r.returncode == 0, r.stderr
        resumed_requests = srv.log[n_before_resume:]
        log = list(srv.log)

    cache = TeacherCache(cache_dir)
    completed_at = {rec["messages_sha"]: rec["ts"] for rec in cache.records()}
    assert len(completed_at) == 120                         # one per prompt (each user has a history)
    for entry in log:                                       # never asked again once completed
        assert entry["t"] < completed_at[entry["messages_sha"]], entry
    assert len(resumed_requests) < 120                      # the resume was partly served by the cache

    ws = Workspace.open(ws_path, create=False)
    (path,) = ws.query("SELECT path FROM dataset_versions WHERE name = 'cot'")[0]
    t = _parts(ws_path / path, ["sample_id", "prompt_id", "error", "request_key"])
    ids = t.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) == 240                 # 120 prompts x n=2, no duplicate
    assert len(set(t.column("prompt_id").to_pylist())) == 120
    assert t.column("error").null_count == 240              # no prompt lost to the kills
    # the same rows a never-killed run produces: a re-run is fully cached, reproduces them exactly and so
    # writes no new version (an identical re-run is a no-op that says so)
    r = recot_run(args)
    assert r.returncode == 0, r.stderr
    assert "unchanged: cot@v1" in " ".join((r.stdout + r.stderr).split()), r.stdout
    assert ws.query("SELECT count(*) FROM dataset_versions WHERE name = 'cot'")[0][0] == 1
    assert_check_ok(ws_path)


# ------------------------------------------------------------------------------------------------ curate
def _samples(ws: Workspace, n: int):
    """n chat samples with varied text (a realistic sample dataset, built in SQL)."""
    from storage.datasets import write_version

    return write_version(ws, "samples", sample_table(n), step="test")


def test_curate_killed_mid_chain_writes_nothing_then_resumes_complete(tmp_path):
    rng = random.Random(SEED + 2)
    ws_path = tmp_path / "ws"
    ws = Workspace.open(ws_path)
    build_catalog(ws, n_items=300, n_users=120)
    src = _samples(ws, 100_000)
    args = ["curate", "-w", ws_path, "--dataset", "samples@v1", "--chain", "minimal", "--out", "curated",
            "--no-examples"]
    killed = 0
    for _ in range(2):
        log = tmp_path / "curate.log"
        seen = log.read_text().count("filter format:") if log.exists() else 0
        job = recot_popen(args, log=log)
        # progress marker: the first filter finished (the chain is running), then a random moment in
        # the remaining filters or the version write
        assert wait_until(lambda log=log, seen=seen: log.read_text().count("filter format:") > seen, timeout=60,
                          proc=job), log.read_text()[-3000:]
        time.sleep(rng.uniform(0.0, 0.4))
        if not kill9(job):
            break                                     # finished first: the re-run below is then a no-op check
        killed += 1
        assert_check_after_kill(ws_path)
        ws = Workspace.open(ws_path, create=False)
        # all or nothing: no version and no verdicts, or (killed after the commit, while exiting) the complete
        # version with every verdict — the verdicts are committed in the transaction that registers it
        done = ws.query("SELECT rows FROM dataset_versions WHERE name = 'curated'")
        n_verdicts = ws.query("SELECT count(*) FROM verdicts")[0][0]
        if not done:
            assert n_verdicts == 0
        else:
            n_format = ws.query("SELECT count(*) FROM verdicts WHERE filter = 'format'")[0][0]
            assert done == [(src.rows,)] and n_format == src.rows and n_verdicts >= src.rows
            break
    assert killed >= 1, "curation finished before the kill; use more samples"
    r = recot_run(args)
    assert r.returncode == 0, r.stderr
    ws = Workspace.open(ws_path, create=False)
    (path, rows) = ws.query("SELECT path, rows FROM dataset_versions WHERE name = 'curated' "
                            "ORDER BY version DESC LIMIT 1")[0]
    ids = _parts(ws_path / path, ["sample_id"]).column(0).to_pylist()
    assert rows == len(ids) == len(set(ids)) == src.rows
    assert set(ids) == {f"cs-{i}" for i in range(100_000)}
    assert_check_ok(ws_path)


# ------------------------------------------------------------------------------------------------ export
def test_export_killed_mid_write_leaves_no_partial_output(tmp_path):
    rng = random.Random(SEED + 3)
    ws_path = tmp_path / "ws"
    ws = Workspace.open(ws_path)
    build_catalog(ws, n_items=50, n_users=10)
    src = _samples(ws, 120_000)
    out = tmp_path / "export" / "hf"
    out.parent.mkdir()
    args = ["datasets", "export", "samples@v1", "--out", out, "--format", "hf", "-w", ws_path]
    killed = 0
    for _ in range(2):
        before = set(out.parent.glob(".tmp-export-*"))
        job = recot_popen(args, log=tmp_path / "export.log")
        # progress marker: this export's own temp folder exists (it is writing; it removes the killed one's
        # first), then a random moment
        assert wait_until(lambda before=before: bool(set(out.parent.glob(".tmp-export-*")) - before), timeout=60,
                          proc=job)
        time.sleep(rng.uniform(0.0, 0.8))
        killed += kill9(job)
        assert_check_after_kill(ws_path)
        assert not out.exists() or (out / "dataset_info.json").exists()   # nothing half-written at --out
        if out.exists():
            break
    r = recot_run(args if not out.exists() else args + ["--overwrite"])
    assert r.returncode == 0, r.stderr
    import datasets

    d = datasets.load_from_disk(str(out))
    ids = d["sample_id"]
    assert len(ids) == len(set(ids)) == src.rows
    assert_check_ok(ws_path)
    assert killed >= 1
