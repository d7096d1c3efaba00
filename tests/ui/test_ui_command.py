"""`recot ui` command line: options, the Streamlit command it executes, and bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ui.cli import app
from ui.commands.viewer import APP_PATH, streamlit_command


def test_help_lists_options():
    res = CliRunner().invoke(app, ["ui", "--help"])
    assert res.exit_code == 0
    for opt in ("--workspace", "--port", "--host", "127.0.0.1"):
        assert opt in res.output


def test_streamlit_command_is_headless_local_and_passes_the_workspace(tmp_path):
    cmd = streamlit_command(tmp_path, 8765, "127.0.0.1")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(cmd[4]) == APP_PATH and APP_PATH.exists()
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.headless"] == "true" and opts["--server.address"] == "127.0.0.1"
    assert opts["--server.port"] == "8765"
    assert cmd[-3:] == ["--", "--workspace", str(tmp_path)]


def test_bad_port_is_a_config_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ui.cli", "ui", "--workspace", str(tmp_path), "--port", "70000"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "--port must be between 1 and 65535" in res.stderr
