"""The `recot` command line behaves like other typer/click tools: --version, -h, plain value types in help,
choices listed, --json for scripts, full names when piped, group options handed to subcommands."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner
from ui_workspace import TITLES

from ui.cli import app

runner = CliRunner()


def _recot(*args: str, columns: int = 40) -> subprocess.CompletedProcess:
    """A real subprocess with stdout piped (not a TTY) and a narrow COLUMNS, as in `recot ... | grep`."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_version_and_short_help():
    res = _recot("--version")
    assert res.returncode == 0 and res.stdout.strip() == "recot 0.1.0", res.stderr
    res = runner.invoke(app, ["datasets", "list", "-h"])
    assert res.exit_code == 0 and "--json" in res.output


def test_help_shows_plain_types_choices_and_escaped_brackets():
    out = runner.invoke(app, ["curate", "report", "--help"], env={"COLUMNS": "200"}).output
    assert "NAME[@vN]" in out
    run_help = runner.invoke(app, ["synth", "run", "--help"], env={"COLUMNS": "200"}).output
    for noise in ("<bool>", "<list[str]>", "<str>", "{task}"):
        assert noise not in run_help + out
    assert "recot synth run [OPTIONS] TASK" in run_help
    assert "hint|blind" in run_help and "train|valid|test" in run_help
    export_help = runner.invoke(app, ["datasets", "export", "--help"], env={"COLUMNS": "200"}).output
    assert "hf|parquet|openonerec" in export_help


def test_bad_choice_is_a_usage_error(tmp_path):
    res = runner.invoke(app, ["datasets", "export", "x", "-o", str(tmp_path / "o"), "-f", "csv",
                              "-w", str(tmp_path)])
    assert res.exit_code == 2


def test_piped_list_keeps_full_names_one_per_line(viewer_ws_path):
    res = _recot("datasets", "list", "-w", str(viewer_ws_path))
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "r3_recommend-curated@v1" in ln]
    assert len(lines) == 1 and "r3_recommend@v1" in lines[0]   # the parents column, whole, on the same line
    assert "…" not in res.stdout


def test_json_output_of_list_and_show_commands(viewer_ws_path):
    ws = str(viewer_ws_path)
    versions = json.loads(runner.invoke(app, ["datasets", "list", "--json", "-w", ws]).stdout)
    assert {v["ref"] for v in versions} == {"r3_recommend@v1", "r3_recommend@v2", "r3_recommend-curated@v1"}
    shown = json.loads(runner.invoke(app, ["datasets", "show", "r3_recommend@v1", "-n", "2", "--json",
                                           "-w", ws]).stdout)
    assert shown["manifest"]["rows"] == 8 and len(shown["rows"]) == 2
    runs = json.loads(runner.invoke(app, ["runs", "list", "--json", "-w", ws]).stdout)
    synth = [r for r in runs if r["kind"] == "synth"]
    assert synth and set(synth[0]["produced"]) == {"r3_recommend@v1", "r3_recommend@v2"}
    tasks = json.loads(runner.invoke(app, ["synth", "list", "--json", "-w", ws]).stdout)
    assert "r3_recommend" in {t["name"] for t in tasks}
    info = json.loads(runner.invoke(app, ["workspace", "info", "--json", "-w", ws]).stdout)
    assert info["rows"]["dataset_versions"] == 3 and info["rows"]["items"] == len(TITLES)
    chains = json.loads(runner.invoke(app, ["curate", "chains", "--json"]).stdout)
    assert "default" in {c["chain"] for c in chains}


def test_runs_list_table_names_what_each_run_produced(viewer_ws_path):
    res = _recot("runs", "list", "-w", str(viewer_ws_path))
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if " synth " in ln)
    assert "r3_recommend@v1, r3_recommend@v2" in line


def test_curate_group_dataset_option_reaches_report(viewer_ws_path):
    ws = str(viewer_ws_path)
    rep = json.loads(runner.invoke(app, ["curate", "-d", "r3_recommend-curated@v1", "-w", ws, "--json",
                                         "report"]).stdout)
    direct = json.loads(runner.invoke(app, ["curate", "report", "-d", "r3_recommend-curated@v1", "-w", ws,
                                            "--json"]).stdout)
    assert rep == direct


@pytest.mark.parametrize("opt", [["-c", "minimal"], ["--executor", "ray"]])
def test_curate_chain_options_with_a_subcommand_are_refused(viewer_ws_path, opt):
    res = runner.invoke(app, ["curate", *opt, "report", "-w", str(viewer_ws_path)])
    assert res.exit_code != 0 and "cannot be combined" in str(res.exception or res.output)
