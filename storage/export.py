"""Export dataset versions (and the catalog's split) for other tools, and import chat datasets back.

Formats:
- `hf`: a Hugging Face `datasets` folder (`Dataset.save_to_disk`), loadable with `datasets.load_from_disk`.
  The split is exported as a `DatasetDict` with train / validation / test.
- `parquet`: plain Parquet files (`*.parquet` + `manifest.json`), loadable with `duckdb.read_parquet`.
- `openonerec`: Parquet in the OpenOneRec layout — `uuid, source, metadata (JSON string), messages` —
  one row per chat sample (dataset versions with a `messages` column only).

Every export is written into a temp folder next to `--out` and renamed into place, so a crash never leaves a
half-written export; an existing non-empty `--out` is refused rather than overwritten.

What can be exported: a dataset version (`NAME` = latest, `NAME@vN`), or a catalog table with the
`catalog:` prefix — `catalog:split` (the train/valid/test split with item titles), `catalog:items`,
`catalog:interactions`, `catalog:users`. Curated versions export only kept rows unless `include_rejected`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from storage.datasets import DatasetVersion, resolve, write_version
from storage.errors import InputError, NotFound, RecotError
from storage.records import SAMPLE_SCHEMA, stable_id
from storage.workspace import Workspace

T = TypeVar("T")

log = logging.getLogger(__name__)

Format = Literal["hf", "parquet", "openonerec"]
FORMATS = ("hf", "parquet", "openonerec")
CATALOG_TABLES = ("split", "items", "interactions", "users")
HF_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}

OPENONEREC_SCHEMA = pa.schema([
    ("uuid", pa.string()), ("source", pa.string()), ("metadata", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
])


@dataclass
class ExportResult:
    ref: str
    format: str
    out: Path
    rows: int
    files: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ sources
def _catalog_table(ws: Workspace, what: str, domain: str | None) -> dict[str, pa.Table]:
    """Catalog rows to export: {split name: table} for the split, {"data": table} otherwise."""
    where, params = ("WHERE s.domain = ?", [domain]) if domain else ("", [])
    with ws.reader() as con:
        if what == "split":
            t = con.sql(f"""
                SELECT s.user_id, s.item_id, i.title, s.ts, s.position, s.split, s.domain
                FROM splits s LEFT JOIN items i ON s.item_id = i.item_id {where}
                ORDER BY s.domain, s.user_id, s.position""", params=params).to_arrow_table()
            t = t if isinstance(t, pa.Table) else t.read_all()
            if t.num_rows == 0:
                raise NotFound(f"no split in {ws.root}{' for domain ' + repr(domain) if domain else ''}; "
                               "run `recot ingest ...` first")
            import pyarrow.compute as pc

            return {k: t.filter(pc.equal(t.column("split"), k)) for k in ("train", "valid", "test")}
        table = what
        t = con.sql(f"SELECT * FROM {table} {where.replace('s.', '')}", params=params).to_arrow_table()
        t = t if isinstance(t, pa.Table) else t.read_all()
    if t.num_rows == 0:
        raise NotFound(f"catalog table {table} is empty in {ws.root}")
    return {"data": t}


def _dataset_table(dv: DatasetVersion, include_rejected: bool) -> pa.Table:
    con = duckdb.connect()
    try:
        cols = {f["name"] for f in dv.manifest.get("schema", [])}
        where = "" if include_rejected or "keep" not in cols else "WHERE keep"
        t = con.sql(f"SELECT * FROM {dv.sql} {where}").to_arrow_table()
    finally:
        con.close()
    return t if isinstance(t, pa.Table) else t.read_all()


# ------------------------------------------------------------------------------------------------ writers
def _to_openonerec(t: pa.Table, source: str) -> pa.Table:
    """uuid = sample_id, source = '<dataset ref>:<task>', metadata = every other column as JSON."""
    if "messages" not in t.column_names:
        raise RecotError(f"{source}: the OpenOneRec layout needs a 'messages' column; this dataset has "
                         f"{', '.join(t.column_names)}")
    rows = t.to_pylist()
    meta_cols = [c for c in t.column_names if c not in ("messages", "sample_id")]
    out = []
    for i, r in enumerate(rows):
        md = {c: r[c] for c in meta_cols if r[c] is not None}
        for k in ("reference", "extra", "scores"):  # JSON strings inside metadata stay structured
            if isinstance(md.get(k), str):
                try:
                    md[k] = json.loads(md[k])
                except ValueError:
                    pass
        out.append({"uuid": r.get("sample_id") or stable_id(source, i), "source": f"{source}:{r.get('task') or 'data'}",
                    "metadata": json.dumps(md, ensure_ascii=False, default=str),
                    "messages": [{"role": m["role"], "content": m["content"]} for m in (r["messages"] or [])]})
    return pa.Table.from_pylist(out, schema=OPENONEREC_SCHEMA)


def _write_parquet(tables: dict[str, pa.Table], dest: Path) -> list[str]:
    files = []
    for name, t in tables.items():
        p = dest / f"{name}.parquet"
        pq.write_table(t, p, compression="zstd")
        files.append(p.name)
    return files


def _write_hf(tables: dict[str, pa.Table], dest: Path, with_parquet: bool) -> list[str]:
    """`save_to_disk` folder; with_parquet adds the same rows under `parquet/` (ignored by load_from_disk) so
    one export serves both `datasets.load_from_disk(out)` and `duckdb.read_parquet('out/parquet/*.parquet')`."""
    import datasets
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        if set(tables) == {"data"}:
            datasets.Dataset(tables["data"]).save_to_disk(str(dest))
        else:
            datasets.DatasetDict({HF_SPLIT_NAMES.get(k, k): datasets.Dataset(t) for k, t in tables.items()}
                                 ).save_to_disk(str(dest))
    finally:
        if was_enabled:
            enable_progress_bar()
    if with_parquet:
        (dest / "parquet").mkdir()
        _write_parquet(tables, dest / "parquet")
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def export(ws: Workspace, ref: str, fmt: Format, out: str | Path, *, domain: str | None = None,
           include_rejected: bool = False, overwrite: bool = False, with_parquet: bool = True) -> ExportResult:
    """Export a dataset version or a catalog table (`catalog:split`, …) to `out` in `fmt` (atomic)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    manifest: dict[str, Any]
    if out.exists() and (out.is_file() or any(out.iterdir())):
        if not overwrite:
            raise RecotError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    if ref.startswith("catalog:") or ref in CATALOG_TABLES and not _dataset_exists(ws, ref):
        what = ref.split(":", 1)[-1]
        if what == "splits":
            what = "split"
        if what not in CATALOG_TABLES:
            known = ", ".join("catalog:" + c for c in CATALOG_TABLES)
            raise NotFound(f"unknown catalog table {what!r}: use one of {known}")
        tables = _catalog_table(ws, what, domain)
        source, manifest = f"catalog:{what}", {"source": f"catalog:{what}", "domain": domain}
        if fmt == "openonerec":
            raise RecotError("the OpenOneRec layout is for chat samples; export the split as hf or parquet")
    else:
        dv = resolve(ws, ref)
        t = _dataset_table(dv, include_rejected)
        source = dv.ref
        tables = {"data": _to_openonerec(t, dv.ref) if fmt == "openonerec" else t}
        manifest = {"source": dv.ref, "content_hash": dv.content_hash, "parents": dv.parents, "step": dv.step,
                    "kept_only": not include_rejected and "keep" in t.column_names}
    if not any(t.num_rows for t in tables.values()):
        # An empty HF folder cannot be loaded by datasets.load_from_disk, and an empty training set is never
        # what the caller meant: refuse before anything is written.
        hint = ("; every row was rejected — see `recot curate report -d " + source + "`, or pass --include-rejected"
                if manifest.get("kept_only") else "")
        raise RecotError(f"{source} has 0 rows to export; nothing written{hint}")
    rows = sum(t.num_rows for t in tables.values())
    manifest.update({"format": fmt, "rows": rows, "splits": {k: v.num_rows for k, v in tables.items()}})

    def write(tmp: Path) -> list[str]:
        files = _write_hf(tables, tmp, with_parquet) if fmt == "hf" else _write_parquet(tables, tmp)
        if fmt != "hf":  # an HF folder must hold only what load_from_disk expects
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            files.append("manifest.json")
        return files

    files = publish_dir(out, write)
    return ExportResult(ref=source, format=fmt, out=out, rows=rows, files=files,
                        splits={k: v.num_rows for k, v in tables.items()} if len(tables) > 1 else {})


def publish_dir(out: Path, write: Callable[[Path], T]) -> T:
    """Run `write(tmp)` on a fresh temp folder next to `out`, then rename it into place (an existing `out` is
    swapped out and removed): a crash never leaves a half-written `out`, and temp folders of killed exports
    are cleaned first. The caller decides beforehand whether an existing `out` may be replaced."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_leftovers(out.parent)
    tmp = out.parent / f".tmp-export-{os.getpid()}-{uuid.uuid4().hex}"
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_dead_leftovers(parent: Path) -> None:
    """Temp folders a killed export left next to `--out` (`.tmp-export-<pid>-*`, `.tmp-old-<pid>-*`): removed
    when their pid is gone, so a later export cleans up after a killed one. A live export's are kept."""
    for p in parent.glob(".tmp-*-*-*"):
        kind, _, rest = p.name[len(".tmp-"):].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("export", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed %s (left by a killed export)", p)


def _dataset_exists(ws: Workspace, name: str) -> bool:
    return bool(ws.query("SELECT 1 FROM dataset_versions WHERE name = ? LIMIT 1", [name]))


# ------------------------------------------------------------------------------------------------ import
def _load_external(path: Path) -> tuple[pa.Table, str]:
    if not path.exists():
        raise InputError("not found", file=str(path))
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            split = "train" if "train" in ds else next(iter(ds))
            ds = ds[split]
        return ds.data.table, "hf"
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise InputError("no Parquet files and no Hugging Face dataset in this folder", file=str(path))
    try:
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default"), "parquet"
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"cannot read as Parquet: {e}", file=str(files[0])) from None


def import_chat(ws: Workspace, path: str | Path, name: str, *, task: str = "imported") -> DatasetVersion:
    """Import an HF dataset folder or Parquet with a chat `messages` column (e.g. an OpenOneRec file or a
    recot export) as a new version of dataset `name` in the sample layout."""
    path = Path(path)
    t, kind = _load_external(path)
    if "messages" not in t.column_names:
        raise InputError(f"no 'messages' column; found {', '.join(t.column_names)}", file=str(path),
                         field="messages")
    from storage.answer import split_think
    from storage.sid import extract_sids

    rows = t.to_pylist()
    out = []
    for i, r in enumerate(rows, 1):
        msgs = r.get("messages")
        if isinstance(msgs, str):  # OpenOneRec's README layout: a JSON string of {role, content: [typed parts]}
            from storage.export_formats import chat_from_openonerec

            msgs = chat_from_openonerec(msgs, file=str(path), line=i)
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                            for m in msgs):
            raise InputError("messages must be a non-empty list of {role, content}", file=str(path), line=i,
                             field="messages")
        meta = {}
        if isinstance(r.get("metadata"), str):
            try:
                meta = json.loads(r["metadata"])
            except ValueError:
                raise InputError("metadata is not valid JSON", file=str(path), line=i, field="metadata") from None
        src = {**meta, **{k: v for k, v in r.items() if k in SAMPLE_SCHEMA.names}}
        last = msgs[-1]["content"] if msgs[-1]["role"] == "assistant" else None
        parsed = split_think(last)  # the one rule for a think block (storage/answer.py)
        reasoning, answer = parsed.reasoning, parsed.answer
        sid = src.get("sample_id") or r.get("uuid") or stable_id("import", name, msgs)
        row = {k: src.get(k) for k in SAMPLE_SCHEMA.names}
        row.update({
            "sample_id": str(sid), "prompt_id": src.get("prompt_id") or str(sid),
            "task": src.get("task") or task, "messages": [{"role": m["role"], "content": m["content"]} for m in msgs],
            "reasoning": src.get("reasoning") if src.get("reasoning") is not None else reasoning,
            "answer": src.get("answer") if src.get("answer") is not None else answer,
            "answer_sids": src.get("answer_sids") or (extract_sids(answer) if answer else []),
            "teacher": src.get("teacher") or f"import:{kind}",
            "extra": json.dumps({"imported_from": str(path), "source": r.get("source"), **(
                {"metadata": meta} if meta else {})}, default=str, ensure_ascii=False),
            "created_at": None,
        })
        for k in ("reference",):
            if row[k] is not None and not isinstance(row[k], str):
                row[k] = json.dumps(row[k], default=str)
        out.append(row)
    try:
        table = pa.Table.from_pylist(out, schema=SAMPLE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"cannot convert to the sample layout: {e}", file=str(path)) from None
    return write_version(ws, name, table, step="import", config={"path": str(path), "format": kind, "task": task})
