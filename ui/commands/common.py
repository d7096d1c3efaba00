"""Options and output helpers shared by every command group."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from storage.workspace import DEFAULT_WORKSPACE, Workspace


class _Console(Console):
    """A rich Console whose tables never truncate or wrap when the output is not a terminal: piped into grep or
    a file, a table row is one line with every name in full (the 80-column default cut names to `align_item…`).
    Rules and panels keep the normal width."""

    def print(self, *objects: Any, **kw: Any) -> None:
        if self.is_terminal or not any(isinstance(o, Table) for o in objects):
            super().print(*objects, **kw)
            return
        saved = self._width
        self.width = 100_000   # tables are not expanded: they take their content's width, no more
        try:
            super().print(*objects, **kw)
        finally:
            self._width = saved


console = _Console()
err_console = _Console(stderr=True)

WorkspaceOpt = Annotated[Path, typer.Option(
    "--workspace", "-w", envvar="RECOT_WORKSPACE",
    help="Workspace folder (DuckDB catalog + Parquet dataset versions). Env: RECOT_WORKSPACE.")]
DEFAULT_WS = Path(DEFAULT_WORKSPACE)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def open_ws(path: Path, *, create: bool = True) -> Workspace:
    return Workspace.open(path, create=create)


def emit_json(obj: Any) -> None:
    """Plain JSON on stdout (no colours, no wrapping), for scripts: `recot datasets list --json | jq`."""
    typer.echo(json.dumps(obj, indent=2, default=str, ensure_ascii=False))
