"""`recot ingest … --split global`: the global chronological split chosen on the command line, beside the
default leave-last-out; recorded as a run of its own; bad split options fail before anything is read."""
from __future__ import annotations

from typer.testing import CliRunner

from storage.errors import ConfigError, NotFound
from storage.workspace import Workspace
from ui.cli import app

runner = CliRunner()


def _files(tmp_path):
    items, inter = tmp_path / "items.csv", tmp_path / "inter.csv"
    items.write_text("item_id,title\n" + "".join(f"i{i},Item {i}\n" for i in range(100)))
    # 100 interactions, one a day, 5 users taking turns: a global time cut differs from leave-last-out
    inter.write_text("user_id,item_id,timestamp,rating\n" + "".join(
        f"u{k % 5},i{k},{1_700_000_000 + k * 86_400},4\n" for k in range(100)))
    return ["--items", str(items), "--interactions", str(inter), "--no-progress"]


def _counts(ws: Workspace) -> dict[str, int]:
    return dict(ws.query("SELECT split, count(*) FROM splits GROUP BY split"))


def test_ingest_split_global_cuts_all_users_by_time(tmp_path):
    ws_dir = tmp_path / "ws"
    res = runner.invoke(app, ["ingest", "generic", *_files(tmp_path), "--split", "global", "--split-ratios", "8,1,1",
                              "-w", str(ws_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, (res.output, res.exception)
    ws = Workspace.open(ws_dir)
    assert _counts(ws) == {"train": 80, "valid": 10, "test": 10}
    assert "split test" in res.output and "global chronological split 8:1:1" in " ".join(res.output.split())
    (train_max,), (test_min,) = (ws.query("SELECT max(ts) FROM splits WHERE split = 'train'")[0],
                                 ws.query("SELECT min(ts) FROM splits WHERE split = 'test'")[0])
    assert train_max < test_min                                     # nothing in train is newer than test
    assert ws.query("SELECT count(DISTINCT user_id) FROM splits WHERE split = 'test'")[0][0] == 5
    kinds = [r[0] for r in ws.query("SELECT kind FROM runs ORDER BY started_at")]
    assert kinds[-1] == "split" and "ingest" in kinds


def test_ingest_default_is_leave_last_out_and_window_needs_global(tmp_path):
    ws_dir = tmp_path / "ws"
    res = runner.invoke(app, ["ingest", "generic", *_files(tmp_path), "-w", str(ws_dir)])
    assert res.exit_code == 0, (res.output, res.exception)
    assert _counts(Workspace.open(ws_dir)) == {"train": 90, "valid": 5, "test": 5}   # one test item per user
    for bad, msg in ((["--split", "time"], "expected one of leave-last-out, global"),
                     (["--split", "global", "--split-ratios", "8,2"], "expected three numbers"),
                     (["--split-start", "2024-01-01"], "apply to --split global only")):
        r = runner.invoke(app, ["ingest", "generic", *_files(tmp_path), *bad, "-w", str(tmp_path / "other")])
        assert r.exit_code != 0 and isinstance(r.exception, ConfigError) and msg in str(r.exception), bad
        assert not (tmp_path / "other").exists()                     # refused before a workspace was made


def test_ingest_global_split_window_outside_the_data_says_what_happened(tmp_path):
    r = runner.invoke(app, ["ingest", "generic", *_files(tmp_path), "--split", "global", "--split-start",
                            "2030-01-01", "-w", str(tmp_path / "ws")])
    assert isinstance(r.exception, NotFound) and "leave-last-out split" in str(r.exception)
