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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.base import Filter, FilterContext, RunCache, Verdicts, reason_category
from curation.config import ChainConfig, load_chain
from curation.text import chat_column, completion_column
from storage.datasets import DatasetVersion, read_dv, resolve, write_version
from storage.errors import InputError
from storage.executor import map_batches
from storage.records import CURATED_SCHEMA, SAMPLE_SCHEMA, VERDICT_SCHEMA
from storage.redact import redact
from storage.runs import recorded_run
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


def _score_stats(s: np.ndarray) -> dict[str, Any] | None:
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


def _reason_stats(ids: pa.Array, reasons: np.ndarray, pos: np.ndarray
                  ) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    """Histogram of reason categories over `pos` (positions into `reasons`/`ids`) and up to 3 examples each."""
    hist: dict[str, int] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
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


def _verdicts_on_executor(f: Filter[Any], sub: pa.Table, ws: Workspace | None, sid_version: int | None,
                          run_id: str | None, executor: str) -> Verdicts:
    """A row-local filter over batches on `executor` (storage.executor.map_batches): same verdicts as in-process."""
    fn = functools.partial(verdict_batch, f, str(ws.root) if ws is not None else None, sid_version, run_id)
    out = map_batches(sub, fn, executor=executor, batch_size=EXECUTOR_BATCH_ROWS)
    score = out.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    return Verdicts(out.column("keep").to_numpy(zero_copy_only=False), out.column("reason").to_pylist(), score)


def verdict_batch(f: Filter[Any], ws_root: str | None, sid_version: int | None, run_id: str | None,
                  batch: pa.Table) -> pa.Table:
    """One batch through one row-local filter, as a pure function (runs in a Ray worker): keep/reason/score."""
    ws = Workspace(root=Path(ws_root)) if ws_root else None  # a handle only: nothing is created or migrated
    ctx = FilterContext(ws=ws, rank_score=np.zeros(batch.num_rows), run_id=run_id, sid_version=sid_version)
    v = f.apply(batch, ctx)
    return pa.table({"keep": pa.array(v.keep, pa.bool_()), "reason": pa.array(v.reason, pa.string()),
                     "score": pa.array(v.score, pa.float64())})


def with_text_columns(table: pa.Table) -> pa.Table:
    """The samples plus what filters read: `_completion` (the assistant's answer) and `_chat` (the whole chat)."""
    return table.append_column("_completion", completion_column(table)).append_column("_chat", chat_column(table))


def checked_ids(table: pa.Table) -> pa.Array:
    """The sample_id column, once checked to be unique and never null (InputError names the first offender)."""
    id_col = table.column("sample_id").combine_chunks()
    if pc.count_distinct(id_col).as_py() != table.num_rows or id_col.null_count:
        seen: set[str] = set()
        for i, s in enumerate(id_col.to_pylist()):
            if s is None or s in seen:
                raise InputError(f"duplicate or missing sample_id {s!r}: sample ids must be unique within a "
                                 "dataset", line=i, field="sample_id")
            seen.add(s)
    return id_col


@dataclass
class ChainState:
    """What a chain run has decided so far, per input row: still kept, the first filter that dropped it and
    why, every filter's score and the rank score; plus one verdict table and one funnel stage per filter."""

    ids: pa.Array
    kept: np.ndarray
    rejected_by: np.ndarray
    reject_reason: np.ndarray
    rank: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    verdicts: list[pa.Table] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, ids: pa.Array) -> ChainState:
        n = len(ids)
        return cls(ids, np.ones(n, bool), np.full(n, None, dtype=object), np.full(n, None, dtype=object),
                   np.zeros(n))

    def rows_for(self, f: Filter[Any]) -> np.ndarray:
        """Positions of the rows `f` evaluates: the still-kept ones when it is `only_kept`, else all."""
        return np.flatnonzero(self.kept) if f.only_kept else np.arange(len(self.kept))

    def context(self, idx: np.ndarray, *, work: pa.Table, cache: RunCache, ws: Workspace | None,
                sid_version: int | None, run_id: str | None, progress: bool) -> FilterContext:
        return FilterContext(ws=ws, rank_score=self.rank[idx].copy(),
                             earlier_scores={k: v[idx] for k, v in self.scores.items()}, run_id=run_id,
                             progress=progress, sid_version=sid_version, cache=cache, rows=idx, full=work)

    def record(self, f: Filter[Any], idx: np.ndarray, v: Verdicts, seconds: float) -> None:
        """Apply `f`'s verdicts on rows `idx`: first drops, scores, rank, the verdict rows and the funnel stage."""
        n = len(self.kept)
        before = int(self.kept.sum())
        reasons = np.array(v.reason, dtype=object)
        flagged_pos = np.flatnonzero(~v.keep)
        new_pos = flagged_pos[self.kept[idx[flagged_pos]]]
        self.rejected_by[idx[new_pos]] = f.label
        self.reject_reason[idx[new_pos]] = reasons[new_pos]
        self.kept[idx[flagged_pos]] = False
        s_full = np.full(n, np.nan)
        s_full[idx] = v.score
        self.scores[f.label] = s_full
        self.rank = self.rank + f.rank_weight * np.nan_to_num(s_full, nan=0.0)
        sub_ids = self.ids if len(idx) == n else pc.take(self.ids, pa.array(idx, pa.int64()))
        self.verdicts.append(verdict_rows(f.label, sub_ids, v, reasons))
        self.stages.append({
            "name": f.label, "type": f.type_name, "only_kept": f.only_kept,
            "params": redact(f.params.model_dump(mode="json")),  # the manifest is stored: no secrets
            "evaluated": int(len(idx)), "in": before, "out": int(self.kept.sum()),
            "dropped": before - int(self.kept.sum()), "flagged": int(len(flagged_pos)),
            **stage_reasons(sub_ids, reasons, v.keep, new_pos),
            "scores": _score_stats(v.score.copy()), "seconds": round(seconds, 4),
        })
        log.info("filter %s: %d → %d", f.label, before, int(self.kept.sum()))

    def curated(self, table: pa.Table) -> pa.Table:
        """The input with the decisions: keep, rejected_by, reject_reason and the scores as JSON."""
        return table.append_column("keep", pa.array(self.kept, pa.bool_())) \
            .append_column("rejected_by", pa.array(self.rejected_by, pa.string())) \
            .append_column("reject_reason", pa.array(self.reject_reason, pa.string())) \
            .append_column("scores", _scores_json(self.scores, len(self.kept))).cast(CURATED_SCHEMA)

    def funnel(self, filters: list[Filter[Any]], cache: RunCache) -> dict[str, Any]:
        n, kept = len(self.kept), int(self.kept.sum())
        rej = {f.label: c for f in filters if (c := int((self.rejected_by == f.label).sum()))}
        out = {"rows": n, "kept": kept, "rejected": n - kept, "rejected_by": rej, "filters": self.stages}
        if cache.teacher_stats:
            out["teacher_stats"] = cache.teacher_stats
        return out


def verdict_rows(label: str, sub_ids: pa.Array, v: Verdicts, reasons: np.ndarray) -> pa.Table:
    """One filter's verdicts as VERDICT_SCHEMA rows."""
    return pa.table({
        "sample_id": sub_ids,
        "filter": pa.array(np.full(len(sub_ids), label, dtype=object), pa.string()),
        "keep": pa.array(v.keep, pa.bool_()),
        "reason": pa.array(reasons, pa.string()),
        "score": pa.array(v.score, pa.float64(), mask=np.isnan(v.score)),
    }, schema=VERDICT_SCHEMA)


def stage_reasons(ids: pa.Array, reasons: np.ndarray, keep: np.ndarray, new_pos: np.ndarray) -> dict[str, Any]:
    """A funnel stage's reason histograms: of the rows it dropped first (with examples), of all it flagged,
    and the notes it left on kept rows."""
    reasons_new, examples = _reason_stats(ids, reasons, new_pos)
    reasons_all, _ = _reason_stats(ids, reasons, np.flatnonzero(~keep))
    notes, _ = _reason_stats(ids, reasons, np.flatnonzero(keep & (reasons != None)))  # noqa: E711
    return {"reasons": reasons_new, "flagged_reasons": reasons_all, "notes": notes, "examples": examples}


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[str | None], None]]:
    """`step(description)` shows the filter starting; `step(None)` marks it done. A no-op when disabled."""
    if not enabled:
        yield lambda desc: None
        return
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task("curating", total=total)
    try:
        yield lambda desc: bar.update(task, description=desc) if desc is not None else bar.advance(task)
    finally:
        bar.stop()


def _evaluate(f: Filter[Any], work: pa.Table, idx: np.ndarray, ctx: FilterContext, executor: str) -> Verdicts:
    """`f`'s verdicts on rows `idx`: in-process, or on `executor` in batches when the filter is row-local, or
    partitioned by key when it is a distributable set-level step (dedup)."""
    cols = f.reads()
    src = work if cols is None else work.select(list(dict.fromkeys(cols)))
    sub = src if len(idx) == work.num_rows else src.take(pa.array(idx, pa.int64()))
    if executor != "local" and f.row_local and len(idx):
        v = _verdicts_on_executor(f, sub, ctx.ws, ctx.sid_version, ctx.run_id, executor)
        return v.validate(len(idx), f.label)
    if executor != "local" and getattr(f, "distributed", False):
        f = f.on_executor(executor)  # type: ignore[attr-defined]  # set-level, partitioned by key (dedup)
    return f.apply(sub, ctx)


def run_filters(table: pa.Table, filters: list[Filter[Any]], *, ws: Workspace | None = None,
                sid_version: int | None = None, run_id: str | None = None,
                progress: bool = False, executor: str = "local") -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Apply `filters` in order to a SAMPLE_SCHEMA table. Returns (curated table, verdicts, funnel).

    Pure apart from catalog reads (and the judge's teacher cache), so benchmarks and tests can call it
    without writing a version."""
    work = with_text_columns(table)
    state = ChainState.start(checked_ids(table))
    cache = RunCache()
    with _progress_bar(progress, len(filters)) as step:
        for f in filters:
            t0 = time.perf_counter()
            idx = state.rows_for(f)
            step(f"{f.label} ({len(idx):,} samples)")
            ctx = state.context(idx, work=work, cache=cache, ws=ws, sid_version=sid_version, run_id=run_id,
                                progress=progress)
            state.record(f, idx, _evaluate(f, work, idx, ctx, executor), time.perf_counter() - t0)
            step(None)
    verdicts = pa.concat_tables(state.verdicts) if state.verdicts else VERDICT_SCHEMA.empty_table()
    return state.curated(table), verdicts, state.funnel(filters, cache)


def run_chain(ws: Workspace, dataset_ref: str | DatasetVersion,
              chain: str | Path | ChainConfig | dict[str, Any] = "default",
              *, out: str | None = None, progress: bool = False,
              overrides: list[str] | None = None, executor: str = "local") -> DatasetVersion:
    """Curate `dataset_ref` with `chain` into a new version of dataset `out` (default '<input>-curated')."""
    cfg, source = load_chain(chain, overrides)
    filters = cfg.build(source)
    src = dataset_ref if isinstance(dataset_ref, DatasetVersion) else resolve(ws, dataset_ref)
    out = out or f"{src.name}-curated"
    table = load_samples(src)
    config = {"chain": cfg.model_dump(mode="json"), "chain_source": source, "input": src.ref, "executor": executor}
    with ws.writer("curate"), recorded_run(ws, "curate", config) as run:
        run.stats = {"input": src.ref}
        curated, verdicts, funnel = run_filters(table, filters, ws=ws, sid_version=cfg.sid_version, executor=executor,
                                                run_id=run.id, progress=progress)
        funnel = {"chain": cfg.name, "chain_source": source, "input": src.ref, **funnel}

        def store_verdicts(con: duckdb.DuckDBPyConnection, name: str, version: int) -> None:
            con.register("v", verdicts)
            con.execute("INSERT INTO verdicts SELECT ?, ?, sample_id, filter, keep, reason, score, ? FROM v",
                        [name, version, run.id])
            con.unregister("v")

        # the verdicts are inserted in the transaction that registers the version: both or neither
        dv = write_version(ws, out, curated, step="curate", config=config, parents=[(src.name, src.version)],
                           run_id=run.id, schema=CURATED_SCHEMA, extra_manifest={"funnel": funnel},
                           on_commit=store_verdicts)
        run.stats = {"input": src.ref, "output": dv.ref, "rows": funnel["rows"], "kept": funnel["kept"],
                     "rejected_by": funnel["rejected_by"]}
        if "teacher_stats" in funnel:
            run.stats["teacher"] = funnel["teacher_stats"]
    return dv
