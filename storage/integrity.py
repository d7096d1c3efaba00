"""`recot workspace check`: reconcile the catalog with the files on disk and the tables with each other.

The manifest on disk is the source of truth for a dataset version; the catalog row is an index of it. A
crash between "rename the version folder into place" and "insert the catalog row" leaves an orphan folder; a
crash mid-write leaves a `.tmp-*` folder. Both are harmless for readers but worth reporting; only temp
leftovers are removed by `--repair` (an orphan version may be the only copy of expensive work).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from storage.workspace import Workspace


@dataclass(frozen=True)
class Problem:
    kind: str          # missing_version, missing_manifest, row_mismatch, hash_mismatch, orphan_version,
                       # temp_leftover, dangling_reference
    where: str         # dataset ref, path or table
    detail: str
    repairable: bool = False

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.detail}"


def _hash_parts(folder: Path) -> tuple[str, int]:
    h, rows = hashlib.sha256(), 0
    for p in sorted(folder.glob("part-*.parquet")):
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        rows += pq.ParquetFile(p).metadata.num_rows
    return "sha256:" + h.hexdigest(), rows


def _check_versions(ws: Workspace, out: list[Problem]) -> None:
    rows = ws.query("SELECT name, version, path, rows, content_hash FROM dataset_versions ORDER BY name, version")
    known = set()
    for name, version, path, n, chash in rows:
        ref = f"{name}@v{version}"
        folder = ws.root / path
        known.add(folder.resolve())
        if not folder.is_dir():
            out.append(Problem("missing_version", ref, f"catalog lists it but {folder} does not exist"))
            continue
        mf = folder / "manifest.json"
        if not mf.exists():
            out.append(Problem("missing_manifest", ref, f"{mf} is missing"))
        else:
            try:
                m = json.loads(mf.read_text())
            except ValueError as e:
                out.append(Problem("missing_manifest", ref, f"{mf} is not valid JSON: {e}"))
                m = {}
            if m and (int(m.get("rows", -1)) != n or m.get("content_hash") != chash):
                out.append(Problem("row_mismatch", ref, f"manifest says rows={m.get('rows')} "
                                   f"hash={m.get('content_hash')}, catalog says rows={n} hash={chash}"))
        try:
            actual_hash, actual_rows = _hash_parts(folder)
        except Exception as e:  # unreadable part file
            out.append(Problem("hash_mismatch", ref, f"cannot read part files: {e}"))
            continue
        if actual_rows != n:
            out.append(Problem("row_mismatch", ref, f"part files hold {actual_rows} rows, catalog says {n}"))
        if actual_hash != chash:
            out.append(Problem("hash_mismatch", ref, f"part files hash to {actual_hash}, catalog says {chash} "
                                                     "(a file was modified after the version was written)"))
    if ws.datasets_dir.is_dir():
        for d in sorted(ws.datasets_dir.iterdir()):
            if not d.is_dir():
                continue
            for v in sorted(d.iterdir()):
                if v.name.startswith(".tmp-"):
                    out.append(Problem("temp_leftover", str(v.relative_to(ws.root)),
                                       "unfinished write (crashed or killed); safe to delete", repairable=True))
                elif v.is_dir() and v.name.startswith("v") and v.name[1:].isdigit() and v.resolve() not in known:
                    out.append(Problem("orphan_version", str(v.relative_to(ws.root)),
                                       "folder has no catalog row (crash between rename and catalog insert?)"))


def _check_references(ws: Workspace, out: list[Problem]) -> None:
    checks = [
        ("item_sids", "SELECT count(*), any_value(s.item_id) FROM item_sids s ANTI JOIN items i USING (item_id)",
         "item_sids rows reference items that are not in the catalog"),
        ("interactions", "SELECT count(*), any_value(x.item_id) FROM interactions x ANTI JOIN items i USING (item_id)",
         "interactions reference items that are not in the catalog"),
        ("splits", "SELECT count(*), any_value(x.item_id) FROM splits x ANTI JOIN items i USING (item_id)",
         "split rows reference items that are not in the catalog"),
        ("verdicts", """SELECT count(*), any_value(v.dataset || '@v' || v.version) FROM verdicts v
                        ANTI JOIN dataset_versions d ON v.dataset = d.name AND v.version = d.version""",
         "verdicts reference dataset versions that do not exist"),
    ]
    for table, sql, what in checks:
        n, example = ws.query(sql)[0]
        if n:
            out.append(Problem("dangling_reference", table, f"{n} {what} (e.g. {example!r})"))


def _check_temp_files(ws: Workspace, out: list[Problem]) -> None:
    tmp = ws.root / "tmp"
    if tmp.is_dir():
        for p in sorted(tmp.iterdir()):
            if p.name.startswith(".tmp-"):
                out.append(Problem("temp_leftover", str(p.relative_to(ws.root)),
                                   "staging file of an unfinished ingest; safe to delete", repairable=True))


def check_workspace(ws: Workspace) -> list[Problem]:
    """Every problem found (empty list = healthy). Reads only."""
    out: list[Problem] = []
    _check_versions(ws, out)
    _check_references(ws, out)
    _check_temp_files(ws, out)
    return out


def repair_workspace(ws: Workspace, problems: list[Problem] | None = None) -> list[Problem]:
    """Remove temp leftovers (only those) under the writer lock; returns what was removed."""
    removed = []
    with ws.writer("repair"):
        for p in problems if problems is not None else check_workspace(ws):
            if not p.repairable:
                continue
            path = ws.root / p.where
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(p)
    return removed
