"""The kill -9 loop (issue 18): the real `recot` CLI is SIGKILLed again and again at random points of ingest,
synth, curate, export and review push — 5 kills per step (4 for the push), 24 in all — then re-run once; after
the re-run `recot workspace check` exits 0 *without* `--repair` (the re-run itself removed what the killed runs
left) and the result has the same content as a never-killed run in a fresh workspace.

A kill point is a random moment (seeded: RECOT_CRASH_SEED) between 15% and 95% of the time a clean run of the
same step took, so kills land in start-up, reading, writing and the catalog commit alike. Between kills the
check may only report unfinished writes (`.tmp-*`, a version folder whose row never committed), which are
left in place for the next run to clean. "Same content" = the rows of every version, sorted, without the
columns that name the run (run_id, created_at): the Parquet bytes (`content_hash`) differ between any two
runs because those columns do. The data is tiny (each clean run takes a few seconds, mostly start-up)."""
from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from reliability_util import (
    SEED,
    assert_check_ok,
    build_catalog,
    kill9,
    recot_popen,
    recot_run,
    sample_table,
    workspace_check,
    write_generic_files,
)

from storage.workspace import Workspace

KILLS = 5
RUN_COLUMNS = ("run_id", "created_at")


def digest_rows(glob: str, key: str = "sample_id") -> str:
    """sha256 of the rows under `glob` (Parquet), sorted by `key`, without the run-naming columns."""
    con = duckdb.connect()
    try:
        cols = [c for c, *_ in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [glob]).fetchall()
                if c not in RUN_COLUMNS]
        sel = ", ".join(f'"{c}"' for c in cols)
        rows = con.execute(f"SELECT {sel} FROM read_parquet(?) ORDER BY \"{key}\"", [glob]).fetchall()
    finally:
        con.close()
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


def version_digests(ws_path: Path, name: str) -> list[str]:
    ws = Workspace.open(ws_path, create=False)
    return [digest_rows(str(ws_path / p / "part-*.parquet"))
            for (p,) in ws.query("SELECT path FROM dataset_versions WHERE name = ? ORDER BY version", [name])]


def assert_only_unfinished_writes(ws_path: Path) -> None:
    """Right after a kill: consistent, or only what the next writer removes (nothing is repaired here)."""
    r = workspace_check(ws_path)
    if r.code == 0:
        return
    from storage.integrity import check_workspace

    problems = check_workspace(Workspace.open(ws_path, create=False))
    assert problems and all(p.kind in ("temp_leftover", "uncommitted_version") for p in problems), \
        [str(p) for p in problems]


def clean_duration(args: list, env: dict | None = None) -> float:
    t0 = time.monotonic()
    r = recot_run(args, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return time.monotonic() - t0


def kill_loop(args: list, ws_path: Path, t_clean: float, rng: random.Random, log: Path, *,
              kills: int = KILLS, env: dict | None = None, after_kill=None) -> int:
    """Start `recot ARGS` and SIGKILL it at a random point until `kills` kills have landed (a run that finishes
    first does not count); check the workspace after each kill. Returns the number of runs that finished."""
    landed = finished = 0
    for _ in range(kills * 3):
        job = recot_popen(args, env=env, log=log)
        time.sleep(rng.uniform(0.15, 0.95) * t_clean)
        if kill9(job):
            landed += 1
            assert_only_unfinished_writes(ws_path)
            if after_kill is not None:
                after_kill()
        else:
            assert job.returncode == 0, log.read_text()[-3000:]
            finished += 1
        if landed == kills:
            return finished
    pytest.fail(f"only {landed} of {kills} kills landed (every run finished first); see {log}")


# ------------------------------------------------------------------------------------------------ ingest
def _catalog_digest(ws_path: Path, domain: str) -> str:
    ws = Workspace.open(ws_path, create=False)
    parts = []
    for sql in ("SELECT item_id, title, categories FROM items WHERE domain = $d ORDER BY item_id",
                "SELECT user_id, item_id, ts, rating FROM interactions WHERE domain = $d ORDER BY ALL",
                "SELECT user_id, item_id, ts, position, split FROM splits WHERE domain = $d ORDER BY ALL",
                "SELECT user_id FROM users WHERE domain = $d ORDER BY ALL"):
        parts.append(ws.query(sql, {"d": domain}))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def test_kill_loop_ingest(tmp_path):
    rng = random.Random(SEED * 101)
    files = write_generic_files(tmp_path / "in", n_items=600, n_inter=40_000, n_users=2000, seed=3)
    small = write_generic_files(tmp_path / "small", n_items=40, n_inter=300, n_users=30)
    args = lambda ws: ["ingest", "generic", "-w", ws, "--items", files["items"], "--interactions",  # noqa: E731
                       files["interactions"], "--domain", "shop", "--no-progress"]
    t = clean_duration(args(tmp_path / "clean"))
    ws = tmp_path / "ws"
    r = recot_run(["ingest", "generic", "-w", ws, "--items", small["items"], "--interactions",
                   small["interactions"], "--domain", "shop", "--no-progress"])
    assert r.returncode == 0, r.stderr                 # the domain already has rows: a kill must keep them whole
    kill_loop(args(ws), ws, t, rng, tmp_path / "ingest.log")
    assert recot_run(args(ws)).returncode == 0
    assert not list((ws / "tmp").glob(".tmp-*"))
    assert_check_ok(ws)
    assert _catalog_digest(ws, "shop") == _catalog_digest(tmp_path / "clean", "shop")


# ------------------------------------------------------------------------------------------------ synth
def _answer(body, attempt):
    import re

    user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
    sids = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", user)
    return f"<think>The history leans one way.</think>\nAnswer: {sids[0] if sids else 'none'}"


def test_kill_loop_synth(tmp_path):
    from fakes.fault_server import FaultServer

    rng = random.Random(SEED * 103)
    for name in ("clean", "ws"):
        build_catalog(Workspace.open(tmp_path / name), n_items=100, n_users=50)
    with FaultServer("scripted", script=_answer, latency_s=0.02) as srv:
        teacher = tmp_path / "teacher.yaml"
        teacher.write_text(yaml.safe_dump({"backend": "openai", "model": "loop", "base_url": srv.base_url,
                                           "api_key_env": "RECOT_TEST_NO_KEY", "max_concurrency": 2,
                                           "max_retries": 2, "backoff_base_s": 0.01, "timeout_s": 10}))
        args = lambda ws: ["synth", "run", "r3_recommend", "-w", ws, "--teacher", teacher,  # noqa: E731
                           "--no-progress", "-O", "min_history=2"]
        t = clean_duration(args(tmp_path / "clean"))
        ws = tmp_path / "ws"
        kill_loop(args(ws), ws, t, rng, tmp_path / "synth.log")
        assert recot_run(args(ws)).returncode == 0
    assert_check_ok(ws)
    (clean,) = version_digests(tmp_path / "clean", "cot")
    got = version_digests(ws, "cot")
    assert got and set(got) == {clean}                 # every committed version complete, the same rows


# ------------------------------------------------------------------------------------------------ curate
def test_kill_loop_curate(tmp_path):
    from storage.datasets import write_version

    rng = random.Random(SEED * 107)
    for name in ("clean", "ws"):
        ws = Workspace.open(tmp_path / name)
        build_catalog(ws, n_items=300, n_users=120)
        write_version(ws, "samples", sample_table(10_000), step="test")
    args = lambda ws: ["curate", "-w", ws, "--dataset", "samples@v1", "--chain", "minimal",  # noqa: E731
                       "--out", "curated", "--no-examples"]
    t = clean_duration(args(tmp_path / "clean"))
    ws = tmp_path / "ws"

    def verdicts_match_versions():  # a verdict never outlives or precedes its version
        w = Workspace.open(ws, create=False)
        n_versions = w.query("SELECT count(*) FROM dataset_versions WHERE name = 'curated'")[0][0]
        n_format = w.query("SELECT count(*) FROM verdicts WHERE filter = 'format'")[0][0]
        assert n_format == 10_000 * n_versions

    kill_loop(args(ws), ws, t, rng, tmp_path / "curate.log", after_kill=verdicts_match_versions)
    assert recot_run(args(ws)).returncode == 0
    assert_check_ok(ws)
    verdicts_match_versions()
    (clean,) = version_digests(tmp_path / "clean", "curated")
    got = version_digests(ws, "curated")
    assert got and set(got) == {clean}


# ------------------------------------------------------------------------------------------------ export
def test_kill_loop_export(tmp_path):
    from storage.datasets import write_version

    rng = random.Random(SEED * 109)
    ws = tmp_path / "ws"
    write_version(Workspace.open(ws), "samples", sample_table(40_000), step="test")
    clean_out = tmp_path / "clean-export"
    args = lambda out: ["datasets", "export", "samples@v1", "--out", out, "--format", "parquet",  # noqa: E731
                        "-w", ws]
    t = clean_duration(args(clean_out))
    out = tmp_path / "exports" / "loop"
    out.parent.mkdir()

    def out_absent_or_complete():
        assert not out.exists() or (out / "manifest.json").exists()

    kill_loop(args(out) + ["--overwrite"], ws, t, rng, tmp_path / "export.log", after_kill=out_absent_or_complete)
    assert recot_run(args(out) + ["--overwrite"]).returncode == 0
    assert not list(out.parent.glob(".tmp-*"))         # the killed exports' temp folders went with this one
    assert_check_ok(ws)
    assert digest_rows(str(out / "*.parquet")) == digest_rows(str(clean_out / "*.parquet"))


# ------------------------------------------------------------------------------------------------ review push
@pytest.mark.argilla
def test_kill_loop_review_push(tmp_path):
    import os

    from curation.review import stack
    from curation.review.client import argilla_client, find_dataset
    from curation.review.push import select_samples
    from storage.datasets import resolve, write_version

    for k in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        if k in os.environ:
            pytest.skip(f"{k} is set: the local stack would not be used")
    rng = random.Random(SEED * 113)
    ws_path = tmp_path / "ws"
    ws = Workspace.open(ws_path)
    build_catalog(ws, n_items=60, n_users=20)
    write_version(ws, "samples", sample_table(200), step="test")
    r = recot_run(["curate", "-w", ws_path, "--dataset", "samples@v1", "--chain", "minimal", "--out", "curated",
                   "--no-examples"])
    assert r.returncode == 0, r.stderr
    try:
        stack.up(ws, watch_pid=os.getpid())
    except stack.StackError as e:
        pytest.skip(str(e))
    try:
        conn = stack.connect(ws)
        dv = resolve(ws, "curated")

        def on_server() -> list[str]:
            with argilla_client(conn) as c:
                ds = find_dataset(c, "recot", f"{dv.name}-v{dv.version}")
                return [] if ds is None else [x.id for x in ds.records(batch_size=1000, with_suggestions=False,
                                                                       with_responses=False)]

        # Many one-record batches, so that a push lasts long enough for every kill to land before the last
        # record is on the server (a resumed push only sends what is missing, so pushes get shorter), and kill
        # points within a fixed 4 s window from the start (the CLI's start-up is part of every run): a window
        # measured from a probe push is too long on an idle machine, where pushes then finish first.
        n = 120
        args = ["review", "push", "-w", ws_path, "-d", dv.ref, "-n", str(n), "--strategy", "random",
                "--batch-size", "1"]
        kill_loop(args, ws_path, 4.0, rng, tmp_path / "push.log", kills=4)
        r = recot_run([*args, "--json"], timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        ids = on_server()
        expected = set(select_samples(ws, dv, n, "random"))
        assert len(ids) == len(set(ids)) == len(expected) >= 40   # every record exactly once
        assert set(ids) == expected
        assert_check_ok(ws_path)
    finally:
        stack.down(ws)
