"""Atomic file writes: a reader (or a process restarted after `kill -9`) sees the old file or the new one,
never a torn one.

The recipe is: write a sibling temp file → flush + fsync → rename it over the target (`os.replace`, atomic on
POSIX within one filesystem) → fsync the folder so the rename itself survives a power cut. The temp file is
removed if anything fails. Dataset versions are folders and are published differently (see
storage/datasets.py); exports and model folders are published whole by `publish_dir`.

    atomic_write_json(ws.root / "review" / "state.json", state, mode=0o600)
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh)
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

StrPath = str | os.PathLike[str]
T = TypeVar("T")
log = logging.getLogger(__name__)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened: the rename is still atomic, just not yet durable
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: StrPath, kind: Literal["w", "wb"] = "w", *, mode: int | None = None,
                encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file next to `path` for writing; on a clean exit it replaces `path` atomically.

    `mode` sets the file's permission bits exactly (e.g. 0o600 for credentials); None gives what `open()`
    would (0o666 less the umask). Missing parent folders are created."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # the umask may have cleared bits the caller asked for
        with os.fdopen(fd, kind, encoding=None if "b" in kind else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: StrPath, data: bytes, *, mode: int | None = None) -> None:
    """Write `data` to `path` atomically (see `atomic_open`)."""
    with atomic_open(path, "wb", mode=mode) as fh:
        fh.write(data)


def atomic_write_text(path: StrPath, text: str, *, mode: int | None = None, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see `atomic_open`)."""
    with atomic_open(path, "w", mode=mode, encoding=encoding) as fh:
        fh.write(text)


def atomic_write_json(path: StrPath, data: Any, *, mode: int | None = None, indent: int | None = 2) -> None:
    """Write `data` as JSON (plus a final newline) to `path` atomically (see `atomic_open`)."""
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n", mode=mode)


def atomic_replace(src: StrPath, dest: StrPath) -> None:
    """Publish a finished temp file that was written elsewhere (e.g. streamed into the workspace's tmp folder)
    at `dest`: fsync it, rename it over `dest`, fsync the folder. Both must be on one filesystem."""
    src, dest = Path(src), Path(dest)
    with open(src, "rb") as fh:
        os.fsync(fh.fileno())
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    _fsync_dir(dest.parent)


def publish_dir(out: Path, write: Callable[[Path], T], *, kind: str = "export") -> T:
    """The folder counterpart of `atomic_open`: run `write(tmp)` on a fresh temp folder next to `out`, then
    rename it into place (an existing `out` is swapped out and removed), so a crash never leaves a half-written
    `out`. Temp folders are named `.tmp-<kind>-<pid>-*`; those of killed writers of the same kind are removed
    first. The caller decides beforehand whether an existing `out` may be replaced. Used by the exports
    (kind "export") and the trainers' model folders (kind "model")."""
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(out.parent, kind)
    tmp = out.parent / f".tmp-{kind}-{os.getpid()}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        result = write(tmp)
        if out.exists():
            old = out.parent / f".tmp-old-{os.getpid()}-{uuid.uuid4().hex}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def remove_dead_leftovers(parent: Path, kind: str) -> list[Path]:
    """Temp folders a killed `publish_dir` left in `parent` (`.tmp-<kind>-<pid>-*`, `.tmp-old-<pid>-*`):
    removed when their pid is gone, so a later writer cleans up after a killed one. A live writer's are kept."""
    import shutil

    from storage.runs import pid_alive  # runs → workspace → …: imported here, not at module load

    removed = []
    for p in parent.glob(".tmp-*-*-*"):
        k, _, rest = p.name[len(".tmp-"):].partition("-")
        pid = rest.split("-", 1)[0]
        if k in (kind, "old") and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed %s (left by a killed writer)", p)
            removed.append(p)
    return removed
