"""Exports in the layouts of the projects users hand recot's data to (beside `storage.export`'s hf/parquet).

- `openonerec`: OpenOneRec's unified Parquet layout (its data/README.md, read by
  `pretrain/onerec_llm/data/qwen3_dataset.py`): `uuid` (a UUID — derived from the sample id, so stable),
  `source`, `metadata` (a JSON string), `messages` (a JSON string: a list of `{role, content}` where
  `content` is a list of typed parts `{"type": "text", "text": …}`).
- `minionerec`: MiniOneRec's layout (`data.py` / `SidDataset`, `SidSFTDataset`): CSV splits
  `train/<name>.csv`, `valid/<name>.csv`, `test/<name>.csv` with `user_id, history_item_id, history_item_title,
  history_item_sid, item_id, item_title, item_sid` (the history columns as Python list literals, which its
  reader `eval`s), one row per sliding window of up to `max_history` items (train: every train target; valid:
  the valid item after the train history; test: the test item after train + valid), plus
  `index/<name>.index.json` (item id → code tokens `["<a_12>", "<b_3>", "<c_7>"]`) and
  `index/<name>.item.json` (item id → `{title, description}`). SIDs are written as MiniOneRec's code tokens.
- `trl`: TRL-ready Parquet: conversational `prompt` (messages before the answer), `completion` ([assistant
  message]) and `messages` (the whole chat), plus `sample_id`, `task`, `domain`, `think` — loadable with
  `datasets.load_dataset("parquet", …)` and usable by `SFTTrainer` as prompt/completion or as `messages`.

Every export is written into a temp folder next to `out` and renamed into place; `domains` selects rows.
"""
from __future__ import annotations

import csv
import json
import uuid as uuidlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import publish_dir
from storage.datasets import DatasetVersion, resolve
from storage.errors import InputError, NotFound, RecotError
from storage.export import ExportResult, dataset_table
from storage.selection import domain_condition, version_columns
from storage.workspace import Workspace

FORMATS = ("openonerec", "minionerec", "trl")
UUID_NAMESPACE = uuidlib.UUID("6f1d3c52-3a56-4c1e-9f7e-2b1c0d4e5a77")  # recot's namespace for uuid5 ids
MINIONEREC_COLUMNS = ["user_id", "history_item_id", "history_item_title", "history_item_sid", "item_id",
                      "item_title", "item_sid"]
MINIONEREC_LETTERS = "abcdefghij"


def sample_uuid(sample_id: str) -> str:
    """A stable UUID for a sample (uuid5 of its id): OpenOneRec rows are keyed by UUIDs."""
    return str(uuidlib.uuid5(UUID_NAMESPACE, sample_id))


def _atomic_dir(out: Path, overwrite: bool, write: Callable[[Path], ExportResult]) -> ExportResult:
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RecotError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    res = publish_dir(out, write)
    res.out = out
    return res


def _chat_rows(dv: DatasetVersion, *, domains: Sequence[str] | None, include_rejected: bool) -> list[dict[str, Any]]:
    cols = version_columns(dv)
    if "messages" not in cols:
        raise RecotError(f"{dv.ref}: this layout is for chat samples (a `messages` column); it has "
                         f"{', '.join(sorted(cols))}")
    rows: list[dict[str, Any]] = dataset_table(dv, include_rejected, domains, without_errors=True).to_pylist()
    if not rows:
        raise NotFound(f"{dv.ref} has no rows to export (domains={list(domains) if domains else 'all'})")
    return rows


# ------------------------------------------------------------------------------------------------ openonerec
OPENONEREC_SCHEMA = pa.schema([("uuid", pa.string()), ("source", pa.string()), ("metadata", pa.string()),
                               ("messages", pa.string())])


def openonerec_messages(messages: Sequence[dict[str, Any]]) -> str:
    """recot chat → OpenOneRec's `messages` JSON string (content as a list of typed text parts)."""
    return json.dumps([{"role": m["role"], "content": [{"type": "text", "text": m.get("content") or ""}]}
                       for m in messages], ensure_ascii=False)


def chat_from_openonerec(messages: str, *, file: str = "", line: int | None = None) -> list[dict[str, str]]:
    """OpenOneRec's `messages` JSON string → recot chat (content parts' text joined, as its loader does)."""
    try:
        msgs = json.loads(messages)
    except ValueError:
        raise InputError("messages is not valid JSON", file=file, line=line, field="messages") from None
    out = []
    for m in msgs if isinstance(msgs, list) else []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, dict):
            c = [c]
        if isinstance(c, list):
            c = "".join(p.get("text", "") if isinstance(p, dict) and p.get("type") == "text" else
                        p if isinstance(p, str) else "" for p in c)
        if not isinstance(c, str) or not isinstance(m, dict) or "role" not in m:
            raise InputError("each message needs a role and text content", file=file, line=line, field="messages")
        out.append({"role": str(m["role"]), "content": c})
    return out


def export_openonerec(ws: Workspace, ref: str, out: Path, *, domains: Sequence[str] | None = None,
                      include_rejected: bool = False, overwrite: bool = False) -> ExportResult:
    dv = resolve(ws, ref)
    rows = _chat_rows(dv, domains=domains, include_rejected=include_rejected)
    out_rows = []
    for r in rows:
        meta = {k: v for k, v in r.items() if k != "messages" and v is not None}
        for k in ("reference", "extra", "scores"):  # JSON strings inside metadata stay structured
            if isinstance(meta.get(k), str):
                try:
                    meta[k] = json.loads(meta[k])
                except ValueError:
                    pass
        out_rows.append({"uuid": sample_uuid(str(r["sample_id"])),
                         "source": f"recot:{dv.ref}:{r.get('task') or 'data'}",
                         "metadata": json.dumps(meta, ensure_ascii=False, default=str),
                         "messages": openonerec_messages(r["messages"] or [])})

    def write(tmp: Path) -> ExportResult:
        pq.write_table(pa.Table.from_pylist(out_rows, schema=OPENONEREC_SCHEMA), tmp / "data.parquet")
        return ExportResult(dv.ref, "openonerec", tmp, len(out_rows), ["data.parquet"])

    return _atomic_dir(out, overwrite, write)


# ------------------------------------------------------------------------------------------------ trl
TRL_SCHEMA_MSG = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
TRL_SCHEMA = pa.schema([("prompt", TRL_SCHEMA_MSG), ("completion", TRL_SCHEMA_MSG), ("messages", TRL_SCHEMA_MSG),
                        ("sample_id", pa.string()), ("task", pa.string()), ("domain", pa.string()),
                        ("think", pa.bool_())])


def export_trl(ws: Workspace, ref: str, out: Path, *, domains: Sequence[str] | None = None,
               include_rejected: bool = False, overwrite: bool = False) -> ExportResult:
    dv = resolve(ws, ref)
    out_rows = []
    for r in _chat_rows(dv, domains=domains, include_rejected=include_rejected):
        msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in r["messages"] or []]
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise InputError("the chat does not end with an assistant answer after a prompt",
                             file=f"{dv.ref} sample {r['sample_id']}", field="messages")
        out_rows.append({"prompt": msgs[:-1], "completion": msgs[-1:], "messages": msgs,
                         "sample_id": r["sample_id"], "task": r.get("task"), "domain": r.get("domain") or "default",
                         "think": bool(r.get("think"))})

    def write(tmp: Path) -> ExportResult:
        pq.write_table(pa.Table.from_pylist(out_rows, schema=TRL_SCHEMA), tmp / "train.parquet")
        return ExportResult(dv.ref, "trl", tmp, len(out_rows), ["train.parquet"])

    return _atomic_dir(out, overwrite, write)


# ------------------------------------------------------------------------------------------------ minionerec
def minionerec_tokens(codes: Sequence[int]) -> list[str]:
    """(12, 3, 7) → ['<a_12>', '<b_3>', '<c_7>'] (MiniOneRec's code tokens)."""
    return [f"<{MINIONEREC_LETTERS[i]}_{int(c)}>" for i, c in enumerate(codes)]


def export_minionerec(ws: Workspace, out: Path, *, name: str = "recot", sid_version: int | None = None,
                      domains: Sequence[str] | None = None, max_history: int = 10,
                      overwrite: bool = False) -> ExportResult:
    """The catalog's split + SIDs in MiniOneRec's layout (see the module docstring)."""
    from storage.sid_catalog import latest_sid_version

    v = sid_version if sid_version is not None else latest_sid_version(ws)
    if v is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    where = ""
    params: list[Any] = [v]
    if domains:
        cond, ps = domain_condition(domains, "sp.domain")
        where, params = f"AND {cond}", params + ps
    users = ws.query(f"""
        SELECT sp.user_id, list(struct_pack(item_id := sp.item_id, split := sp.split) ORDER BY sp.position)
        FROM splits sp JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ? {where}
        GROUP BY sp.user_id ORDER BY sp.user_id""", params)
    if not users:
        raise NotFound(f"no split interactions with SIDs (version {v}) in {ws.root}")
    items = {str(i): (codes, title or "", desc or "") for i, codes, title, desc in ws.query(
        "SELECT x.item_id, x.codes, i.title, i.description FROM item_sids x LEFT JOIN items i USING (item_id) "
        "WHERE x.sid_version = ?", [v])}
    sid = {i: "".join(minionerec_tokens(c)) for i, (c, _, _) in items.items()}
    splits: dict[str, list[list[Any]]] = {"train": [], "valid": [], "test": []}
    used: set[str] = set()
    for user_id, hist in users:
        seq = [(str(h["item_id"]), h["split"]) for h in hist]
        for k, (item, split) in enumerate(seq):
            if k == 0 or split not in splits:
                continue
            window = [i for i, _ in seq[max(0, k - max_history):k]]
            splits[split].append([str(user_id), repr(window), repr([items[i][1] for i in window]),
                                  repr([sid[i] for i in window]), item, items[item][1], sid[item]])
            used.update(window + [item])

    def write(tmp: Path) -> ExportResult:
        files = []
        for split, rows in splits.items():
            (tmp / split).mkdir()
            with open(tmp / split / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(MINIONEREC_COLUMNS)
                w.writerows(rows)
            files.append(f"{split}/{name}.csv")
        (tmp / "index").mkdir()
        index = {i: minionerec_tokens(items[i][0]) for i in sorted(used)}
        feats = {i: {"title": items[i][1], "description": items[i][2]} for i in sorted(used)}
        (tmp / "index" / f"{name}.index.json").write_text(json.dumps(index, ensure_ascii=False))
        (tmp / "index" / f"{name}.item.json").write_text(json.dumps(feats, ensure_ascii=False))
        files += [f"index/{name}.index.json", f"index/{name}.item.json"]
        return ExportResult(f"catalog:sid_version={v}", "minionerec", tmp, sum(len(r) for r in splits.values()),
                            files, {k: len(r) for k, r in splits.items()})

    return _atomic_dir(out, overwrite, write)
