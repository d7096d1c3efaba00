"""Re-running an identical, finished `recot synth run` is a no-op that says so; a run whose rows differ writes a
new version."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from storage.datasets import list_versions
from storage.workspace import Workspace
from ui.cli import app

runner = CliRunner()


def _ok(*args: str) -> str:
    res = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


def test_identical_rerun_writes_nothing_and_says_unchanged(tmp_path):
    items, inter, vec = tmp_path / "items.csv", tmp_path / "inter.csv", tmp_path / "vec.parquet"
    items.write_text("item_id,title,categories\n" + "".join(f"i{i},Item {i},Cat{i % 3}\n" for i in range(20)))
    inter.write_text("user_id,item_id,timestamp,rating\n" + "".join(
        f"u{k % 5},i{(k * 7) % 20},{1_600_000_000 + k},4\n" for k in range(100)))
    pq.write_table(pa.table({"item_id": [f"i{i}" for i in range(20)],
                             "vector": pa.array([[float(i % 4 == j) + 0.01 * i for j in range(4)] for i in range(20)],
                                                pa.list_(pa.float32()))}), vec)
    ws = ["-w", str(tmp_path / "ws")]
    _ok("ingest", "generic", "--items", str(items), "--interactions", str(inter), "--no-progress", *ws)
    _ok("sids", "build", "--vectors", str(vec), "-k", "4", "--no-progress", *ws)
    first = _ok("synth", "run", "align_item", "--no-progress", *ws)
    assert "alignment@v1" in first and "unchanged" not in first
    again = _ok("synth", "run", "align_item", "--no-progress", *ws)
    assert "unchanged: alignment@v1" in again
    assert [v.ref for v in list_versions(Workspace.open(tmp_path / "ws"), "alignment")] == ["alignment@v1"]
    other = _ok("synth", "run", "align_item", "--limit", "5", "--no-progress", *ws)
    assert "alignment@v2" in other and "unchanged" not in other
