"""Export dataset versions (and the catalog's split) for other tools, and import chat datasets back.

Formats:
- `hf`: a Hugging Face `datasets` folder (`Dataset.save_to_disk`), loadable with `datasets.load_from_disk`.
  The split is exported as a `DatasetDict` with train / validation / test.
- `parquet`: plain Parquet files (`*.parquet` + `manifest.json`), loadable with `duckdb.read_parquet`.
- `openonerec`, `minionerec`, `trl`: the layouts of the projects users hand recot's data to, written by
  `storage.export_formats` (`export` dispatches to it: one entry point, one writer per format).

Every export is written into a temp folder next to `--out` and renamed into place, so a crash never leaves a
half-written export; an existing non-empty `--out` is refused rather than overwritten.

What can be exported: a dataset version (`NAME` = latest, `NAME@vN`), or a catalog table with the
`catalog:` prefix — `catalog:split` (the train/valid/test split with item titles), `catalog:items`,
`catalog:interactions`, `catalog:users`. Curated versions export only kept rows unless `include_rejected`;
`domains` selects rows by domain (`storage.selection`, as every trainer does).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import publish_dir
from storage.datasets import DatasetVersion, resolve, write_version
from storage.errors import InputError, NotFound, RecotError
from storage.records import SAMPLE_SCHEMA, stable_id
from storage.selection import domain_condition, row_condition
from storage.workspace import Workspace

log = logging.getLogger(__name__)

Format = Literal["hf", "parquet", "openonerec", "minionerec", "trl"]
FORMATS = ("hf", "parquet", "openonerec", "minionerec", "trl")
LAYOUTS = ("openonerec", "minionerec", "trl")   # storage.export_formats
CATALOG_TABLES = ("split", "items", "interactions", "users")
HF_SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}

@dataclass
class ExportResult:
    ref: str
    format: str
    out: Path
    rows: int
    files: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ sources
def _catalog_table(ws: Workspace, what: str, domains: Sequence[str] | None) -> dict[str, pa.Table]:
    """Catalog rows to export: {split name: table} for the split, {"data": table} otherwise."""
    where, params = "", list[Any]()
    if domains:
        cond, params = domain_condition(domains, "s.domain")
        where = f"WHERE {cond}"
    with ws.reader() as con:
        if what == "split":
            t = con.sql(f"""
                SELECT s.user_id, s.item_id, i.title, s.ts, s.position, s.split, s.domain
                FROM splits s LEFT JOIN items i ON s.item_id = i.item_id {where}
                ORDER BY s.domain, s.user_id, s.position""", params=params).to_arrow_table()
            t = t if isinstance(t, pa.Table) else t.read_all()
            if t.num_rows == 0:
                raise NotFound(f"no split in {ws.root}{f' for domains {list(domains)}' if domains else ''}; "
                               "run `recot ingest ...` first")
            import pyarrow.compute as pc

            return {k: t.filter(pc.equal(t.column("split"), k)) for k in ("train", "valid", "test")}
        table = what
        t = con.sql(f"SELECT * FROM {table} s {where}", params=params).to_arrow_table()
        t = t if isinstance(t, pa.Table) else t.read_all()
    if t.num_rows == 0:
        raise NotFound(f"catalog table {table} is empty in {ws.root}")
    return {"data": t}


def dataset_table(dv: DatasetVersion, include_rejected: bool, domains: Sequence[str] | None, *,
                  without_errors: bool = False) -> pa.Table:
    """The version's rows as `storage.selection` selects them: kept rows only unless `include_rejected`, of
    `domains` when given; error rows included unless `without_errors` (hf/parquet export a version as it is,
    the chat layouts export training data)."""
    where, params = row_condition(dv, kept_only=not include_rejected, without_errors=without_errors,
                                  domains=domains)
    con = duckdb.connect()
    try:
        t = con.sql(f"SELECT * FROM {dv.sql} WHERE {where}", params=params).to_arrow_table()
    finally:
        con.close()
    return t if isinstance(t, pa.Table) else t.read_all()


# ------------------------------------------------------------------------------------------------ writers
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


def export(ws: Workspace, ref: str, fmt: Format, out: str | Path, *, domains: Sequence[str] | None = None,
           include_rejected: bool = False, overwrite: bool = False, with_parquet: bool = True,
           sid_version: int | None = None) -> ExportResult:
    """Export a dataset version or a catalog table (`catalog:split`, …) to `out` in `fmt` (atomic). The
    openonerec / trl layouts take a chat dataset version, minionerec the catalog's split and SIDs
    (`sid_version`, default latest; `ref` is then `catalog:split`)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    manifest: dict[str, Any]
    if out.exists() and (out.is_file() or any(out.iterdir())):
        if not overwrite:
            raise RecotError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    is_catalog = ref.startswith("catalog:") or ref in CATALOG_TABLES and not _dataset_exists(ws, ref)
    if fmt in LAYOUTS:
        return _export_layout(ws, ref, fmt, out, is_catalog=is_catalog, domains=domains,
                              include_rejected=include_rejected, overwrite=overwrite, sid_version=sid_version)
    if is_catalog:
        what = ref.split(":", 1)[-1]
        if what == "splits":
            what = "split"
        if what not in CATALOG_TABLES:
            known = ", ".join("catalog:" + c for c in CATALOG_TABLES)
            raise NotFound(f"unknown catalog table {what!r}: use one of {known}")
        tables = _catalog_table(ws, what, domains)
        source = f"catalog:{what}"
        manifest = {"source": source, "domains": list(domains) if domains else None}
    else:
        dv = resolve(ws, ref)
        t = dataset_table(dv, include_rejected, domains)
        source = dv.ref
        tables = {"data": t}
        manifest = {"source": dv.ref, "content_hash": dv.content_hash, "parents": dv.parents, "step": dv.step,
                    "kept_only": not include_rejected and "keep" in t.column_names,
                    "domains": list(domains) if domains else None}
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


def _export_layout(ws: Workspace, ref: str, fmt: str, out: Path, *, is_catalog: bool,
                   domains: Sequence[str] | None, include_rejected: bool, overwrite: bool,
                   sid_version: int | None) -> ExportResult:
    """openonerec / trl (a chat dataset version) and minionerec (the catalog split) by `storage.export_formats`."""
    from storage import export_formats as ef

    if fmt == "minionerec":
        if not is_catalog or ref.split(":", 1)[-1] not in ("split", "splits"):
            raise RecotError(f"the MiniOneRec layout is built from the catalog's split and SIDs, not from {ref}; "
                             "export catalog:split --format minionerec")
        return ef.export_minionerec(ws, out, sid_version=sid_version, domains=domains, overwrite=overwrite)
    if is_catalog:
        raise RecotError(f"the {'OpenOneRec' if fmt == 'openonerec' else 'TRL'} layout is for chat samples; export "
                         f"{ref} as hf or parquet, or a dataset version as {fmt}")
    fn = ef.export_openonerec if fmt == "openonerec" else ef.export_trl
    return fn(ws, ref, out, domains=domains, include_rejected=include_rejected, overwrite=overwrite)


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
