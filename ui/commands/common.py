"""Options and output helpers shared by every command group."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from storage.workspace import DEFAULT_WORKSPACE, Workspace

console = Console()
err_console = Console(stderr=True)

WorkspaceOpt = Annotated[Path, typer.Option(
    "--workspace", "-w", envvar="RECOT_WORKSPACE",
    help="Workspace folder (DuckDB catalog + Parquet dataset versions). Env: RECOT_WORKSPACE.")]
DEFAULT_WS = Path(DEFAULT_WORKSPACE)


def open_ws(path: Path, *, create: bool = True) -> Workspace:
    return Workspace.open(path, create=create)
