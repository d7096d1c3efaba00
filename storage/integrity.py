"""`recot workspace check`: reconcile the catalog with the files on disk and the tables with each other.

A dataset version exists when its catalog row is committed (storage/datasets.py renames the folder into place
inside that transaction, just before COMMIT). What a killed writer can leave behind is therefore only
unfinished work, never a half-visible version: a `.tmp-*` folder under datasets/, a `v<N>` folder whose row
never committed (`uncommitted_version`), a `tmp/.tmp-*` ingest staging or rejects file. All of these are
removed by the next writer (`write_version`, an ingest) and by `--repair`; readers never see them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from storage.workspace import Workspace


@dataclass(frozen=True)
class Problem:
    kind: str          # missing_version, missing_manifest, row_mismatch, hash_mismatch, uncommitted_version,
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
    for path in unfinished_writes(ws, committed=known):
        where = str(path.relative_to(ws.root))
        if path.name.startswith(".tmp-"):
            what = ("staging file of an unfinished ingest" if path.parent.name == "tmp"
                    else "unfinished write (crashed or killed)")
            out.append(Problem("temp_leftover", where, f"{what}; safe to delete", repairable=True))
        else:
            out.append(Problem("uncommitted_version", where, "folder without a committed catalog row (a write "
                               "killed before its commit); not a version, safe to delete", repairable=True))


def unfinished_writes(ws: Workspace, *, committed: set[Path] | None = None, others_only: bool = False
                      ) -> list[Path]:
    """What killed writers left: `datasets/*/.tmp-*`, `datasets/*/v<N>` folders without a committed catalog row,
    `tmp/.tmp-*`. `others_only`: leave out temp files named with this process' pid (its own writes in flight)."""
    if committed is None:
        committed = {(ws.root / p).resolve() for (p,) in ws.query("SELECT path FROM dataset_versions")}
    found: list[Path] = []
    if ws.datasets_dir.is_dir():
        for d in sorted(ws.datasets_dir.iterdir()):
            if not d.is_dir():
                continue
            for v in sorted(d.iterdir()):
                if v.name.startswith(".tmp-"):
                    found.append(v)
                elif v.is_dir() and v.name.startswith("v") and v.name[1:].isdigit() and v.resolve() not in committed:
                    found.append(v)
    tmp = ws.root / "tmp"
    if tmp.is_dir():
        found += [p for p in sorted(tmp.iterdir()) if p.name.startswith(".tmp-")]
    if others_only:
        mine = f"-{os.getpid()}-"
        found = [p for p in found if mine not in p.name]
    return found


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


def check_workspace(ws: Workspace) -> list[Problem]:
    """Every problem found (empty list = healthy). Reads only."""
    out: list[Problem] = []
    _check_versions(ws, out)
    _check_references(ws, out)
    return out


def repair_workspace(ws: Workspace, problems: list[Problem] | None = None) -> list[Problem]:
    """Remove unfinished writes (temp leftovers, uncommitted version folders; only those) and return them.
    The problems are found again under the writer lock (`problems` is ignored): a check made without the lock
    may have seen a writer's folder just before its commit."""
    removed = []
    with ws.writer("repair"):
        for p in check_workspace(ws):
            if not p.repairable:
                continue
            path = ws.root / p.where
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(p)
    return removed
