"""Pull annotators' responses from Argilla into the workspace's `reviews` table.

One row per (sample_id, annotator): status (submitted | discarded; drafts are work in progress and stay
on the server), the rating / correct / issue labels / corrected answer, all values as JSON, the
response's `updated_at` on the server and when we pulled it. Incremental: a row is written only when it
is new or its server `updated_at` changed since the last pull, so re-running `pull` is cheap and leaves
unchanged rows (and their `pulled_at`) alone. The write is one DuckDB transaction: a pull that fails
half-way (server gone) changes nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from curation.review.client import ArgillaClient, DatasetGone
from curation.review.push import ARGILLA_WORKSPACE, pushed_datasets
from curation.review.stack import Connection, connect, ping
from storage.errors import NotFound
from storage.runs import finish_run, start_run
from storage.workspace import Workspace

log = logging.getLogger(__name__)

PULLED_STATUSES = ("submitted", "discarded")


@dataclass
class PullResult:
    datasets: list[str] = field(default_factory=list)
    seen: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_drafts: int = 0
    run_id: str | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _ts(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00")).replace(tzinfo=None)


def _value(values: dict, name: str):
    v = (values or {}).get(name)
    return v.get("value") if isinstance(v, dict) else None


def response_rows(records: list[dict], usernames: dict[str, str], dataset_ref: str) -> tuple[list[dict], int]:
    """Flatten records' responses into `reviews` rows (submitted and discarded only)."""
    rows, drafts = [], 0
    for rec in records:
        for resp in rec.get("responses") or []:
            if resp["status"] not in PULLED_STATUSES:
                drafts += 1
                continue
            values = resp.get("values") or {}
            rating = _value(values, "rating")
            labels = _value(values, "issues")
            rows.append({
                "sample_id": rec["external_id"], "dataset": dataset_ref,
                "annotator": usernames.get(resp["user_id"], resp["user_id"]), "status": resp["status"],
                "rating": int(rating) if rating is not None else None, "correct": _value(values, "correct"),
                "labels": list(labels) if labels else None, "corrected_answer": _value(values, "corrected_answer"),
                "values": json.dumps({k: _value(values, k) for k in values}, sort_keys=True),
                "updated_at": _ts(resp.get("updated_at") or resp.get("inserted_at")),
            })
    return rows, drafts


def pull(ws: Workspace, dataset_ref: str | None = None, *, conn: Connection | None = None) -> PullResult:
    """Pull responses of every dataset this workspace pushed (or only of `dataset_ref`)."""
    targets = pushed_datasets(ws)
    if dataset_ref:
        from storage.datasets import resolve

        ref = resolve(ws, dataset_ref).ref
        targets = [t for t in targets if t["dataset"] == ref]
        if not targets:
            raise NotFound(f"{ref} was never pushed for review from this workspace; run `recot review push "
                           f"--dataset {ref}` first")
    if not targets:
        raise NotFound("nothing pushed for review from this workspace yet; run `recot review push` first")
    conn = conn or connect(ws, check=False)
    ping(conn)  # fail before touching the catalog when the server is down or the key is wrong
    result = PullResult()
    run_id = start_run(ws, "review_pull", {"dataset": dataset_ref, "url": conn.url})
    result.run_id = run_id
    try:
        rows: list[dict] = []
        with ArgillaClient(conn) as client:
            usernames = {u["id"]: u["username"] for u in client.users()}
            w = client.ensure_workspace(ARGILLA_WORKSPACE)
            for t in targets:
                ds = client.find_dataset(w["id"], t["argilla_dataset"])
                if ds is None:
                    raise DatasetGone(
                        f"Argilla dataset {t['argilla_dataset']!r} (pushed from {t['dataset']}) no longer exists on "
                        f"{conn.url}; responses already pulled stay in the workspace. Push it again with "
                        f"`recot review push --dataset {t['dataset']}` to recreate it")
                records = list(client.iter_records(ds["id"], include=("responses",)))
                r, drafts = response_rows(records, usernames, t["dataset"])
                rows.extend(r)
                result.skipped_drafts += drafts
                result.datasets.append(t["argilla_dataset"])
        result.seen = len(rows)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with ws.transaction("review_pull") as con:
            existing = {(s, a): u for s, a, u in con.execute(
                "SELECT sample_id, annotator, updated_at FROM reviews").fetchall()}
            changed = []
            for r in rows:
                key = (r["sample_id"], r["annotator"])
                if key not in existing:
                    result.new += 1
                elif existing[key] != r["updated_at"]:
                    result.updated += 1
                else:
                    result.unchanged += 1
                    continue
                changed.append(r)
            if changed:
                con.executemany(
                    'INSERT OR REPLACE INTO reviews (sample_id, dataset, annotator, status, rating, correct, labels, '
                    'corrected_answer, "values", updated_at, pulled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                    [[r["sample_id"], r["dataset"], r["annotator"], r["status"], r["rating"], r["correct"],
                      r["labels"], r["corrected_answer"], r["values"], r["updated_at"], now] for r in changed])
        finish_run(ws, run_id, result.as_dict())
        return result
    except BaseException as exc:
        finish_run(ws, run_id, result.as_dict(), status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
