"""Issue 18, items 1, 4, 7 and 8 (the ingest items 5, 6 and 8 are in tests/storage/test_storage_ingest_real_dumps.py):
each test reproduces what an adversarial pass found and ran red before the fix.

1. kill -9 between "version folder in place" and the catalog commit leaves nothing a re-run cannot fix;
4. a password inside a URL never reaches a manifest, the catalog or `runs show`;
7. what a killed run left (`.tmp-*` folders and staging files) goes with the next successful writer, and its
   `runs` row reads `interrupted`;
8. a bad dataset name exits 2; YAML errors name the line.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
from reliability_util import ROOT, assert_check_ok, assert_clean_error, run_cli, workspace_check

from storage.datasets import list_versions, write_version
from storage.integrity import check_workspace
from storage.workspace import Workspace


def _table(n: int = 500) -> pa.Table:
    return pa.table({"sample_id": [f"s{i}" for i in range(n)], "text": [f"row {i}" for i in range(n)]})


def _die_in(ws_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run `body` (with `ws` open and `table` = _table()) in a fresh interpreter that SIGKILLs itself where the
    body says `die()`; return the finished process (killed: returncode -9)."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        import pyarrow as pa
        from storage.workspace import Workspace
        def die(*_a, **_k):
            os.kill(os.getpid(), signal.SIGKILL)
        ws = Workspace.open({str(ws_path)!r})
        table = pa.table({{"sample_id": [f"s{{i}}" for i in range(500)], "text": [f"row {{i}}" for i in range(500)]}})
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------------ item 1
def test_kill_between_folder_rename_and_catalog_commit_is_undone_by_the_next_writer(tmp_path):
    """Before: the `v1/` folder was renamed into place before the catalog transaction; killed in between, it
    was an orphan that `check --repair` refused to touch (exit 1 for good) and the re-run wrote @v2."""
    clean = write_version(Workspace.open(tmp_path / "clean"), "curated", _table(), step="curate")
    ws_path = tmp_path / "ws"
    r = _die_in(ws_path, """
        import os as _os
        from storage import datasets
        real = _os.rename
        def rename_then_die(a, b):
            real(a, b)
            if "/datasets/curated/v" in str(b):
                die()
        datasets.os.rename = rename_then_die
        def verdicts(con, name, version):
            con.execute("INSERT INTO verdicts VALUES (?, ?, 's0', 'format', true, NULL, NULL, NULL)", [name, version])
        datasets.write_version(ws, "curated", table, step="curate", on_commit=verdicts)
    """)
    assert r.returncode == -signal.SIGKILL, r.stderr
    ws = Workspace.open(ws_path, create=False)
    assert (ws.datasets_dir / "curated" / "v1").is_dir()              # the folder made it, its row did not
    assert ws.query("SELECT count(*) FROM dataset_versions")[0][0] == 0
    assert ws.query("SELECT count(*) FROM verdicts")[0][0] == 0
    kinds = {(p.kind, p.repairable) for p in check_workspace(ws)}
    assert kinds == {("uncommitted_version", True)}, kinds
    # the re-run (the next writer) removes it and writes v1, byte-identical to a never-killed run
    again = write_version(ws, "curated", _table(), step="curate")
    assert again.version == 1 and again.content_hash == clean.content_hash
    assert [dv.ref for dv in list_versions(ws)] == ["curated@v1"]
    assert_check_ok(ws_path)


def test_check_repair_removes_an_uncommitted_version_folder(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    write_version(ws, "d", _table(10), step="test")
    (ws.datasets_dir / "d" / "v2").mkdir()
    (ws.datasets_dir / "d" / "v2" / "part-00000.parquet").write_bytes(b"half")
    r = workspace_check(ws.root)
    assert r.code == 1 and "uncommitted_version" in r.out and "--repair removes it" in r.out
    r = run_cli(["workspace", "check", "-w", str(ws.root), "--repair"])
    assert r.code == 0 and "removed datasets/d/v2" in r.out, r.text
    assert [dv.ref for dv in list_versions(ws)] == ["d@v1"]


# ------------------------------------------------------------------------------------------------ item 7
def test_temp_leftovers_of_a_killed_write_go_with_the_next_successful_writer(tmp_path):
    """Before: the re-run succeeded but left the killed run's `.tmp-*` folder; `check` failed until --repair."""
    ws_path = tmp_path / "ws"
    r = _die_in(ws_path, """
        import pyarrow.parquet as pq
        from storage import datasets
        pq.ParquetWriter.write_batch = die            # killed while writing the first part file
        datasets.write_version(ws, "samples", table, step="synth")
    """)
    assert r.returncode == -signal.SIGKILL, r.stderr
    ws = Workspace.open(ws_path, create=False)
    assert list((ws.datasets_dir / "samples").glob(".tmp-*"))
    write_version(ws, "other", _table(5), step="synth")              # any successful writer
    assert not list((ws.datasets_dir / "samples").glob(".tmp-*"))
    assert_check_ok(ws_path)                                          # exit 0 without --repair


def test_staging_files_of_a_killed_ingest_go_with_the_next_ingest(tmp_path):
    reviews, meta = tmp_path / "Beauty.json", tmp_path / "meta_Beauty.json"
    reviews.write_text("".join(json.dumps({"reviewerID": f"u{k % 7}", "asin": f"B{k % 5}", "overall": 4.0,
                                           "unixReviewTime": 1_300_000_000 + k, "verified": True}) + "\n"
                               for k in range(60)))
    meta.write_text("".join(json.dumps({"asin": f"B{i}", "title": f"Item {i}"}) + "\n" for i in range(5)))
    ws_path = tmp_path / "ws"
    r = _die_in(ws_path, f"""
        from storage.ingest import catalog
        from storage.ingest.amazon import ingest_amazon
        catalog.commit = die                          # killed after staging, before the catalog transaction
        ingest_amazon(ws, {str(reviews)!r}, {str(meta)!r})
    """)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert list((ws_path / "tmp").glob(".tmp-stage-*"))
    from storage.ingest.amazon import ingest_amazon

    ingest_amazon(Workspace.open(ws_path, create=False), reviews, meta)
    assert not list((ws_path / "tmp").glob(".tmp-*"))
    assert_check_ok(ws_path)


def test_a_killed_run_is_shown_interrupted_not_running(tmp_path):
    """Before: a SIGKILLed job's row said `running` forever."""
    ws_path = tmp_path / "ws"
    r = _die_in(ws_path, """
        from storage.runs import recorded_run
        with recorded_run(ws, "curate", {"chain": "minimal"}) as run:
            print(run.id, flush=True)
            die()
    """)
    assert r.returncode == -signal.SIGKILL, r.stderr
    killed = r.stdout.split()[0]
    from storage.runs import get_run, list_runs, start_run

    ws = Workspace.open(ws_path, create=False)
    live = start_run(ws, "synth")                                     # this process: alive, still running
    status = {x["run_id"]: x["status"] for x in list_runs(ws)}
    assert status == {killed: "interrupted", live: "running"}
    assert get_run(ws, killed)["status"] == "interrupted"
    shown = json.loads(run_cli(["runs", "list", "--json", "-w", str(ws_path)]).out)
    assert {x["run_id"]: x["status"] for x in shown} == {killed: "interrupted", live: "running"}
    assert "status=interrupted" in run_cli(["runs", "show", killed, "-w", str(ws_path)]).out
    # stored so, too (the next run that starts writes it down)
    assert ws.query("SELECT status FROM runs WHERE run_id = ?", [killed]) == [("interrupted",)]


# ------------------------------------------------------------------------------------------------ item 4
SECRET = "pw-Zq81xVv"


def test_a_password_in_a_url_is_redacted_everywhere_it_is_stored_or_shown(tmp_path):
    """Before: `http://user:<password>@host` went as is into manifests, the catalog and `runs show`."""
    from storage.runs import recorded_run

    ws = Workspace.open(tmp_path / "ws")
    teacher = {"backend": "openai", "model": "m", "base_url": f"http://alice:{SECRET}@teacher.local:8000/v1"}
    with recorded_run(ws, "synth", {"teacher": teacher}) as run:
        run.stats = {"error_seen": f"connect to https://alice:{SECRET}@teacher.local failed"}
        dv = write_version(ws, "samples", _table(3), step="synth", config={"teacher": teacher}, run_id=run.id,
                           extra_manifest={"teachers": [teacher]})
    manifest = (dv.path / "manifest.json").read_text()
    assert SECRET not in manifest and "alice:***redacted***@teacher.local" in manifest
    shown = "".join(run_cli([*a, "-w", str(ws.root)]).text for a in (
        ["runs", "show", run.id], ["runs", "show", run.id, "--json"], ["datasets", "show", "samples"],
        ["runs", "list"]))
    assert SECRET not in shown and "***redacted***" in shown
    stored = b"".join(p.read_bytes() for p in ws.root.rglob("*") if p.is_file())   # catalog, its WAL, parts
    assert SECRET.encode() not in stored
    # a row stored by an older recot, before URLs were redacted: `runs show` redacts it on the way out
    old = Workspace.open(tmp_path / "old")
    with old.transaction() as con:
        con.execute("INSERT INTO runs VALUES ('old-1', 'synth', 'done', now(), now(), ?, '{}', NULL)",
                    [json.dumps({"teacher": teacher})])
    r = run_cli(["runs", "show", "old-1", "-w", str(old.root)])
    assert r.code == 0 and SECRET not in r.text and "alice:***redacted***@" in r.text


# ------------------------------------------------------------------------------------------------ item 8
@pytest.mark.parametrize("args", [
    ["datasets", "import", "{src}", "--name", "bad/name"],
    ["datasets", "import", "{src}", "--name", ".hidden"],
])
def test_a_bad_dataset_name_exits_2(tmp_path, args):
    """Before: exit 1."""
    import pyarrow.parquet as pq

    ws = Workspace.open(tmp_path / "ws")
    src = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant",
                                                                              "content": "yo"}]]}), src)
    r = run_cli([a.format(src=src) for a in args] + ["-w", str(ws.root)])
    assert_clean_error(r, 2, "bad dataset name")


def test_a_bad_dataset_reference_exits_2(tmp_path):
    Workspace.open(tmp_path / "ws")
    assert_clean_error(run_cli(["datasets", "show", "nope@vx", "-w", str(tmp_path / "ws")]), 2,
                       "bad dataset reference 'nope@vx'")


def test_yaml_errors_name_the_line(tmp_path):
    Workspace.open(tmp_path / "ws")
    chain = tmp_path / "chain.yaml"
    chain.write_text("name: c\nfilters:\n  - type: format\n  - type: length\n    params:\n      min_chars: abc\n")
    r = run_cli(["curate", "--dataset", "x", "--chain", str(chain), "-w", str(tmp_path / "ws")])
    assert_clean_error(r, 2, "min_chars (line 6)")
    train = tmp_path / "train.yaml"
    train.write_text("model: x\nmax_steps: many\n")
    r = run_cli(["train", "sft", "--config", str(train), "-w", str(tmp_path / "ws")])
    assert_clean_error(r, 2, "field 'max_steps' (line 2)")


def test_a_negative_task_limit_is_refused(tmp_path):
    """Before: `LIMIT -1` reached DuckDB and ended in a traceback."""
    Workspace.open(tmp_path / "ws")
    for opt in ("limit=-1", "sid_version=-2"):
        r = run_cli(["synth", "run", "align_item", "-O", opt, "-w", str(tmp_path / "ws")])
        assert_clean_error(r, 2, f"option '{opt.split('=')[0]}': must be >= 0")
