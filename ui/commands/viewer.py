"""`recot ui` — start the Streamlit trace viewer on a workspace (read-only; safe while jobs run)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from storage.errors import ConfigError
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console

APP_PATH = Path(__file__).resolve().parents[1] / "viewer" / "app.py"


def streamlit_command(workspace: Path, port: int, host: str) -> list[str]:
    """The `streamlit run` command line `recot ui` executes (exposed for tests)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP_PATH),
            "--server.headless", "true", "--server.address", host, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal",
            "--", "--workspace", str(workspace)]


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui_command(
        workspace: WorkspaceOpt = DEFAULT_WS,
        port: Annotated[int, typer.Option("--port", "-p", help="Port to serve the viewer on.")] = 8501,
        host: Annotated[str, typer.Option(
            "--host", help="Address to bind. Default 127.0.0.1 (this machine only); the viewer has no "
                           "authentication, so think twice before exposing it.")] = "127.0.0.1",
    ) -> None:
        """Browse a workspace in the browser: datasets, runs, the curation funnel, traces (filter, search,
        detail), SIDs and version comparison. Opens the catalog read-only, so it never blocks a running job."""
        if not 0 < port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535, got {port}")
        ws_path = workspace.expanduser().resolve()
        if not (ws_path / "catalog.duckdb").exists():
            console.print(f"[yellow]No workspace at {ws_path} yet; the viewer will show how to create one.[/]")
        env = dict(os.environ, RECOT_VIEWER_WORKSPACE=str(ws_path))
        console.print(f"recot viewer on http://{host}:{port}  (workspace {ws_path}; Ctrl-C to stop)")
        sys.stdout.flush()
        # exec, not a child process: Ctrl-C and `kill PID` reach Streamlit directly, nothing is left orphaned.
        cmd = streamlit_command(ws_path, port, host)
        os.execve(cmd[0], cmd, env)
