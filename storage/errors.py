"""Exceptions with actionable text. The CLI turns every RecotError into a one-line message and a non-zero
exit code instead of a traceback."""
from __future__ import annotations


class RecotError(Exception):
    """Base class of errors a user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class InputError(RecotError):
    """Bad input data: names the file, the line/row and the field so the user can fix it."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field, self.detail = file, line, field, message
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class ConfigError(RecotError):
    """A YAML config or CLI option that cannot be used as given."""

    exit_code = 2


class WorkspaceBusy(RecotError):
    """Another process holds the workspace's writer lock."""

    exit_code = 3


class NotFound(RecotError):
    """A dataset, version, run or item that does not exist in the workspace."""

    exit_code = 4
