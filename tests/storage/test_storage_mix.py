"""`recot datasets mix`: ratios/counts honoured, seeded, duplicates by sample_id removed, lineage to parents."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from storage.datasets import read_dv, resolve, write_version
from storage.errors import ConfigError, InputError
from storage.mix import MixPart, mix_versions, parse_parts, plan_counts
from storage.records import CURATED_SCHEMA, samples_from_pylist
from storage.workspace import Workspace
from ui.cli import app

runner = CliRunner()


def _rows(prefix: str, n: int, task: str, *, shared: int = 0, rejected: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        sid = f"shared-{i}" if i < shared else f"{prefix}-{i}"
        rows.append({"sample_id": sid, "prompt_id": sid, "task": task, "level": "R3", "mode": "blind",
                     "think": task == "cot", "domain": "default",
                     "messages": [{"role": "user", "content": f"q {sid}"}, {"role": "assistant", "content": "a"}],
                     "keep": i < n - rejected})
    return rows


def _curated(rows: list[dict]) -> pa.Table:
    t = samples_from_pylist([{k: v for k, v in r.items() if k != "keep"} for r in rows])
    cols = {f.name: t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
            for f in CURATED_SCHEMA}
    cols["keep"] = pa.array([r["keep"] for r in rows])
    return pa.table(cols, schema=CURATED_SCHEMA)


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    # 40 alignment rows (4 rejected), 100 CoT rows; 5 sample ids appear in both
    write_version(ws, "alignment-curated", _curated(_rows("al", 40, "align", shared=5, rejected=4)), step="test")
    write_version(ws, "cot-curated", _curated(_rows("cot", 100, "cot", shared=5)), step="test")
    return ws


def test_parse_parts_kinds_and_errors():
    assert parse_parts(["a:0.5", "b@v2:25%"]) == [MixPart("a", ratio=0.5), MixPart("b@v2", ratio=0.25)]
    assert parse_parts(["a:100", "b:3"]) == [MixPart("a", count=100), MixPart("b", count=3)]
    assert parse_parts(["a", "b"]) == [MixPart("a"), MixPart("b")]
    with pytest.raises(ConfigError, match="one kind"):
        parse_parts(["a:0.5", "b:10"])
    with pytest.raises(ConfigError, match="> 0"):
        parse_parts(["a:0.0", "b:1.0"])


def test_plan_counts_largest_mix_the_ratios_allow():
    parts = [MixPart("a", ratio=0.5), MixPart("b", ratio=0.5)]
    assert plan_counts(parts, [36, 100]) == [36, 36]
    assert plan_counts([MixPart("a", ratio=0.25), MixPart("b", ratio=0.75)], [36, 100]) == [33, 100]
    assert plan_counts(parts, [36, 100], total=11) == [6, 5]      # largest remainder, sums to the total
    with pytest.raises(InputError, match="needs 50 rows from a"):
        plan_counts(parts, [36, 100], total=100)


def test_cli_mix_counts_match_ratios_lineage_and_no_duplicates(ws):
    r = runner.invoke(app, ["datasets", "mix", "alignment-curated:0.5", "cot-curated:0.5", "-o", "mixed",
                            "-w", str(ws.root)])
    assert r.exit_code == 0, (r.output, r.exception)
    dv = resolve(ws, "mixed")
    assert {(p["name"], p["version"]) for p in dv.parents} == {("alignment-curated", 1), ("cot-curated", 1)}
    t = read_dv(dv).to_pylist()
    by_src: dict[str, int] = {}
    for row in t:
        by_src[row["mix_source"]] = by_src.get(row["mix_source"], 0) + 1
    # alignment has 36 kept rows → 36 + 36; the 5 shared ids count for alignment (listed first)
    assert by_src == {"alignment-curated@v1": 36, "cot-curated@v1": 36}, by_src
    ids = [row["sample_id"] for row in t]
    assert len(ids) == len(set(ids)) == dv.rows == 72
    assert all(row["keep"] for row in t)                       # rejected rows never enter the mix
    assert not any(row["sample_id"].startswith("shared") and row["task"] == "cot" for row in t)
    cfg = dv.manifest["config"]
    assert [p["taken"] for p in cfg["parts"]] == [36, 36] and cfg["seed"] == 0
    assert "36" in r.output and "mixed@v1" in r.output


def test_mix_is_seeded_and_counts_are_exact(ws):
    a = mix_versions(ws, parse_parts(["alignment-curated:10", "cot-curated:30"]), "m", seed=1)
    b = mix_versions(ws, parse_parts(["alignment-curated:10", "cot-curated:30"]), "m", seed=1)
    c = mix_versions(ws, parse_parts(["alignment-curated:10", "cot-curated:30"]), "m", seed=2)
    ids = [[r["sample_id"] for r in read_dv(x.version).to_pylist()] for x in (a, b, c)]
    assert ids[0] == ids[1] and ids[0] != ids[2]
    assert a.taken == {"alignment-curated@v1": 10, "cot-curated@v1": 30}
    assert json.loads(json.dumps(a.version.manifest["parents"])) == [
        {"name": "alignment-curated", "version": 1}, {"name": "cot-curated", "version": 1}]


def test_mix_refuses_more_rows_than_a_part_has(ws):
    r = runner.invoke(app, ["datasets", "mix", "alignment-curated:50", "cot-curated:10", "-o", "x",
                            "-w", str(ws.root)])
    assert r.exit_code != 0 and "needs 50 rows from alignment-curated" in str(r.exception)
