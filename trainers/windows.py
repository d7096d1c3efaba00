"""Sliding-window R3 direct answers: many training targets per user, in exactly the prompt the evaluator renders.

A user with train items t_0 … t_{n-1} (chronological) gives one window per train rank k >= `min_history`
(every `stride`-th): history = t_{k-h} … t_{k-1} (h = `max_history`), target = t_k. Only the TRAIN split is
read, so no valid/test item is ever a history item or a target (the evaluation's test item stays unseen).
The prompt is `trainers.prompts.r3_messages` (synth's r3_recommend student turn, ` /no_think`) and the answer
is the empty think block `<think>\\n\\n</think>\\n\\n` (synth's stored no-think shape) + `answer_format`
(default "SID Title": the SID right after the think block, where `trainers.decoding`'s answer stage starts).

Why not synth's r3_recommend: it makes one prompt per user (its last train item), ~1k rows on MovieLens-100k;
a recommender trained from few weights needs the ~90k windows. The rows are written as an ordinary dataset
version (task r3_recommend, level R3, mode none, teacher "catalog"), so `recot train sft --dataset` and
curation read them like any other.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from storage.datasets import DatasetVersion, write_version
from storage.errors import ConfigError, NotFound
from storage.records import SAMPLE_SCHEMA, stable_id
from storage.workspace import Workspace

NO_THINK_ANSWER = "<think>\n\n</think>\n\n"


def window_rows(ws: Workspace, sid_version: int, *, max_history: int = 10, min_history: int = 3, stride: int = 1,
                history_format: str = "sid", dates: bool = False, answer_format: str = "{sid} {title}",
                users: int | None = None) -> list[dict[str, Any]]:
    """SAMPLE_SCHEMA rows, one per window (see the module docstring)."""
    from synth.tasks.history import check_history_format
    from trainers.prompts import r3_messages

    check_history_format(history_format)
    if max_history < 1 or min_history < 1 or stride < 1:
        raise ConfigError("max_history, min_history and stride must be >= 1")
    rows_db = ws.query("""
        SELECT sp.user_id, list(struct_pack(item_id := sp.item_id, sid := x.sid, title := i.title, ts := sp.ts,
                                            domain := sp.domain) ORDER BY sp.position)
        FROM splits sp JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ?
        LEFT JOIN items i ON i.item_id = sp.item_id
        WHERE sp.split = 'train' GROUP BY sp.user_id
        ORDER BY TRY_CAST(sp.user_id AS BIGINT) NULLS LAST, sp.user_id""", [sid_version])
    if not rows_db:
        raise NotFound(f"no train interactions with SIDs (version {sid_version}) in {ws.root}")
    created = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for user_id, hist in rows_db[:users] if users else rows_db:
        for k in range(min_history, len(hist), stride):
            window, tgt = hist[max(0, k - max_history):k], hist[k]
            prompt = r3_messages([(h["title"], h["sid"], h["ts"]) for h in window], think=False,
                                 history_format=history_format, dates=dates)
            answer = answer_format.format(sid=tgt["sid"], title=tgt["title"] or "").rstrip()
            sid_ = stable_id("r3_window", sid_version, user_id, k, max_history, history_format, dates, answer_format)
            out.append({
                "sample_id": sid_, "prompt_id": sid_, "task": "r3_recommend", "level": "R3", "mode": "none",
                "think": False, "domain": tgt["domain"], "user_id": str(user_id),
                "history_item_ids": [h["item_id"] for h in window], "target_item_ids": [tgt["item_id"]],
                "target_sids": [tgt["sid"]],
                "messages": prompt + [{"role": "assistant", "content": NO_THINK_ANSWER + answer}],
                "reasoning": None, "answer": answer, "answer_sids": [tgt["sid"]], "reference": None,
                "extra": json.dumps({"variant": "window", "train_rank": k, "history_format": history_format,
                                     "dates": dates}),
                "teacher": "catalog", "template_version": "r3_recommend@window", "request_key": None,
                "run_id": None, "sid_version": sid_version, "error": None, "created_at": created,
            })
    return out


def write_r3_windows(ws: Workspace, name: str = "r3_windows", *, sid_version: int | None = None,
                     **options: Any) -> DatasetVersion:
    """Write the windows (options as `window_rows`) as a new version of dataset `name`."""
    from storage.sid_catalog import latest_sid_version

    v = sid_version if sid_version is not None else latest_sid_version(ws)
    if v is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    rows = window_rows(ws, int(v), **options)
    table = pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
    return write_version(ws, name, table, step="r3_windows", config={"sid_version": int(v), **options},
                         schema=SAMPLE_SCHEMA)
