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

Start-up cost: the log is the truth, `index.bin` is a persistent accelerator over it. The index holds, per
segment it covers, the segment's size and mtime when indexed, and for every completed key its sha256
digest, segment, offset and length, sorted by digest (numpy arrays: ~56 bytes per key, looked up by binary
search, never turned into a Python dict). A start reads that one file and `stat`s each segment; only a
segment the index does not cover (written by a job that was killed, or still running) or covers partly
(it grew: only the new tail is read) or that changed under it (rewritten / truncated: read again in full)
is scanned. So start time does not grow with the number of segments or cached responses beyond reading
the index (~60 ms per million keys), and a torn tail is handled by the same line rules as before. The
index is rewritten atomically (storage/atomic.py) when a writer closes and when a start had to scan; two
writers closing at once can lose each other's update, which only means the next start scans that segment.

Error records (`ok: false`) are logged for accounting but are not cache hits: a re-run retries them.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from storage.atomic import atomic_open

log = logging.getLogger(__name__)

INDEX_NAME = "index.bin"
_MAGIC = b"RECOT-TEACHER-INDEX-1\n"


def _digest(key: str) -> bytes | None:
    """The 32 raw bytes of a sha256 hex key (every engine key), or None for any other key shape."""
    if len(key) != 64:
        return None
    try:
        return bytes.fromhex(key)
    except ValueError:
        return None


class _Index:
    """Sorted, immutable arrays of the keys an index file covers."""

    def __init__(self, names: list[str], hi: np.ndarray, seg: np.ndarray, off: np.ndarray, ln: np.ndarray,
                 dig: np.ndarray, extra: dict[str, tuple[int, int, int]]):
        self.names, self.hi, self.seg, self.off, self.ln, self.dig, self.extra = names, hi, seg, off, ln, dig, extra
        self.valid = np.ones(len(names) + 1, dtype=bool)  # per segment id; cleared for a segment read again

    @classmethod
    def empty(cls) -> _Index:
        z8, z4 = np.zeros(0, np.uint64), np.zeros(0, np.uint32)
        return cls([], z8, z4, z8.copy(), z4.copy(), np.zeros((0, 32), np.uint8), {})

    def find(self, key: str) -> tuple[str, int, int] | None:
        d = _digest(key)
        if d is None:
            loc = self.extra.get(key)
            if loc is None or not self.valid[loc[0]]:
                return None
            return self.names[loc[0]], loc[1], loc[2]
        h = int.from_bytes(d[:8], "big")
        i = int(np.searchsorted(self.hi, np.uint64(h)))
        while i < len(self.hi) and int(self.hi[i]) == h:
            if self.dig[i].tobytes() == d and self.valid[self.seg[i]]:
                return self.names[int(self.seg[i])], int(self.off[i]), int(self.ln[i])
            i += 1
        return None

    def live_count(self) -> int:
        if self.valid.all():
            return len(self.hi) + len(self.extra)
        n = int(self.valid[self.seg].sum()) if len(self.seg) else 0
        return n + sum(1 for s, _, _ in self.extra.values() if self.valid[s])

    def live_keys(self) -> Iterator[str]:
        keep = self.valid[self.seg] if len(self.seg) else np.zeros(0, bool)
        for row in self.dig[keep]:
            yield row.tobytes().hex()
        yield from (k for k, (s, _, _) in self.extra.items() if self.valid[s])


class TeacherCache:
    """Index of completed responses over all segments, plus an append handle on this process' segment."""

    def __init__(self, directory: str | os.PathLike[str], *, fsync_interval_ms: float = 20.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync_interval_s = fsync_interval_ms / 1000.0
        self._base = _Index.empty()                           # what index.bin covers (still valid)
        self._index: dict[str, tuple[Path, int, int]] = {}   # keys not in the base: scanned now or put here
        self._seginfo: dict[str, dict[str, int]] = {}        # segment name -> size/covered/mtime/torn/errors
        self.loaded_errors = 0                                # error records seen on load (not hits)
        self.torn_lines = 0                                   # unterminated / unparsable lines ignored
        self.files_read = 0                                   # files opened by the last load (index + scans)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._seg: Path | None = None
        self._size = 0
        self._errors = 0
        self._wrote = False
        self._dirty = False
        self._closed = False
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._load()

    # ------------------------------------------------------------------ reading
    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("seg-*.jsonl"))

    def _read_index(self) -> tuple[_Index, dict[str, dict[str, int]]]:
        path = self.dir / INDEX_NAME
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return _Index.empty(), {}
        self.files_read += 1
        try:
            with f:
                if f.read(len(_MAGIC)) != _MAGIC:
                    raise ValueError("not a recot teacher index")
                (hlen,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(hlen))
                n = int(header["n"])
                arrays = [np.fromfile(f, dtype=dt, count=c) for dt, c in
                          ((np.uint64, n), (np.uint32, n), (np.uint64, n), (np.uint32, n), (np.uint8, 32 * n))]
                if any(len(a) != c for a, c in zip(arrays, (n, n, n, n, 32 * n))):
                    raise ValueError("index file is short")
        except (OSError, ValueError, KeyError, json.JSONDecodeError, struct.error) as exc:
            log.warning("%s: unreadable teacher cache index (%s); reading the segments instead", path, exc)
            return _Index.empty(), {}
        names = [s["name"] for s in header["segments"]]
        hi, seg, off, ln, dig = arrays
        extra = {k: (int(v[0]), int(v[1]), int(v[2])) for k, v in header.get("extra", {}).items()}
        return _Index(names, hi, seg, off, ln, dig.reshape(n, 32), extra), \
            {s["name"]: s for s in header["segments"]}

    def _scan(self, seg: Path, start: int) -> dict[str, int]:
        """Read `seg` from byte `start` (a line start) to its end; returns its coverage info."""
        with open(seg, "rb") as f:
            self.files_read += 1
            f.seek(start)
            data = f.read()
            st = os.fstat(f.fileno())
        offset, torn, errors = start, 0, 0
        pieces = data.split(b"\n")
        for k, raw in enumerate(pieces):
            if k == len(pieces) - 1:        # no terminating newline: torn by a kill, or the empty tail
                if raw.strip():
                    torn += 1
                    log.warning("%s: ignoring a torn last line at byte %d (interrupted write)", seg, offset)
                break
            if raw.strip():
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError:
                    torn += 1
                    log.warning("%s: ignoring an unreadable line at byte %d", seg, offset)
                    rec = None
                if rec is not None:
                    if rec.get("ok"):
                        key = rec["key"]
                        if key not in self._index and self._base.find(key) is None:
                            self._index[key] = (seg, offset, len(raw))
                    else:
                        errors += 1
            offset += len(raw) + 1
        return {"size": start + len(data), "covered": offset, "mtime_ns": st.st_mtime_ns,
                "torn": torn, "errors": errors}

    def _load(self) -> None:
        self.files_read = 0
        base, info = self._read_index()
        self._base = base
        on_disk = self.segments()
        names_on_disk = {p.name for p in on_disk}
        pos = {n: i for i, n in enumerate(base.names)}
        for name in base.names:                              # a covered segment that is gone
            if name not in names_on_disk:
                base.valid[pos[name]] = False
        scanned = False
        todo: list[tuple[Path, int, dict[str, int] | None]] = []
        for seg in on_disk:
            old = info.get(seg.name)
            if old is not None:
                st = seg.stat()
                if st.st_size == old["size"] and st.st_mtime_ns == old["mtime_ns"]:
                    self._seginfo[seg.name] = old         # fully trusted: nothing to read
                    continue
                if st.st_size > old["size"]:
                    todo.append((seg, int(old["covered"]), old))   # appended since: read the new tail
                    continue
                base.valid[pos[seg.name]] = False       # truncated or rewritten: read it again in full
            todo.append((seg, 0, None))
        for seg, start, old in todo:                    # after every invalidation, so find() is final
            new = self._scan(seg, start)
            if old is not None:
                new["errors"] += int(old["errors"])
            self._seginfo[seg.name] = new
            scanned = True
        for s in self._seginfo.values():
            self.torn_lines += int(s["torn"])
            self.loaded_errors += int(s["errors"])
        if scanned:
            self._write_index()

    def _write_index(self) -> None:
        """Rewrite index.bin over every segment in `_seginfo` (atomic; failure only costs a later scan)."""
        try:
            base = self._base
            names = sorted(self._seginfo)
            sid = {n: i for i, n in enumerate(names)}
            remap = np.array([sid.get(n, -1) for n in base.names] + [-1], dtype=np.int64)
            keep = base.valid[base.seg] & (remap[base.seg] >= 0) if len(base.seg) else np.zeros(0, bool)
            new_keys, extra_items = [], {}
            for k, (p, o, n) in self._index.items():
                if p.name not in sid:
                    continue
                d = _digest(k)
                if d is None:
                    extra_items[k] = [sid[p.name], o, n]
                else:
                    new_keys.append((d, sid[p.name], o, n))
            for k, (s, o, n) in base.extra.items():
                if base.valid[s] and remap[s] >= 0:
                    extra_items.setdefault(k, [int(remap[s]), o, n])
            m = len(new_keys)
            ndig = np.frombuffer(b"".join(d for d, _, _, _ in new_keys), np.uint8).reshape(m, 32)
            dig = np.concatenate([base.dig[keep], ndig])
            seg = np.concatenate([remap[base.seg[keep]].astype(np.uint32),
                                  np.array([s for _, s, _, _ in new_keys], np.uint32)])
            off = np.concatenate([base.off[keep], np.array([o for _, _, o, _ in new_keys], np.uint64)])
            ln = np.concatenate([base.ln[keep], np.array([n for _, _, _, n in new_keys], np.uint32)])
            hi = np.ascontiguousarray(dig[:, :8]).view(">u8").ravel().astype(np.uint64)
            order = np.argsort(hi, kind="stable")
            header = json.dumps({"n": len(hi), "extra": extra_items,
                                 "segments": [{"name": n, **self._seginfo[n]} for n in names]}).encode()
            with atomic_open(self.dir / INDEX_NAME, "wb") as fh:
                fh.write(_MAGIC + struct.pack("<Q", len(header)) + header)
                for arr in (hi[order], seg[order], off[order], ln[order], dig[order]):
                    fh.write(np.ascontiguousarray(arr).tobytes())
        except OSError as exc:      # a read-only cache folder (a viewer): the next writer will index it
            log.info("could not write the teacher cache index in %s: %s", self.dir, exc)

    def _find(self, key: str) -> tuple[Path, int, int] | None:
        loc = self._index.get(key)
        if loc is not None:
            return loc
        b = self._base.find(key)
        return None if b is None else (self.dir / b[0], b[1], b[2])

    def __contains__(self, key: str) -> bool:
        return self._find(key) is not None

    def __len__(self) -> int:
        return self._base.live_count() + len(self._index)

    def keys(self) -> Iterator[str]:
        return iter([*self._base.live_keys(), *self._index])

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record of a completed request, or None."""
        loc = self._find(key)
        if loc is None:
            return None
        seg, offset, length = loc
        with open(seg, "rb") as f:
            f.seek(offset)
            rec: dict[str, Any] = json.loads(f.read(length))
            return rec

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
        self._errors = 0
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
            assert self._fd is not None and self._seg is not None
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if record.get("ok"):
                if self._find(record["key"]) is None:
                    self._index[record["key"]] = (self._seg, self._size, len(line) - 1)
            else:
                self._errors += 1
            self._size += len(line)
            self._wrote = True
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
            seg, size, errors = self._seg, self._size, self._errors
            self._wake.notify_all()
        if fd is not None:
            os.fsync(fd)
            mtime = os.fstat(fd).st_mtime_ns
            os.close(fd)
            if seg is not None:     # every line of our own segment is complete: index it in full
                self._seginfo[seg.name] = {"size": size, "covered": size, "mtime_ns": mtime,
                                           "torn": 0, "errors": errors}
        if self._flusher is not None:
            self._flusher.join(timeout=2)
        if self._wrote:
            self._wrote = False
            self._write_index()

    def reopen(self) -> None:
        """Allow writing again after close() (a new segment is started on the next put)."""
        with self._lock:
            if self._closed:
                self._closed = False
                self._dirty = False
