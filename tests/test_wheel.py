"""The wheel is complete: built from a copy of the source, installed (no deps) into a fresh venv, it runs a tiny
ingest → sids → synth → curate from a folder outside the repo, with the curation chains it ships.

The fresh venv has no packages of its own; the project venv's site-packages on PYTHONPATH supplies the
dependencies (torch, duckdb, …) without installing anything again. PYTHONPATH entries are not site dirs,
so the project's editable-install hook there is never run: recot itself comes only from the wheel."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv*", "recot-data", "build", "*.egg-info", "__pycache__", "tests",
                              "benchmarks", "docs", ".pytest_cache", ".recot-cache", "*.pyc")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)   # build from a copy: no build/ or egg-info left in the repo
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (whl,) = (tmp / "dist").glob("recot-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                        "--no-deps", "--no-index", str(whl)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return venv


def _run(venv: Path, cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RECOT_WORKSPACE", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]   # the project venv's dependencies only
    r = subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


def _tiny_catalog(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir()
    items, inter, vec = folder / "items.csv", folder / "interactions.csv", folder / "vectors.parquet"
    items.write_text("item_id,title,categories\n" + "".join(f"i{i},Item {i},Cat{i % 3}\n" for i in range(24)))
    inter.write_text("user_id,item_id,timestamp,rating\n" + "".join(
        f"u{k % 6},i{(k * 7) % 24},{1_600_000_000 + k},{1 + k % 5}\n" for k in range(120)))
    ids = [f"i{i}" for i in range(24)]
    vectors = [[float(i % 3 == j) + 0.01 * i for j in range(4)] for i in range(24)]
    pq.write_table(pa.table({"item_id": ids, "vector": pa.array(vectors, pa.list_(pa.float32()))}), vec)
    return items, inter, vec


def test_installed_wheel_runs_ingest_synth_curate_with_its_shipped_chains(wheel_venv, tmp_path):
    work = tmp_path / "elsewhere"
    items, inter, vec = _tiny_catalog(work)
    where = _run(wheel_venv, work, "python", "-c", "import curation.config as c, synth; "
                 "print(c.CONFIG_DIR); print(synth.__file__)")
    config_dir, synth_file = where.split()
    assert config_dir.startswith(str(wheel_venv)) and config_dir.endswith("recot_configs/curation")
    assert synth_file.startswith(str(wheel_venv))          # recot comes from the wheel, not the repo
    assert _run(wheel_venv, work, "recot", "--version").strip() == "recot 0.1.0"
    chains = _run(wheel_venv, work, "recot", "curate", "chains")
    assert "default" in chains and "minimal" in chains
    ws = ["-w", str(work / "ws")]
    _run(wheel_venv, work, "recot", "ingest", "generic", "--items", str(items), "--interactions", str(inter),
         "--no-progress", *ws)
    _run(wheel_venv, work, "recot", "sids", "build", "--vectors", str(vec), "-k", "4", "--no-progress", *ws)
    _run(wheel_venv, work, "recot", "synth", "run", "align_item", "--no-progress", *ws)
    out = _run(wheel_venv, work, "recot", "curate", "-d", "alignment", "-c", "minimal", "--no-examples", *ws)
    assert "alignment-curated@v1" in out
    listed = _run(wheel_venv, work, "recot", "datasets", "list", *ws)
    assert sum("alignment-curated@v1" in line for line in listed.splitlines()) == 1
