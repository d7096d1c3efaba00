"""Streaming readers shared by all ingest formats: text lines (plain or .gz) with exact line numbers and
UTF-8 checks, JSON lines (with a Python-literal fallback for the 2014 Amazon metadata), CSV and Parquet in
Arrow batches. None of them ever holds a whole file in memory; each row carries `_file` and `_line` so later
errors can point at the source.
"""
from __future__ import annotations

import ast
import gzip
import html
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from storage.errors import InputError


class RejectSink(Protocol):
    """Where a reader sends a bad row: storage.ingest.catalog.Rejects raises it as an InputError or records
    it, by `on_error`."""

    @property
    def on_error(self) -> str: ...

    def reject(self, reason: str, *, file: str | None, line: int | None, field: str | None,
               raw: Any = None) -> None: ...

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- progress
@contextmanager
def file_progress(path: Path, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yields `update(bytes_done)`; shows a rich progress bar over the file's (compressed) size when enabled."""
    if not enabled:
        yield lambda done: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    total = path.stat().st_size
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  transient=False) as prog:
        task = prog.add_task(f"reading {path.name}", total=total)
        yield lambda done: prog.update(task, completed=min(done, total))
        prog.update(task, completed=total)


def check_columns(file: str | Path, found: list[str], expected: list[str], *, what: str = "columns") -> None:
    """InputError naming the expected and the found columns when some are missing."""
    missing = [c for c in expected if c not in found]
    if missing:
        raise InputError(f"missing {what} {', '.join(repr(c) for c in missing)}; expected "
                         f"{', '.join(expected)}; found {', '.join(found) or 'none'}",
                         file=str(file), line=1, field=missing[0])


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes, whatever its name (a dump renamed without .gz)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def _open_binary(path: Path) -> tuple[io.BufferedIOBase, io.BufferedIOBase]:
    raw = open(path, "rb")
    if path.suffix == ".gz" or is_gzip(path):
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    return raw, raw


class _TextOf(HTMLParser):
    """The text of an HTML fragment: tags dropped, entities (`&amp;`, `&#39;`) decoded; <br>/<p>/<li> end a
    line."""

    BREAKS = frozenset({"br", "p", "li", "div", "tr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")


def clean_html(text: str | None) -> str | None:
    """`text` with HTML tags removed and entities decoded (catalog dumps carry `&amp;` and `<b>…</b>` in
    titles and descriptions), runs of spaces collapsed; None when nothing is left."""
    if text is None:
        return None
    if "<" in text or "&" in text:
        parser = _TextOf()
        parser.feed(text)
        parser.close()
        text = html.unescape("".join(parser.parts))  # an entity split across feed() calls
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line) or None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", file=str(path))
    if path.is_dir():
        raise InputError("expected a file, got a folder", file=str(path))
    if path.stat().st_size == 0:
        raise InputError("file is empty", file=str(path), line=0)


# --------------------------------------------------------------------------------------------- text lines
def text_lines(path: str | Path, *, encoding: str = "utf-8", rejects: RejectSink | None = None,
               progress: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) for each non-blank line, streamed. Bytes that are not valid
    in `encoding` raise InputError with the line (or are rejected when `rejects` skips)."""
    path = Path(path)
    _check_file(path)
    raw, fh = _open_binary(path)
    n_lines = 0
    with file_progress(path, progress) as update:
        try:
            for line_no, b in enumerate(fh, 1):
                n_lines = line_no
                if line_no % 20000 == 0:
                    update(raw.tell())
                try:
                    text = b.decode(encoding)
                except UnicodeDecodeError as e:
                    msg = (f"not valid {encoding.upper()}: byte 0x{b[e.start]:02x} at column {e.start + 1} "
                           f"(re-encode the file as UTF-8)")
                    if rejects is None:
                        raise InputError(msg, file=str(path), line=line_no) from None
                    rejects.reject(msg, file=str(path), line=line_no, field=None, raw=b.decode(encoding, "replace"))
                    continue
                text = text.rstrip("\r\n")
                if text.strip():
                    yield line_no, text
        except (OSError, EOFError) as e:  # corrupt gzip, truncated file
            raise InputError(f"cannot read file: {e}", file=str(path), line=n_lines or None) from None
        finally:
            fh.close()
            raw.close()
    if n_lines == 0:
        raise InputError("file is empty", file=str(path), line=0)


def json_records(path: str | Path, *, rejects: RejectSink, progress: bool = False, python_literals: bool = False
                 ) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(line number, object, raw text) per JSON line. `python_literals`: fall back to `ast.literal_eval`
    (the 2014 Amazon metadata is written as Python dicts with single quotes). A line that parses as
    neither raises InputError naming the line (or is rejected under on_error='skip')."""
    path = Path(path)
    for line_no, text in text_lines(path, rejects=rejects if rejects.on_error == "skip" else None,
                                    progress=progress):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            obj = None
            if python_literals:
                try:
                    obj = ast.literal_eval(text)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    obj = None
            if obj is None:
                rejects.reject(f"broken JSON: {e.msg} at column {e.colno}", file=str(path), line=line_no,
                               field=None, raw=text)
                continue
        if not isinstance(obj, dict):
            rejects.reject(f"expected a JSON object per line, got {type(obj).__name__}", file=str(path),
                           line=line_no, field=None, raw=text)
            continue
        yield line_no, obj, text


# --------------------------------------------------------------------------------------------- CSV
def csv_header(path: Path, delimiter: str = ",") -> list[str]:
    raw, fh = _open_binary(path)
    try:
        first = fh.readline()
    finally:
        fh.close()
        raw.close()
    if not first.strip():
        raise InputError("file is empty (no header line)", file=str(path), line=0)
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError("header is not valid UTF-8", file=str(path), line=1) from None
    import csv

    return next(csv.reader([text], delimiter=delimiter))


def csv_batches(path: str | Path, columns: list[str], *, rejects: RejectSink, progress: bool = False,
                batch_rows: int = 50_000, delimiter: str = ",") -> Iterator[pa.Table]:
    """Arrow tables of `columns` (all strings) + `_file`, `_line`, streamed with pyarrow's CSV reader.
    Checks the header first (missing columns name expected and found). Values that are not valid UTF-8
    and rows with the wrong number of fields become InputErrors with their line (or rejects)."""
    path = Path(path)
    _check_file(path)
    header = csv_header(path, delimiter)
    check_columns(path, header, columns)
    bad_rows: list[tuple[int | None, str]] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append((row.number, row.text))
        return "skip" if rejects.on_error == "skip" else "error"

    stream = pa.input_stream(str(path), compression="gzip" if is_gzip(path) else "detect")
    skipped_lines: set[int] = set()  # physical lines of rows the parser skipped (keeps later numbering exact)

    def flush_bad() -> None:
        while bad_rows:
            num, text = bad_rows.pop(0)
            if num is not None:
                skipped_lines.add(num)
            rejects.reject(f"wrong number of fields (expected {len(header)}: {', '.join(header)})",
                           file=str(path), line=num, field=None, raw=text)

    try:
        # use_threads=False: the parser then knows the physical line number of an invalid row
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=8 << 20, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.binary() for c in header},
                                                 include_columns=columns, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as e:
        flush_bad()
        raise InputError(f"cannot parse CSV: {e}", file=str(path)) from None
    line = 1  # the header
    n_seen = 0

    with file_progress(path, progress) as update:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as e:
                if bad_rows:
                    flush_bad()
                raise InputError(f"cannot parse CSV: {e}", file=str(path)) from None
            flush_bad()
            n = batch.num_rows
            if skipped_lines:
                nums: list[int] = []
                while len(nums) < n:
                    line += 1
                    if line not in skipped_lines:
                        nums.append(line)
                lines = pa.array(nums, pa.int64())
            else:
                lines = pa.array(range(line + 1, line + 1 + n), pa.int64())
                line += n
            n_seen += n
            cols = {}
            keep = None
            for c in columns:
                arr = batch.column(c)
                try:
                    cols[c] = arr.cast(pa.string())
                except pa.ArrowInvalid:
                    cols[c], bad_idx = _decode_column(arr)
                    for i in bad_idx:
                        rejects.reject("not valid UTF-8 (re-encode the file as UTF-8)", file=str(path),
                                       line=lines[i].as_py(), field=c, raw=arr[i].as_py())
                    mask = pa.array([i not in set(bad_idx) for i in range(n)])
                    keep = mask if keep is None else pa.compute.and_(keep, mask)
            table = pa.table({**cols, "_file": pa.array([str(path)] * n, pa.string()), "_line": lines})
            if keep is not None:
                table = table.filter(keep)
            update(_tell(stream))
            for off in range(0, table.num_rows, batch_rows):
                yield table.slice(off, batch_rows)
    if n_seen == 0 and not bad_rows:
        raise InputError("file has a header but no rows", file=str(path), line=1)


def _tell(stream: Any) -> int:
    """Bytes read so far, where the stream can tell (a gzip stream opened by magic bytes cannot)."""
    try:
        return int(stream.tell())
    except (OSError, AttributeError):
        return 0


def _decode_column(arr: pa.Array) -> tuple[pa.Array, list[int]]:
    """Slow path for a batch with invalid UTF-8: decode value by value, return (strings, bad row indexes)."""
    out: list[str | None] = []
    bad: list[int] = []
    for i, v in enumerate(arr.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
            bad.append(i)
    return pa.array(out, pa.string()), bad


# --------------------------------------------------------------------------------------------- Parquet
def parquet_batches(path: str | Path, columns: list[str], *, batch_rows: int = 50_000,
                    progress: bool = False) -> Iterator[pa.Table]:
    """Arrow tables of `columns` (types as stored) + `_file` and `_line` (= 1-based row number)."""
    path = Path(path)
    _check_file(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"not a Parquet file: {e}", file=str(path)) from None
    check_columns(path, pf.schema_arrow.names, columns)
    if pf.metadata.num_rows == 0:
        raise InputError("file has no rows", file=str(path), line=0)
    row = 0
    with file_progress(path, progress) as update:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            n = batch.num_rows
            t = pa.Table.from_batches([batch])
            t = t.append_column("_file", pa.array([str(path)] * n, pa.string()))
            t = t.append_column("_line", pa.array(range(row + 1, row + 1 + n), pa.int64()))
            row += n
            update(int(path.stat().st_size * row / max(pf.metadata.num_rows, 1)))
            yield t


def scalar_str(v: Any) -> str | None:
    """A JSON scalar as the string the normalizer parses; lists/objects are returned as JSON text (they
    then fail type conversion with a clear message)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    return json.dumps(v, ensure_ascii=False, default=str)


__all__ = ["check_columns", "clean_html", "csv_batches", "csv_header", "file_progress", "is_gzip", "json_records",
           "parquet_batches", "scalar_str", "text_lines"]
