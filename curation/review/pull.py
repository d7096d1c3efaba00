"""Pull annotators' responses from Argilla (through the `argilla` SDK) into the workspace's `reviews` table.

One row per (sample_id, annotator): status (submitted | discarded; drafts are work in progress and stay
on the server), the rating / correct / issue labels / corrected answer, all values as JSON, when this
content of the response was first pulled (`updated_at`) and when we last wrote it (`pulled_at`).
Incremental: a row is written only when it is new or its status or values changed since the last pull, so
re-running `pull` is cheap and leaves unchanged rows alone. (Changes are found by content: the SDK's
response models carry no server timestamps.) The write is one DuckDB transaction: a pull that fails
half-way (server gone) changes nothing.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from curation.review.client import DatasetGone, argilla_client, find_dataset
from curation.review.push import ARGILLA_WORKSPACE, pushed_datasets
from curation.review.stack import Connection, connect, ping
from storage.errors import NotFound
from storage.runs import recorded_run
from storage.workspace import Workspace

if TYPE_CHECKING:
    import argilla as rg

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

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def responses(client: rg.Argilla, ds: rg.Dataset, page: int = 1000) -> Iterator[tuple[str, Any]]:
    """(sample id, one annotator's response) for every response in `ds`, page by page.

    Read through the SDK's records API (`client.api.records.list`), not `ds.records(with_responses=True)`:
    that one turns each answered question into a `Response`, so an answer with no values (a discard with
    nothing filled in) disappears, and one whose values are null makes it raise."""
    offset = 0
    while True:
        items = client.api.records.list(dataset_id=ds.id, offset=offset, limit=page, with_suggestions=False,
                                        with_responses=True)
        for rec in items:
            for resp in rec.responses or []:
                yield str(rec.external_id), resp
        offset += len(items)
        if len(items) < page:
            return


def response_rows(pairs: Iterable[tuple[str, Any]], usernames: dict[str, str],
                  dataset_ref: str) -> tuple[list[dict[str, Any]], int]:
    """`reviews` rows of (sample id, response) pairs (submitted and discarded only); also counts drafts."""
    rows, drafts = [], 0
    for sample_id, resp in pairs:
        status = str(getattr(resp.status, "value", resp.status))
        if status not in PULLED_STATUSES:
            drafts += 1
            continue
        values = {q: (v or {}).get("value") for q, v in (resp.values or {}).items()}
        rating, labels = values.get("rating"), values.get("issues")
        rows.append({
            "sample_id": sample_id, "dataset": dataset_ref,
            "annotator": usernames.get(str(resp.user_id), str(resp.user_id)), "status": status,
            "rating": int(rating) if rating is not None else None, "correct": values.get("correct"),
            "labels": list(labels) if labels else None, "corrected_answer": values.get("corrected_answer"),
            "values": json.dumps(values, sort_keys=True),
        })
    return rows, drafts


def _targets(ws: Workspace, dataset_ref: str | None) -> list[dict[str, Any]]:
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
    return targets


def _fetch(conn: Connection, targets: list[dict[str, Any]], result: PullResult) -> list[dict[str, Any]]:
    """Every submitted / discarded response of the target datasets, as `reviews` rows."""
    rows: list[dict[str, Any]] = []
    with argilla_client(conn, "pull responses") as client:
        usernames = {str(u.id): u.username for u in client.users.list()}
        for t in targets:
            ds = find_dataset(client, ARGILLA_WORKSPACE, t["argilla_dataset"])
            if ds is None:
                raise DatasetGone(
                    f"Argilla dataset {t['argilla_dataset']!r} (pushed from {t['dataset']}) no longer exists on "
                    f"{conn.url}; responses already pulled stay in the workspace. Push it again with "
                    f"`recot review push --dataset {t['dataset']}` to recreate it")
            r, drafts = response_rows(responses(client, ds), usernames, t["dataset"])
            rows.extend(r)
            result.skipped_drafts += drafts
            result.datasets.append(t["argilla_dataset"])
    return rows


def _same(old: tuple[str, Any], row: dict[str, Any]) -> bool:
    status, values = old
    old_values = json.loads(values) if isinstance(values, str) else values
    return bool(status == row["status"] and old_values == json.loads(row["values"]))


def _store(ws: Workspace, rows: list[dict[str, Any]], result: PullResult) -> None:
    """Write new and changed rows in one transaction; count new / updated / unchanged."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with ws.transaction("review_pull") as con:
        existing = {(s, a): (st, v) for s, a, st, v in con.execute(
            'SELECT sample_id, annotator, status, "values" FROM reviews').fetchall()}
        changed = []
        for r in rows:
            old = existing.get((r["sample_id"], r["annotator"]))
            if old is None:
                result.new += 1
            elif not _same(old, r):
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
                  r["labels"], r["corrected_answer"], r["values"], now, now] for r in changed])


def pull(ws: Workspace, dataset_ref: str | None = None, *, conn: Connection | None = None) -> PullResult:
    """Pull responses of every dataset this workspace pushed (or only of `dataset_ref`)."""
    targets = _targets(ws, dataset_ref)
    conn = conn or connect(ws, check=False)
    ping(conn)  # fail before touching the catalog when the server is down or the key is wrong
    result = PullResult()
    with recorded_run(ws, "review_pull", {"dataset": dataset_ref, "url": conn.url}) as run:
        result.run_id = run.id
        run.stats = result.__dict__  # live: the run row gets the counts as they stand, whatever the outcome
        rows = _fetch(conn, targets, result)
        result.seen = len(rows)
        _store(ws, rows, result)
    return result
