"""Options and output helpers shared by every command group."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleDimensions

from storage.workspace import DEFAULT_WORKSPACE, Workspace


class _Console(Console):
    """A rich Console that never truncates or wraps when its output is not a terminal: piped into grep or a
    file, a table row is one line with every name in full (an 80-column default would cut names to `align_item…`)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(100_000, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


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
