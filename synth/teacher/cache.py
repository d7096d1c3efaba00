"""The durable request cache: an append-only JSONL log of every finished request, indexed by cache key.

Layout: `<ws.cache_dir>/teacher/seg-<time>-<pid>-<rand>.jsonl`. Each process that writes opens its own new
segment, so two jobs sharing a cache never interleave bytes, and a segment torn by `kill -9` (or a power
cut) is never appended to again: on load its unterminated last line is simply ignored.

Durability trade-off (documented in docs/teacher.md): a response is written to the log with one `write()`
*before* the engine reports it complete. Once `write()` returns the bytes are in the kernel's page cache
and survive `kill -9` of the process, so a killed job never loses a response it reported, and never asks
for it again. `fsync` (which only matters for an OS crash or power loss) is group-committed by a
background thread every `fsync_interval_ms` (default 20 ms) instead of once per response, which keeps the
per-request overhead to one small `write()`. A power loss can thus drop the last few milliseconds of
responses; those requests are simply sent again on resume (they were never in the log, so nothing is
duplicated). `fsync_interval_ms=0` fsyncs every response.

Error records (`ok: false`) are logged for accounting but are not cache hits: a re-run retries them.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TeacherCache:
    """Index of completed responses over all segments, plus an append handle on this process' segment."""

    def __init__(self, directory: str | os.PathLike, *, fsync_interval_ms: float = 20.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync_interval_s = fsync_interval_ms / 1000.0
        self._index: dict[str, tuple[Path, int, int]] = {}   # key -> (segment, offset, length) of its ok line
        self.loaded_errors = 0                                # error records seen on load (not hits)
        self.torn_lines = 0                                   # unterminated / unparsable lines ignored
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seg: Path | None = None
        self._size = 0
        self._dirty = False
        self._closed = False
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._load()

    # ------------------------------------------------------------------ reading
    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.jsonl"))

    def _load(self) -> None:
        for seg in self.segments():
            data = seg.read_bytes()
            offset = 0
            for raw in data.split(b"\n"):
                length = len(raw) + 1
                end = offset + len(raw)
                if end >= len(data):        # no terminating newline: torn by a kill, or the empty tail
                    if raw.strip():
                        self.torn_lines += 1
                        log.warning("%s: ignoring a torn last line at byte %d (interrupted write)", seg, offset)
                    break
                if raw.strip():
                    try:
                        rec = json.loads(raw)
                    except json.JSONDecodeError:
                        self.torn_lines += 1
                        log.warning("%s: ignoring an unreadable line at byte %d", seg, offset)
                        rec = None
                    if rec is not None:
                        if rec.get("ok"):
                            self._index.setdefault(rec["key"], (seg, offset, len(raw)))
                        else:
                            self.loaded_errors += 1
                offset += length

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> Iterator[str]:
        return iter(list(self._index))

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record of a completed request, or None."""
        loc = self._index.get(key)
        if loc is None:
            return None
        seg, offset, length = loc
        with open(seg, "rb") as f:
            f.seek(offset)
            return json.loads(f.read(length))

    def records(self, *, include_errors: bool = False) -> Iterator[dict[str, Any]]:
        """Every record in log order (for audits and tests)."""
        for seg in self.segments():
            data = seg.read_bytes()
            lines = data.split(b"\n")
            for raw in lines[:-1]:          # the last piece is either empty or torn
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if include_errors or rec.get("ok"):
                    yield rec

    # ------------------------------------------------------------------ writing
    def _open_segment(self) -> None:
        name = f"seg-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
        self._seg = self.dir / name
        self._fd = os.open(self._seg, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0
        if self.fsync_interval_s > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="teacher-cache-fsync", daemon=True)
            self._flusher.start()

    def put(self, record: dict[str, Any]) -> None:
        """Append one finished request (ok or error). Returns once the line is in the kernel (kill -9 safe)."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._closed:
                raise RuntimeError("teacher cache is closed")
            if self._fd is None:
                self._open_segment()
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if record.get("ok") and record["key"] not in self._index:
                self._index[record["key"]] = (self._seg, self._size, len(line) - 1)
            self._size += len(line)
            if self.fsync_interval_s <= 0:
                os.fsync(self._fd)
            else:
                self._dirty = True
                self._wake.notify()

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                while not self._dirty and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                fd = self._fd
            time.sleep(self.fsync_interval_s)          # gather the next few responses into one fsync
            with self._lock:
                self._dirty = False
            if fd is not None:
                try:
                    os.fsync(fd)
                except OSError:                        # closed meanwhile
                    return

    def flush(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                self._dirty = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fd, self._fd = self._fd, None
            self._wake.notify_all()
        if fd is not None:
            os.fsync(fd)
            os.close(fd)
        if self._flusher is not None:
            self._flusher.join(timeout=2)

    def reopen(self) -> None:
        """Allow writing again after close() (a new segment is started on the next put)."""
        with self._lock:
            if self._closed:
                self._closed = False
                self._dirty = False
