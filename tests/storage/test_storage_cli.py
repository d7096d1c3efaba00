"""The `recot ingest / datasets / workspace` commands end to end (CliRunner for output, subprocess for exit codes)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import duckdb
import pyarrow as pa
from typer.testing import CliRunner

from storage.datasets import write_version
from storage.records import samples_from_pylist
from storage.workspace import Workspace
from ui.cli import app

runner = CliRunner()
RECOT = str(Path(sys.executable).parent / "recot")


def _ok(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def test_ingest_ml100k_then_export_split(tmp_path):
    ws = str(tmp_path / "ws")
    out = _ok(["ingest", "movielens-100k", "-w", ws, "--no-progress"])
    for expected in ("943", "1,682", "100,000", "98,114"):
        assert expected in out
    _ok(["datasets", "export", "catalog:split", "--out", str(tmp_path / "split"), "-w", ws])
    dd = datasets.load_from_disk(str(tmp_path / "split"))
    assert sum(len(v) for v in dd.values()) == 100_000 and len(dd["test"]) == 943
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/split/parquet/*.parquet')").fetchall()[0][0]
    assert n == 100_000
    info = _ok(["workspace", "info", "-w", ws])
    assert "movielens" in info and "catalog.duckdb" in info and "ingest" in info
    assert "consistent" in _ok(["workspace", "check", "-w", ws])


def test_ingest_generic_and_amazon_cli_skip(tmp_path, generic_files, amazon2014):
    ws = str(tmp_path / "ws")
    bad = tmp_path / "ev.jsonl"
    bad.write_text(generic_files["jsonl"].read_text() + '{"uid": "u1", "iid": "B001", "stars": 2, "time": "x"}\n')
    out = _ok(["ingest", "generic", "-w", ws, "--items", str(generic_files["items"]), "--interactions", str(bad),
               "--map", "user=uid,item=iid,ts=time,title=name,rating=stars", "--domain", "shop", "--on-error", "skip",
               "--no-progress"])
    assert "1 rejected rows written to" in out
    out = _ok(["ingest", "amazon", str(amazon2014[0]), "--meta", str(amazon2014[1]), "-w", ws, "--no-progress",
               "--domain", "beauty", "--item-prefix", "az:"])
    assert "amazon" in out
    # the same ASINs in two domains: --item-prefix keeps item ids unique across domains
    assert Workspace.open(ws).query(
        "SELECT domain, count(*), min(item_id) FROM interactions GROUP BY 1 ORDER BY 1") == [
        ("beauty", 10, "az:B001"), ("shop", 10, "B001")]
    # exit code 2 and a one-line message for bad input, no traceback
    r = subprocess.run([RECOT, "ingest", "generic", "-w", ws, "--items", str(generic_files["items"]),
                        "--interactions", str(bad), "--map", "user=uid,item=iid,ts=time"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "line 11" in r.stderr and "field 'time'" in r.stderr and "Traceback" not in r.stderr


def _samples(n):
    return samples_from_pylist([{"sample_id": f"s{i}", "task": "t", "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(n)])


def test_datasets_list_show_diff_export_import(tmp_path):
    ws_path = tmp_path / "ws"
    ws = Workspace.open(ws_path)
    write_version(ws, "cot", _samples(3), step="synth")
    write_version(ws, "cot", _samples(5).slice(1), step="curate", parents=[("cot", 1)])
    out = _ok(["datasets", "list", "-w", str(ws_path)])
    assert "cot@v1" in out and "cot@v2" in out and "curate" in out
    out = _ok(["datasets", "show", "cot@v2", "-w", str(ws_path)])
    assert "sha256:" in out and "cot@v1" in out and "sample_id: s1" in out
    out = _ok(["datasets", "diff", "cot@v1", "cot@v2", "-w", str(ws_path)])
    assert [line.split("│")[2].strip() for line in out.splitlines() if "│ removed" in line] == ["1"]
    for fmt in ("hf", "parquet", "openonerec"):
        _ok(["datasets", "export", "cot", "--format", fmt, "--out", str(tmp_path / fmt), "-w", str(ws_path)])
    assert len(datasets.load_from_disk(str(tmp_path / "hf"))) == 4
    out = _ok(["datasets", "import", str(tmp_path / "openonerec"), "--name", "ext", "-w", str(ws_path)])
    assert "ext@v1" in out
    r = subprocess.run([RECOT, "datasets", "show", "nope@v9", "-w", str(ws_path)], capture_output=True, text=True)
    assert r.returncode == 4 and "not found" in r.stderr


def test_workspace_check_finds_and_repairs(tmp_path):
    ws_path = tmp_path / "ws"
    ws = Workspace.open(ws_path)
    a = write_version(ws, "a", _samples(3), step="synth")
    b = write_version(ws, "b", _samples(2), step="synth")
    with ws.transaction() as con:
        con.execute("INSERT INTO items (item_id, title, domain) VALUES ('i1', 't', 'd')")
        con.execute("INSERT INTO item_sids VALUES (1, 'ghost', [1, 2, 3], 'x')")
        con.execute("INSERT INTO interactions VALUES ('u', 'ghost2', now()::TIMESTAMP, 1, 'd')")
        con.execute("INSERT INTO verdicts VALUES ('a', 7, 's0', 'f', true, NULL, NULL, NULL)")
    # tamper: b's part file rewritten (hash mismatch), a's manifest removed, an orphan and a temp leftover
    part = next(b.path.glob("part-*.parquet"))
    part.write_bytes(part.read_bytes() + b"x")
    (a.path / "manifest.json").unlink()
    (ws.datasets_dir / "a" / "v9").mkdir()
    (ws.datasets_dir / "a" / ".tmp-deadbeef").mkdir()
    (ws.tmp_dir / ".tmp-stage-1.parquet").write_bytes(b"x")
    from storage.integrity import check_workspace

    kinds = sorted((p.kind, p.where) for p in check_workspace(ws))
    assert ("missing_manifest", "a@v1") in kinds and ("hash_mismatch", "b@v1") in kinds
    assert ("uncommitted_version", "datasets/a/v9") in kinds and ("temp_leftover", "datasets/a/.tmp-deadbeef") in kinds
    assert ("temp_leftover", "tmp/.tmp-stage-1.parquet") in kinds
    assert {w for k, w in kinds if k == "dangling_reference"} == {"item_sids", "interactions", "verdicts"}
    r = subprocess.run([RECOT, "workspace", "check", "-w", str(ws_path), "--repair"], capture_output=True, text=True)
    assert r.returncode == 1 and "removed datasets/a/.tmp-deadbeef" in r.stdout
    assert "removed datasets/a/v9" in r.stdout   # a folder without a committed row is not a version
    assert not (ws.datasets_dir / "a" / ".tmp-deadbeef").exists() and not (ws.datasets_dir / "a" / "v9").exists()
    left = {p.kind for p in check_workspace(ws)}
    assert "temp_leftover" not in left and "uncommitted_version" not in left and "hash_mismatch" in left


def test_export_of_a_version_with_no_kept_rows_fails_and_writes_nothing(tmp_path):
    ws_path = tmp_path / "ws"
    ws = Workspace.open(ws_path)
    t = _samples(3)
    write_version(ws, "cot-curated", t.append_column("keep", pa.array([False] * 3)), step="curate")
    out = tmp_path / "out"
    r = subprocess.run([RECOT, "datasets", "export", "cot-curated", "-o", str(out), "-w", str(ws_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "0 rows to export; nothing written" in r.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-export")]
    # with the rejected rows included there is something to export
    _ok(["datasets", "export", "cot-curated", "-o", str(out), "--include-rejected", "-w", str(ws_path)])
    assert len(datasets.load_from_disk(str(out))) == 3


def test_export_prints_no_third_party_progress_bars(tmp_path):
    """HF datasets' own tqdm bar ("Saving the dataset …") stays out of recot's output."""
    ws_path = tmp_path / "ws"
    write_version(Workspace.open(ws_path), "cot", _samples(3), step="synth")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE",
                                                            "HF_HUB_DISABLE_PROGRESS_BARS")}
    r = subprocess.run([RECOT, "datasets", "export", "cot", "-o", str(tmp_path / "hf"), "-w", str(ws_path)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "exported cot@v1" in r.stdout
    assert "Saving the dataset" not in r.stdout + r.stderr and "%|" not in r.stdout + r.stderr
