"""Run a filter chain over a sample dataset version and write the curated version.

Every sample is kept in the output (CURATED_SCHEMA: `keep`, `rejected_by` = the first filter that dropped
it, `reject_reason`, `scores` JSON), every verdict goes to the `verdicts` table keyed by the new version,
and the funnel report (per-filter in/out counts, reasons, examples, score distributions) goes into the
manifest, where `recot curate report` and the viewer read it. The input is never modified, so a chain —
or the same chain with other thresholds — can be re-run on an existing dataset without regenerating
anything.

Determinism: filters are pure functions of the input rows and their parameters (ties are broken by
sample_id, MinHash uses a fixed seed, the judge is served from the teacher cache), rows keep the input
order, so the same input and chain give a byte-identical output (same content hash).
"""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.base import Filter, FilterContext, Verdicts, reason_category
from curation.config import ChainConfig, load_chain
from curation.text import chat_column, completion_column
from storage.datasets import DatasetVersion, read_dv, resolve, write_version
from storage.errors import InputError, RecotError
from storage.executor import map_batches
from storage.records import CURATED_SCHEMA, SAMPLE_SCHEMA, VERDICT_SCHEMA
from storage.redact import redact
from storage.runs import finish_run, start_run
from storage.workspace import Workspace

EXECUTOR_BATCH_ROWS = 20_000

log = logging.getLogger(__name__)

MAX_EXAMPLES = 3


def load_samples(dv: DatasetVersion) -> pa.Table:
    """The input version as SAMPLE_SCHEMA (curated columns of a previous pass are dropped: a chain always
    starts from the samples, not from an earlier chain's decisions)."""
    table = read_dv(dv)
    missing = [f for f in SAMPLE_SCHEMA.names if f not in table.column_names]
    if missing:
        raise InputError(f"dataset {dv.ref} is not a sample dataset: missing column(s) {missing}",
                         file=str(dv.path), field=missing[0])
    table = table.select(SAMPLE_SCHEMA.names)
    try:
        return table.cast(SAMPLE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"dataset {dv.ref} does not match the sample schema: {exc}", file=str(dv.path)) from None


def _score_stats(s: np.ndarray) -> dict | None:
    s = s[~np.isnan(s)]
    if len(s) == 0:
        return None
    lo, hi = float(s.min()), float(s.max())
    counts, edges = np.histogram(s, bins=10, range=(lo, hi if hi > lo else lo + 1e-9))
    q = np.quantile(s, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"count": int(len(s)), "mean": round(float(s.mean()), 4), "min": round(lo, 4),
            "p10": round(float(q[0]), 4), "p25": round(float(q[1]), 4), "p50": round(float(q[2]), 4),
            "p75": round(float(q[3]), 4), "p90": round(float(q[4]), 4), "max": round(hi, 4),
            "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}}


def _reason_stats(ids: pa.Array, reasons: np.ndarray, pos: np.ndarray) -> tuple[dict, dict]:
    """Histogram of reason categories over `pos` (positions into `reasons`/`ids`) and up to 3 examples each."""
    hist: dict[str, int] = {}
    examples: dict[str, list[dict]] = {}
    for r in pos:
        cat = reason_category(reasons[r]) or "(no reason)"
        hist[cat] = hist.get(cat, 0) + 1
        ex = examples.setdefault(cat, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append({"sample_id": ids[int(r)].as_py(), "reason": reasons[r]})
    hist = dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
    return hist, {k: examples[k] for k in hist}


def _scores_json(scores: dict[str, np.ndarray], n: int) -> pa.Array:
    """Per row '{"label": score, ...}' (sorted keys, rows' NaN scores left out; null when none), built by one
    DuckDB expression rather than a json.dumps per row."""
    labels = [k for k in sorted(scores) if not np.isnan(scores[k]).all()]
    if not labels:
        return pa.nulls(n, pa.string())
    import duckdb

    cols = {f"c{i}": pa.array(np.round(scores[k], 6), pa.float64(), mask=np.isnan(scores[k]))
            for i, k in enumerate(labels)}
    t = pa.table({"_row": pa.array(np.arange(n), pa.int64()), **cols})
    quoted = ["'" + k.replace("'", "''") + "'" for k in labels]
    entries = ", ".join(f"{{'k': {q}, 'v': c{i}}}" for i, q in enumerate(quoted))
    con = duckdb.connect()
    try:
        con.register("t", t)
        out = con.sql(f"""
            SELECT CASE WHEN len(e) = 0 THEN NULL ELSE to_json(map_from_entries(e))::VARCHAR END AS j
            FROM (SELECT _row, list_filter([{entries}], lambda x: x.v IS NOT NULL) AS e FROM t) ORDER BY _row
            """).to_arrow_table().column("j")
    finally:
        con.close()
    return out.combine_chunks()


def _verdicts_on_executor(f: Filter, sub: pa.Table, ws: Workspace | None, sid_version: int | None,
                          run_id: str | None, executor: str) -> Verdicts:
    """A row-local filter over batches on `executor` (storage.executor.map_batches): same verdicts as in-process."""
    fn = functools.partial(verdict_batch, f, str(ws.root) if ws is not None else None, sid_version, run_id)
    out = map_batches(sub, fn, executor=executor, batch_size=EXECUTOR_BATCH_ROWS)
    score = out.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    return Verdicts(out.column("keep").to_numpy(zero_copy_only=False), out.column("reason").to_pylist(), score)


def verdict_batch(f: Filter, ws_root: str | None, sid_version: int | None, run_id: str | None,
                  batch: pa.Table) -> pa.Table:
    """One batch through one row-local filter, as a pure function (runs in a Ray worker): keep/reason/score."""
    ws = Workspace(root=Path(ws_root)) if ws_root else None  # a handle only: nothing is created or migrated
    ctx = FilterContext(ws=ws, rank_score=np.zeros(batch.num_rows), run_id=run_id, sid_version=sid_version)
    v = f.apply(batch, ctx) if batch.num_rows else Verdicts.all_kept(0)
    return pa.table({"keep": pa.array(v.keep, pa.bool_()), "reason": pa.array(v.reason, pa.string()),
                     "score": pa.array(v.score, pa.float64())})


def run_filters(table: pa.Table, filters: list[Filter], *, ws: Workspace | None = None,
                sid_version: int | None = None, run_id: str | None = None,
                progress: bool = False, executor: str = "local") -> tuple[pa.Table, pa.Table, dict]:
    """Apply `filters` in order to a SAMPLE_SCHEMA table. Returns (curated table, verdicts, funnel).

    Pure apart from catalog reads (and the judge's teacher cache), so benchmarks and tests can call it
    without writing a version."""
    n = table.num_rows
    work = table.append_column("_completion", completion_column(table))
    work = work.append_column("_chat", chat_column(table))
    id_col = table.column("sample_id").combine_chunks()
    if pc.count_distinct(id_col).as_py() != n or id_col.null_count:
        ids = id_col.to_pylist()
        seen, dup = set(), (0, None)
        for i, s in enumerate(ids):
            if s is None or s in seen:
                dup = (i, s)
                break
            seen.add(s)
        raise InputError(f"duplicate or missing sample_id {dup[1]!r}: sample ids must be unique within a dataset",
                         line=dup[0], field="sample_id")
    kept = np.ones(n, bool)
    rejected_by = np.full(n, None, dtype=object)
    reject_reason = np.full(n, None, dtype=object)
    rank = np.zeros(n)
    scores: dict[str, np.ndarray] = {}
    shared: dict[str, Any] = {}
    verdict_parts: list[pa.Table] = []
    stages = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("curating", total=len(filters))
    try:
        for f in filters:
            t0 = time.perf_counter()
            idx = np.flatnonzero(kept) if f.only_kept else np.arange(n)
            sub = work if len(idx) == n else work.take(pa.array(idx, pa.int64()))
            ctx = FilterContext(ws=ws, rank_score=rank[idx].copy(),
                                earlier_scores={k: v[idx] for k, v in scores.items()}, run_id=run_id,
                                progress=progress, sid_version=sid_version, cache=shared, rows=idx, full=work)
            if bar is not None:
                bar.update(task, description=f"{f.label} ({len(idx):,} samples)")
            if executor != "local" and f.row_local and len(idx):
                v = _verdicts_on_executor(f, sub, ws, sid_version, run_id, executor)
            else:
                v = f.apply(sub, ctx) if len(idx) else Verdicts.all_kept(0)
            if len(v.keep) != len(idx):
                raise RecotError(f"filter {f.label!r} returned {len(v.keep)} verdicts for {len(idx)} samples")
            before = int(kept.sum())
            reasons = np.array(v.reason, dtype=object)
            flagged_pos = np.flatnonzero(~v.keep)
            flagged = idx[flagged_pos]
            new_pos = flagged_pos[kept[flagged]]
            newly = idx[new_pos]
            rejected_by[newly] = f.label
            reject_reason[newly] = reasons[new_pos]
            kept[flagged] = False
            s_full = np.full(n, np.nan)
            s_full[idx] = v.score
            scores[f.label] = s_full
            rank = rank + f.rank_weight * np.nan_to_num(s_full, nan=0.0)
            sub_ids = id_col if len(idx) == n else pc.take(id_col, pa.array(idx, pa.int64()))
            verdict_parts.append(pa.table({
                "sample_id": sub_ids,
                "filter": pa.array(np.full(len(idx), f.label, dtype=object), pa.string()),
                "keep": pa.array(v.keep, pa.bool_()),
                "reason": pa.array(reasons, pa.string()),
                "score": pa.array(v.score, pa.float64(), mask=np.isnan(v.score)),
            }, schema=VERDICT_SCHEMA))
            reasons_new, examples = _reason_stats(sub_ids, reasons, new_pos)
            reasons_all, _ = _reason_stats(sub_ids, reasons, flagged_pos)
            notes, _ = _reason_stats(sub_ids, reasons, np.flatnonzero(v.keep & (reasons != None)))  # noqa: E711
            stages.append({
                "name": f.label, "type": f.type_name, "only_kept": f.only_kept,
                "params": redact(f.params.model_dump(mode="json")),  # the manifest is stored: no secrets
                "evaluated": int(len(idx)), "in": before, "out": int(kept.sum()),
                "dropped": before - int(kept.sum()), "flagged": int(len(flagged)),
                "reasons": reasons_new, "flagged_reasons": reasons_all, "notes": notes, "examples": examples,
                "scores": _score_stats(v.score.copy()), "seconds": round(time.perf_counter() - t0, 4),
            })
            if bar is not None:
                bar.advance(task)
            log.info("filter %s: %d → %d", f.label, before, int(kept.sum()))
    finally:
        if bar is not None:
            bar.stop()
    curated = table.append_column("keep", pa.array(kept, pa.bool_())) \
        .append_column("rejected_by", pa.array(rejected_by, pa.string())) \
        .append_column("reject_reason", pa.array(reject_reason, pa.string())) \
        .append_column("scores", _scores_json(scores, n))
    verdicts = pa.concat_tables(verdict_parts) if verdict_parts else VERDICT_SCHEMA.empty_table()
    rej: dict[str, int] = {}
    for f in filters:
        c = int((rejected_by == f.label).sum())
        if c:
            rej[f.label] = c
    funnel = {"rows": n, "kept": int(kept.sum()), "rejected": n - int(kept.sum()),
              "rejected_by": rej, "filters": stages}
    if "teacher_stats" in shared:
        funnel["teacher_stats"] = shared["teacher_stats"]
    return curated.cast(CURATED_SCHEMA), verdicts, funnel


def run_chain(ws: Workspace, dataset_ref: str | DatasetVersion, chain: str | Path | ChainConfig | dict = "default",
              *, out: str | None = None, progress: bool = False,
              overrides: list[str] | None = None, executor: str = "local") -> DatasetVersion:
    """Curate `dataset_ref` with `chain` into a new version of dataset `out` (default '<input>-curated')."""
    cfg, source = load_chain(chain, overrides)
    filters = cfg.build(source)
    src = dataset_ref if isinstance(dataset_ref, DatasetVersion) else resolve(ws, dataset_ref)
    out = out or f"{src.name}-curated"
    table = load_samples(src)
    config = {"chain": cfg.model_dump(mode="json"), "chain_source": source, "input": src.ref, "executor": executor}
    with ws.writer("curate"):
        run_id = start_run(ws, "curate", config)
        try:
            curated, verdicts, funnel = run_filters(table, filters, ws=ws, sid_version=cfg.sid_version, executor=executor,
                                                    run_id=run_id, progress=progress)
            funnel = {"chain": cfg.name, "chain_source": source, "input": src.ref, **funnel}
            def store_verdicts(con, name: str, version: int) -> None:
                con.register("v", verdicts)
                con.execute("INSERT INTO verdicts SELECT ?, ?, sample_id, filter, keep, reason, score, ? FROM v",
                            [name, version, run_id])
                con.unregister("v")

            # the verdicts are inserted in the transaction that registers the version: both or neither
            dv = write_version(ws, out, curated, step="curate", config=config, parents=[(src.name, src.version)],
                               run_id=run_id, schema=CURATED_SCHEMA, extra_manifest={"funnel": funnel},
                               on_commit=store_verdicts)
        except BaseException as exc:
            finish_run(ws, run_id, {"input": src.ref}, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        stats = {"input": src.ref, "output": dv.ref, "rows": funnel["rows"], "kept": funnel["kept"],
                 "rejected_by": funnel["rejected_by"]}
        if "teacher_stats" in funnel:
            stats["teacher"] = funnel["teacher_stats"]
        finish_run(ws, run_id, stats)
    return dv


