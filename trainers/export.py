"""Curated dataset versions → Hugging Face `datasets` in the shapes TRL expects.

- SFT: conversational `prompt` (messages before the answer) + `completion` (the assistant answer), plus the
  full `messages`; thinking and non-thinking rows (the `think` column) mixed at a chosen ratio.
- GRPO / distillation: `prompt` only (no answer) + reference columns (`target_sid`, `target_sids`, `think`,
  `task`) that TRL forwards to reward functions as keyword arguments.
- Pretraining: a `text` column, from an alignment dataset version or straight from the catalog.

Selection and mixing run in DuckDB over the version's Parquet files (SQL-first); Python only shapes rows.
Hint-mode prompts carry the held-out target, so they never become RL/distillation prompts.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from storage.datasets import DatasetVersion, resolve
from storage.errors import InputError, NotFound
from storage.selection import row_condition, version_columns
from storage.workspace import Workspace

log = logging.getLogger(__name__)


def _where(dv: DatasetVersion, *, kept_only: bool, levels: Sequence[str] | None, tasks: Sequence[str] | None,
           exclude_hint: bool = False, domains: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """Kept / error-free / domain rows as every consumer selects them (`storage.selection`), plus the trainers'
    own level, task and hint-mode conditions."""
    where, params = row_condition(dv, kept_only=kept_only, domains=domains)
    conds = [where]
    if levels:
        conds.append(f"level IN ({', '.join('?' * len(levels))})")
        params += list(levels)
    if tasks:
        conds.append(f"task IN ({', '.join('?' * len(tasks))})")
        params += list(tasks)
    if exclude_hint and "mode" in version_columns(dv):
        conds.append("coalesce(mode, '') <> 'hint'")
    return " AND ".join(conds), params


def load_samples(ws: Workspace, ref: str | DatasetVersion, *, kept_only: bool = True,
                 levels: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
                 exclude_hint: bool = False, think_ratio: float | None = None, max_rows: int | None = None,
                 seed: int = 0, domains: Sequence[str] | None = None) -> tuple[DatasetVersion, pa.Table]:
    """Rows of a (curated) version: kept, parsed, optionally filtered by level/task, and mixed so that a
    share `think_ratio` of them are thinking rows (as many rows as that ratio allows; None = all rows).
    Order is a seeded hash shuffle, so the same call returns the same rows."""
    dv = ref if isinstance(ref, DatasetVersion) else resolve(ws, ref)
    if dv.rows == 0:
        raise InputError("the dataset version is empty", file=dv.ref)
    where, params = _where(dv, kept_only=kept_only, levels=levels, tasks=tasks, exclude_hint=exclude_hint,
                           domains=domains)
    order = f"hash(sample_id || '{int(seed)}')"
    src = f"{dv.sql}"
    con = duckdb.connect()
    try:
        if think_ratio is not None:
            if not 0.0 <= think_ratio <= 1.0:
                raise InputError(f"think_ratio must be within [0, 1], got {think_ratio}", field="think_ratio")
            n_t, n_n = con.execute(
                f"SELECT count(*) FILTER (WHERE think), count(*) FILTER (WHERE NOT coalesce(think, FALSE)) "
                f"FROM {src} WHERE {where}", params).fetchall()[0]
            if (n_t == 0) != (n_n == 0) and 0.0 < think_ratio < 1.0:
                # e.g. an alignment corpus (no thinking rows): a mix cannot be made; use what there is
                log.warning("%s has only %s rows; think_ratio=%s ignored", dv.ref,
                            "thinking" if n_t else "non-thinking", think_ratio)
                think_ratio = None
        if think_ratio is None:
            sql = f"SELECT * FROM {src} WHERE {where} ORDER BY {order}"
            if max_rows:
                sql += f" LIMIT {int(max_rows)}"
            table = con.sql(sql, params=params).to_arrow_table()
        else:
            total = min(n_t / think_ratio if think_ratio > 0 else float("inf"),
                        n_n / (1 - think_ratio) if think_ratio < 1 else float("inf"))
            if max_rows:
                total = min(total, max_rows)
            want_t, want_n = int(round(think_ratio * total)), int(round((1 - think_ratio) * total))
            sql = (f"(SELECT * FROM {src} WHERE {where} AND think ORDER BY {order} LIMIT {want_t}) UNION ALL "
                   f"(SELECT * FROM {src} WHERE {where} AND NOT coalesce(think, FALSE) ORDER BY {order} "
                   f"LIMIT {want_n})")
            table = con.sql(f"SELECT * FROM ({sql}) ORDER BY {order}", params=params + params).to_arrow_table()
    finally:
        con.close()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    if table.num_rows == 0:
        raise InputError(f"no usable rows (kept_only={kept_only}, levels={levels}, tasks={tasks}, "
                         f"domains={domains}, "
                         f"exclude_hint={exclude_hint}, think_ratio={think_ratio})", file=dv.ref)
    return dv, table


def _split_messages(messages: list[dict], where: str) -> tuple[list[dict], dict]:
    msgs = [{"role": m["role"], "content": m["content"] or ""} for m in messages or []]
    if not msgs or msgs[-1]["role"] != "assistant":
        raise InputError("the chat does not end with an assistant answer", file=where, field="messages")
    if len(msgs) < 2:
        raise InputError("the chat has no prompt before the answer", file=where, field="messages")
    return msgs[:-1], msgs[-1]


def to_sft_dataset(ws: Workspace, ref: str | DatasetVersion, *, think_ratio: float | None = None,
                   levels: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
                   max_rows: int | None = None, seed: int = 0, domains: Sequence[str] | None = None):
    """SFT rows: `prompt` (chat messages), `completion` ([assistant message]), `messages`, and the sample's
    `sample_id`, `task`, `level`, `think`, `domain`. Returns (dataset version, datasets.Dataset)."""
    from datasets import Dataset

    dv, table = load_samples(ws, ref, kept_only=True, levels=levels, tasks=tasks, think_ratio=think_ratio,
                             max_rows=max_rows, seed=seed, domains=domains)
    rows = []
    for r in _with_domain(table).select(["sample_id", "task", "level", "think", "messages", "domain"]).to_pylist():
        prompt, answer = _split_messages(r["messages"], f"{dv.ref} sample {r['sample_id']}")
        rows.append({"prompt": prompt, "completion": [answer], "messages": prompt + [answer],
                     "sample_id": r["sample_id"], "task": r["task"], "level": r["level"],
                     "think": bool(r["think"]), "domain": r["domain"] or "default"})
    return dv, Dataset.from_list(rows)


def to_grpo_dataset(ws: Workspace, ref: str | DatasetVersion, *, levels: Sequence[str] | None = None,
                    tasks: Sequence[str] | None = None, kept_only: bool = False, max_rows: int | None = None,
                    seed: int = 0, domains: Sequence[str] | None = None):
    """One row per prompt (samples sharing `prompt_id` collapse): `prompt` without the answer, plus
    `target_sid` (first reference SID), `target_sids`, `think`, `task`, `level`, `prompt_id`. Only rows with
    reference SIDs, never hint-mode prompts (they contain the answer). `kept_only=False` by default because
    a prompt is a good RL prompt even when the teacher's answer to it was rejected."""
    from datasets import Dataset

    dv, table = load_samples(ws, ref, kept_only=kept_only, levels=levels, tasks=tasks, exclude_hint=True,
                             seed=seed, domains=domains)
    rows, seen = [], set()
    for r in _with_domain(table).select(["sample_id", "prompt_id", "task", "level", "think", "messages",
                                         "target_sids", "domain"]).to_pylist():
        key = r["prompt_id"] or r["sample_id"]
        if key in seen or not r["target_sids"]:
            continue
        seen.add(key)
        prompt, _ = _split_messages(r["messages"], f"{dv.ref} sample {r['sample_id']}")
        rows.append({"prompt": prompt, "target_sid": r["target_sids"][0], "target_sids": list(r["target_sids"]),
                     "think": bool(r["think"]), "task": r["task"], "level": r["level"], "prompt_id": key,
                     "domain": r["domain"] or "default"})
        if max_rows and len(rows) >= max_rows:
            break
    if not rows:
        raise InputError("no non-hint prompts with reference SIDs (target_sids) for RL; synthesize blind-mode "
                         "R3 samples first", file=dv.ref, field="target_sids")
    return dv, Dataset.from_list(rows)


def _with_domain(table: pa.Table) -> pa.Table:
    """The table with a `domain` column (versions written before domains existed: 'default')."""
    if "domain" in table.column_names:
        return table
    return table.append_column("domain", pa.array(["default"] * table.num_rows, pa.string()))


def chat_text(messages: list[dict]) -> str:
    """A chat as plain text for causal-LM pretraining (system prompts dropped: they are boilerplate)."""
    return "\n".join(m["content"] for m in messages if m.get("role") != "system" and m.get("content"))


def to_pretrain_dataset(ws: Workspace, ref: str | DatasetVersion | None = None, *, sid_version: int | None = None,
                        max_rows: int | None = None, seed: int = 0, domains: Sequence[str] | None = None):
    """A `text` dataset: the rows of an alignment version (level 'alignment' when present, else every row),
    or — with no dataset — the catalog itself (see `catalog_corpus`). Returns (version or None, Dataset)."""
    from datasets import Dataset

    if ref is None:
        if domains:
            raise InputError(f"domains {list(domains)}: the catalog corpus has no domain selection; pass an "
                             "alignment dataset (`dataset:`) to pretrain on some domains only")
        return None, Dataset.from_list([{"text": t} for t in catalog_corpus(ws, sid_version, max_rows=max_rows)])
    dv = ref if isinstance(ref, DatasetVersion) else resolve(ws, ref)
    levels = ["alignment"] if _has_level(dv, "alignment") else None
    dv, table = load_samples(ws, dv, kept_only=True, levels=levels, max_rows=max_rows, seed=seed, domains=domains)
    texts = [chat_text(m) for m in table.column("messages").to_pylist()]
    return dv, Dataset.from_list([{"text": t} for t in texts if t])


def _has_level(dv: DatasetVersion, level: str) -> bool:
    con = duckdb.connect()
    try:
        return bool(con.execute(f"SELECT count(*) FROM {dv.sql} WHERE level = ?",
                                [level]).fetchall()[0][0])
    finally:
        con.close()


def catalog_corpus(ws: Workspace, sid_version: int | None = None, *, max_rows: int | None = None) -> list[str]:
    """Deterministic alignment text straight from the catalog, for pretraining without a synth run:
    item lines (SID ↔ title, categories) and user lines (the chronological train-split history as SIDs).
    Only train-split interactions are used, so nothing of valid/test leaks into the model."""
    from storage.sid_catalog import latest_sid_version

    v = sid_version if sid_version is not None else latest_sid_version(ws)
    if v is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    items = ws.query(
        "SELECT s.sid, i.title, array_to_string(coalesce(i.categories, []), ', ') FROM item_sids s "
        "JOIN items i USING (item_id) WHERE s.sid_version = ? ORDER BY s.item_id", [v])
    users = ws.query(
        "SELECT sp.user_id, string_agg(s.sid, ' ' ORDER BY sp.position) FROM splits sp "
        "JOIN item_sids s ON s.item_id = sp.item_id AND s.sid_version = ? WHERE sp.split = 'train' "
        "GROUP BY sp.user_id ORDER BY sp.user_id", [v])
    texts = []
    for sid, title, cats in items:
        texts.append(f"{sid} is the item \"{title}\"" + (f" (categories: {cats})." if cats else "."))
        texts.append(f"The item \"{title}\" has the semantic ID {sid}.")
    for _, hist in users:
        texts.append(f"A user interacted with, in order: {hist}")
    if max_rows:
        texts = texts[:max_rows]
    if not texts:
        raise NotFound(f"SID version {v} has no items in {ws.root}")
    return texts


def dataset_summary(ds) -> dict[str, Any]:
    """Small, JSON-able description of an exported dataset for run stats."""
    out: dict[str, Any] = {"rows": len(ds), "columns": ds.column_names}
    if "think" in ds.column_names:
        out["think_rows"] = int(sum(ds["think"]))
    if "task" in ds.column_names:
        counts: dict[str, int] = {}
        for t in ds["task"]:
            counts[t] = counts.get(t, 0) + 1
        out["tasks"] = counts
    if "domain" in ds.column_names:
        doms: dict[str, int] = {}
        for d in ds["domain"]:
            doms[d] = doms.get(d, 0) + 1
        out["domains"] = doms
    return json.loads(json.dumps(out, default=str))
