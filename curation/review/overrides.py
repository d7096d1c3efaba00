"""Human decisions override filter verdicts: a new version of a curated dataset.

Why a new version instead of editing: versions are immutable and every sample keeps its lineage. The new
version has the same rows; for every sample with submitted reviews, `keep` becomes the human decision
(majority of annotators, see report.human_decisions), a human drop sets `rejected_by = 'human'` and
`reject_reason` to what the annotators said, a human keep clears the filters' rejection, and the mean
human rating is added to `scores` as "human_rating". The manifest lists the review rows used (sample,
annotator, status, updated_at) and the annotators, and the parent is the curated version, so
`recot datasets lineage` leads from a trained-on sample back to the people who vetted it. The parent's
verdicts are copied to the new version, plus one 'human' verdict per reviewed sample.
"""
from __future__ import annotations

import logging
from functools import partial

import duckdb
import pyarrow as pa

from curation.review.report import HumanDecision, human_decisions
from storage.datasets import DatasetVersion, resolve, write_version
from storage.errors import NotFound, RecotError
from storage.records import CURATED_SCHEMA
from storage.workspace import Workspace

log = logging.getLogger(__name__)


def _store_verdicts(parent: DatasetVersion, decisions: dict[str, HumanDecision], con: duckdb.DuckDBPyConnection,
                    name: str, version: int) -> None:
    """The parent's verdicts plus one 'human' verdict per reviewed sample, for the new version; run in the
    transaction that registers the version (both or neither)."""
    con.execute("INSERT INTO verdicts SELECT ?, ?, sample_id, filter, keep, reason, score, run_id FROM verdicts "
                "WHERE dataset = ? AND version = ?", [name, version, parent.name, parent.version])
    con.executemany("INSERT INTO verdicts VALUES (?, ?, ?, 'human', ?, ?, ?, NULL)",
                    [[name, version, d.sample_id, d.keep, None if d.keep else d.reason, d.mean_rating]
                     for d in decisions.values()])


def apply_reviews(ws: Workspace, dataset_ref: str) -> DatasetVersion:
    """New version of curated dataset `dataset_ref` where human review decisions override the filters."""
    parent = resolve(ws, dataset_ref)
    if "keep" not in {f["name"] for f in parent.manifest.get("schema", [])}:
        raise RecotError(f"{parent.ref} is not a curated dataset (no 'keep' column)")
    con = duckdb.connect()
    try:
        ids = [r[0] for r in con.execute(f"SELECT sample_id FROM {parent.sql}").fetchall()]
        decisions = human_decisions(ws, ids)
        if not decisions:
            raise NotFound(f"no submitted reviews for samples of {parent.ref}; run `recot review pull` first")
        used = ws.query("SELECT sample_id, annotator, status, updated_at FROM reviews WHERE status = 'submitted' "
                        "ORDER BY sample_id, annotator")
        used = [u for u in used if u[0] in decisions]
        dec = pa.table({
            "sample_id": [d.sample_id for d in decisions.values()],
            "h_keep": [d.keep for d in decisions.values()],
            "h_reason": [f"human review: {d.reason}" for d in decisions.values()],
            "h_rating": [d.mean_rating for d in decisions.values()],
        })
        con.register("dec", dec)
        cols = ", ".join(f't."{c}"' for c in CURATED_SCHEMA.names if c not in
                         ("keep", "rejected_by", "reject_reason", "scores"))
        table = con.sql(f"""
            SELECT {cols},
                   coalesce(d.h_keep, t.keep) AS keep,
                   CASE WHEN d.sample_id IS NULL THEN t.rejected_by WHEN d.h_keep THEN NULL ELSE 'human' END
                       AS rejected_by,
                   CASE WHEN d.sample_id IS NULL THEN t.reject_reason WHEN d.h_keep THEN NULL ELSE d.h_reason END
                       AS reject_reason,
                   CASE WHEN d.h_rating IS NULL THEN t.scores
                        ELSE json_merge_patch(coalesce(t.scores, '{{}}'),
                                              json_object('human_rating', d.h_rating))::VARCHAR END AS scores
            FROM {parent.sql} t LEFT JOIN dec d USING (sample_id)
            ORDER BY t.sample_id""").to_arrow_table()
        before = dict(con.execute(f"SELECT sample_id, keep FROM {parent.sql}").fetchall())
    finally:
        con.close()
    table = table.select(CURATED_SCHEMA.names).cast(CURATED_SCHEMA)
    to_keep = sorted(s for s, d in decisions.items() if d.keep and before.get(s) is False)
    to_drop = sorted(s for s, d in decisions.items() if not d.keep and before.get(s) is not False)
    manifest = {"reviews": {
        "source": "reviews",
        "rows": [{"sample_id": s, "annotator": a, "status": st, "updated_at": str(u)} for s, a, st, u in used],
        "annotators": sorted({u[1] for u in used}),
        "reviewed_samples": len(decisions),
        "flipped_to_keep": to_keep, "flipped_to_drop": to_drop,
    }}
    dv = write_version(ws, parent.name, table, step="review_apply", schema=CURATED_SCHEMA,
                       parents=[(parent.name, parent.version)],
                       config={"dataset": parent.ref, "rule": "majority of submitted reviews; tie = drop; bad = "
                               "correct=no or rating<=2"}, extra_manifest=manifest,
                       on_commit=partial(_store_verdicts, parent, decisions))
    log.info("%s: %d reviewed samples applied (%d now kept, %d now dropped) → %s", parent.ref, len(decisions),
             len(to_keep), len(to_drop), dv.ref)
    return dv
