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

import contextlib
import functools
import itertools
import logging
import os
import shutil
import tempfile
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
import pyarrow.parquet as pq

from curation.base import Filter, FilterContext, RunCache, Verdicts, reason_category
from curation.config import ChainConfig, load_chain
from curation.text import chat_column, completion_column
from storage.datasets import DatasetVersion, resolve, write_version
from storage.errors import InputError
from storage.executor import map_batches
from storage.records import CURATED_SCHEMA, SAMPLE_SCHEMA, VERDICT_SCHEMA
from storage.redact import redact
from storage.runs import pid_alive, recorded_run
from storage.workspace import Workspace

EXECUTOR_BATCH_ROWS = 20_000
BATCH_ROWS = 8_192
"""Rows per record batch of a chain run: row-local filters, set-level filters' `prepare`, the output write and
the verdict spill work a batch at a time."""
SAMPLE_TYPES = {f.name: f.type for f in SAMPLE_SCHEMA} | {"_completion": pa.string(), "_chat": pa.string()}

log = logging.getLogger(__name__)

MAX_EXAMPLES = 3


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


def _reason_stats(ids: pa.Array, reasons: np.ndarray, pos: np.ndarray, hist: dict[str, int],
                  examples: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """Add the reason categories of rows `pos` (positions into `reasons`/`ids`) to `hist`, and the first
    MAX_EXAMPLES of each to `examples` when given."""
    for r in pos:
        cat = reason_category(reasons[r]) or "(no reason)"
        hist[cat] = hist.get(cat, 0) + 1
        if examples is not None:
            ex = examples.setdefault(cat, [])
            if len(ex) < MAX_EXAMPLES:
                ex.append({"sample_id": ids[int(r)].as_py(), "reason": reasons[r]})


def _scores_json(scores: dict[str, np.ndarray], n: int, con: duckdb.DuckDBPyConnection | None = None) -> pa.Array:
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
    with (con.cursor() if con is not None else duckdb.connect()) as cur:
        cur.register("t", t)
        out = cur.sql(f"""
            SELECT CASE WHEN len(e) = 0 THEN NULL ELSE to_json(map_from_entries(e))::VARCHAR END AS j
            FROM (SELECT _row, list_filter([{entries}], lambda x: x.v IS NOT NULL) AS e FROM t) ORDER BY _row
            """).to_arrow_table().column("j")
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
class ChainInput:
    """The samples a chain reads, as record batches in row order (re-read from the Parquet parts at each pass, so
    a pass holds one batch of the input at a time). `batches(columns)` yields tables of those columns (None: all
    of SAMPLE_SCHEMA for a dataset version, every column for an in-memory table)."""

    num_rows: int
    batches: Callable[[list[str] | None], Iterator[pa.Table]]

    @classmethod
    def of_table(cls, table: pa.Table, batch_rows: int | None = None) -> ChainInput:
        rows = batch_rows or BATCH_ROWS

        def batches(columns: list[str] | None) -> Iterator[pa.Table]:
            t = table if columns is None else table.select(columns)
            for start in range(0, table.num_rows, rows):
                yield t.slice(start, rows)

        return cls(table.num_rows, batches)

    @classmethod
    def of_version(cls, dv: DatasetVersion, batch_rows: int | None = None) -> ChainInput:
        """A sample dataset version (curated columns of a previous pass are not read: a chain always starts from
        the samples, not from an earlier chain's decisions)."""
        parts = sorted(dv.path.glob("part-*.parquet"))
        have = set(pq.read_schema(parts[0]).names) if parts else set()
        missing = [f for f in SAMPLE_SCHEMA.names if f not in have]
        if missing:
            raise InputError(f"dataset {dv.ref} is not a sample dataset: missing column(s) {missing}",
                             file=str(dv.path), field=missing[0])

        def batches(columns: list[str] | None) -> Iterator[pa.Table]:
            cols = list(columns or SAMPLE_SCHEMA.names)
            schema = pa.schema([SAMPLE_SCHEMA.field(c) for c in cols])
            for part in parts:
                for rb in pq.ParquetFile(part).iter_batches(batch_size=batch_rows or BATCH_ROWS, columns=cols):
                    try:
                        yield pa.Table.from_batches([rb]).select(cols).cast(schema)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise InputError(f"dataset {dv.ref} does not match the sample schema: {exc}",
                                         file=str(dv.path)) from None

        return cls(sum(pq.ParquetFile(p).metadata.num_rows for p in parts), batches)

    def ids(self) -> pa.Array:
        """The sample_id column, checked (`checked_ids`)."""
        parts = list(self.batches(["sample_id"]))
        t = pa.concat_tables(parts) if parts else pa.table({"sample_id": pa.array([], pa.string())})
        return checked_ids(t)

    def work(self, columns: tuple[str, ...] | None) -> Iterator[pa.Table]:
        """Batches of `columns` (None: all), `_completion`/`_chat` computed per batch when asked for."""
        text = columns is None or bool({"_completion", "_chat"} & set(columns))
        read = None if columns is None else list(dict.fromkeys(
            [c for c in columns if c not in ("_completion", "_chat")] +
            (["messages", "reasoning", "answer"] if text else [])))
        for b in self.batches(read):
            w = with_text_columns(b) if text else b
            yield w if columns is None else w.select(list(dict.fromkeys(columns)))


@dataclass
class StageTally:
    """One filter's funnel stage, added up batch by batch in row order (the same figures and examples as over
    all its rows at once)."""

    f: Filter[Any]
    before: int = 0                  # rows kept before the filter (all rows, not only those it evaluates)
    after: int = 0                   # … and after it
    evaluated: int = 0
    flagged: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    flagged_reasons: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    scores: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, ids: pa.Array, reasons: np.ndarray, keep: np.ndarray, new_pos: np.ndarray,
            score: np.ndarray) -> None:
        self.evaluated += len(keep)
        self.flagged += int((~keep).sum())
        _reason_stats(ids, reasons, new_pos, self.reasons, self.examples)
        _reason_stats(ids, reasons, np.flatnonzero(~keep), self.flagged_reasons)
        _reason_stats(ids, reasons, np.flatnonzero(keep & (reasons != None)), self.notes)  # noqa: E711
        self.scores.append(score[~np.isnan(score)])

    def stage(self) -> dict[str, Any]:
        f, after = self.f, self.after

        def ordered(h: dict[str, int]) -> dict[str, int]:
            return dict(sorted(h.items(), key=lambda kv: (-kv[1], kv[0])))

        reasons = ordered(self.reasons)
        return {
            "name": f.label, "type": f.type_name, "only_kept": f.only_kept,
            "params": redact(f.params.model_dump(mode="json")),  # the manifest is stored: no secrets
            "evaluated": self.evaluated, "in": self.before, "out": after, "dropped": self.before - after,
            "flagged": self.flagged, "reasons": reasons, "flagged_reasons": ordered(self.flagged_reasons),
            "notes": ordered(self.notes), "examples": {k: self.examples[k] for k in reasons},
            "scores": _score_stats(np.concatenate(self.scores) if self.scores else np.zeros(0)),
            "seconds": round(self.seconds, 4),
        }


@dataclass
class ChainState:
    """What a chain run has decided so far, per input row: still kept, the first filter that dropped it and
    why, every filter's score and the rank score (~0.15 KB a row with 13 filters); each filter's verdict rows are
    spilled to a Parquet file in `spill` as they come, and its funnel stage is added up in a StageTally."""

    ids: pa.Array
    kept: np.ndarray
    rejected_by: np.ndarray
    reject_reason: np.ndarray
    rank: np.ndarray
    spill: Path
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    verdict_files: list[Path] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    writers: dict[str, pq.ParquetWriter] = field(default_factory=dict)

    @classmethod
    def start(cls, ids: pa.Array, spill: Path) -> ChainState:
        n = len(ids)
        return cls(ids, np.ones(n, bool), np.full(n, None, dtype=object), np.full(n, None, dtype=object),
                   np.zeros(n), spill)

    def begin(self, f: Filter[Any]) -> StageTally:
        """Open `f`'s verdict spill file and its funnel stage."""
        path = self.spill / f"verdicts-{len(self.verdict_files):04d}.parquet"
        self.verdict_files.append(path)
        self.writers[f.label] = pq.ParquetWriter(path, VERDICT_SCHEMA)
        self.scores[f.label] = np.full(len(self.kept), np.nan)
        return StageTally(f)

    def end(self, tally: StageTally) -> None:
        """Close the filter's verdict file (an empty one when it evaluated no row) and record its stage."""
        w = self.writers.pop(tally.f.label)
        if tally.evaluated == 0:
            w.write_table(VERDICT_SCHEMA.empty_table())
        w.close()
        self.stages.append(tally.stage())
        log.info("filter %s: %d → %d", tally.f.label, tally.before, tally.after)

    def rows_for(self, f: Filter[Any]) -> np.ndarray:
        """Positions of the rows `f` evaluates: the still-kept ones when it is `only_kept`, else all."""
        return np.flatnonzero(self.kept) if f.only_kept else np.arange(len(self.kept))

    def context(self, idx: np.ndarray, prior: list[str], *, rows: np.ndarray, full: pa.Table | None,
                cache: RunCache, ws: Workspace | None, sid_version: int | None, run_id: str | None,
                progress: bool, source: Callable[[str, np.ndarray], pa.ChunkedArray]) -> FilterContext:
        """The context of the rows `idx` (positions in the input) for a filter after the filters `prior`."""
        return FilterContext(ws=ws, rank_score=self.rank[idx].copy(),
                             earlier_scores={k: self.scores[k][idx] for k in prior}, run_id=run_id,
                             progress=progress, sid_version=sid_version, cache=cache, rows=rows, full=full,
                             source=source)

    def record(self, tally: StageTally, idx: np.ndarray, v: Verdicts) -> None:
        """Apply `f`'s verdicts on rows `idx` (positions in the input, ascending; one batch or all of its rows):
        first drops, scores, rank, the verdict rows and the stage's counts."""
        f = tally.f
        reasons = np.array(v.reason, dtype=object)
        flagged_pos = np.flatnonzero(~v.keep)
        new_pos = flagged_pos[self.kept[idx[flagged_pos]]]
        self.rejected_by[idx[new_pos]] = f.label
        self.reject_reason[idx[new_pos]] = reasons[new_pos]
        self.kept[idx[flagged_pos]] = False
        self.scores[f.label][idx] = v.score
        self.rank[idx] += f.rank_weight * np.nan_to_num(v.score, nan=0.0)
        sub_ids = self.ids if len(idx) == len(self.ids) else pc.take(self.ids, pa.array(idx, pa.int64()))
        if len(idx):
            self.writers[f.label].write_table(verdict_rows(f.label, sub_ids, v, reasons))
        tally.add(sub_ids, reasons, v.keep, new_pos, v.score)

    def curated(self, batch: pa.Table, start: int, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
        """Input rows `start…` with the decisions: keep, rejected_by, reject_reason and the scores as JSON."""
        sl = slice(start, start + batch.num_rows)
        return batch.append_column("keep", pa.array(self.kept[sl], pa.bool_())) \
            .append_column("rejected_by", pa.array(self.rejected_by[sl], pa.string())) \
            .append_column("reject_reason", pa.array(self.reject_reason[sl], pa.string())) \
            .append_column("scores", _scores_json({k: v[sl] for k, v in self.scores.items()}, batch.num_rows, con)) \
            .cast(CURATED_SCHEMA)

    def curated_batches(self, inp: ChainInput) -> Iterator[pa.RecordBatch]:
        start = 0
        with duckdb.connect() as con:
            for batch in inp.batches(None):
                yield from self.curated(batch, start, con).to_batches()
                start += batch.num_rows

    def verdicts(self) -> pa.Table:
        """Every verdict, filter by filter, read back from the spill files."""
        parts = [pq.read_table(p) for p in self.verdict_files]
        return pa.concat_tables(parts) if parts else VERDICT_SCHEMA.empty_table()

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
    """`f`'s verdicts on rows `idx` of `work`: in-process, or on `executor` in batches when the filter is row-local."""
    cols = f.reads()
    src = work if cols is None else work.select(list(dict.fromkeys(cols)))
    sub = src if len(idx) == work.num_rows else src.take(pa.array(idx, pa.int64()))
    if executor != "local" and f.row_local and len(idx):
        v = _verdicts_on_executor(f, sub, ctx.ws, ctx.sid_version, ctx.run_id, executor)
        return v.validate(len(idx), f.label)
    return f.apply(sub, ctx)


def _segments(filters: list[Filter[Any]]) -> Iterator[list[int]]:
    """Runs of consecutive row-local filters (one pass over the input each) and single set-level filters."""
    run: list[int] = []
    for i, f in enumerate(filters):
        if f.row_local:
            run.append(i)
            continue
        if run:
            yield run
            run = []
        yield [i]
    if run:
        yield run


@dataclass
class _Run:
    """One chain run over a ChainInput: row-local filters batch by batch, set-level ones over the rows they
    evaluate, gathered batch by batch as the small table their `prepare` makes of them."""

    inp: ChainInput
    filters: list[Filter[Any]]
    state: ChainState
    ws: Workspace | None
    sid_version: int | None
    run_id: str | None
    progress: bool
    executor: str
    cache: RunCache = field(default_factory=RunCache)

    def kw(self) -> dict[str, Any]:
        return {"ws": self.ws, "sid_version": self.sid_version, "run_id": self.run_id, "progress": self.progress,
                "source": self.read_column}

    def read_column(self, column: str, rows: np.ndarray) -> pa.ChunkedArray:
        """Column `column` of input rows `rows` (ascending positions), read again batch by batch."""
        out, start = [], 0
        for batch in self.inp.work((column,)):
            m = batch.num_rows
            lo, hi = np.searchsorted(rows, [start, start + m])
            if hi > lo:
                out.append(batch.column(column).take(pa.array(rows[lo:hi] - start, pa.int64())))
            start += m
        return pa.chunked_array([c for part in out for c in part.chunks], type=SAMPLE_TYPES.get(column, pa.string()))

    def set_filter(self, i: int) -> Filter[Any]:
        """Filter `i` as it runs: a set-level step that can run partitioned gets the executor (dedup)."""
        f = self.filters[i]
        if self.executor != "local" and getattr(f, "distributed", False):
            return f.on_executor(self.executor)  # type: ignore[no-any-return,attr-defined]
        return f

    def prepare(self, f: Filter[Any], batch: pa.Table, start: int, cache: RunCache) -> _Prepared | None:
        """What set-level `f` keeps (`prepare`) of the rows of `batch` (input rows `start…`) it may evaluate: the
        still-kept ones when it is `only_kept` (a superset of those it will evaluate when other set-level filters
        come first: `prepare` is row-local, so the subset is taken later), else all."""
        m = batch.num_rows
        local = np.flatnonzero(self.state.kept[start:start + m]) if f.only_kept else np.arange(m)
        if not len(local):
            return None
        cols = f.reads()
        src = batch if cols is None else batch.select(list(dict.fromkeys(cols)))
        sub = src if len(local) == m else src.take(pa.array(local, pa.int64()))
        ctx = self.state.context(start + local, [], rows=local, full=batch, cache=cache, **self.kw())
        return f.prepare(sub, ctx), start + local

    def row_local(self, seg: list[int], then: list[Filter[Any]]) -> list[_Gathered]:
        """Filters `seg` (row-local, consecutive) in one pass: each batch goes through all of them in order, then
        through the `prepare` of the set-level filters `then` that come next (the rows they may evaluate are known
        once the batch is through `seg`), which spares each of them a pass of its own."""
        st = self.state
        tallies = [st.begin(self.filters[i]) for i in seg]
        gathered = [_Gathered() for _ in then]
        start = 0
        for batch in self.inp.work(None):
            m = batch.num_rows
            cache = self.cache.for_batch()
            for i, tally in zip(seg, tallies):
                t0 = time.perf_counter()
                f = self.filters[i]
                local = np.flatnonzero(st.kept[start:start + m]) if f.only_kept else np.arange(m)
                idx = start + local
                ctx = st.context(idx, [g.label for g in self.filters[:i]], rows=local, full=batch, cache=cache,
                                 **self.kw())
                tally.before += int(st.kept[start:start + m].sum())
                st.record(tally, idx, _evaluate(f, batch, local, ctx, self.executor))
                tally.after += int(st.kept[start:start + m].sum())
                tally.seconds += time.perf_counter() - t0
            for f, g in zip(then, gathered):
                t0 = time.perf_counter()
                g.add(self.prepare(f, batch, start, cache))
                g.seconds += time.perf_counter() - t0
            start += m
        for tally in tallies:
            st.end(tally)
        return gathered

    def set_level(self, i: int, f: Filter[Any], gathered: _Gathered | None) -> None:
        """Set-level filter `i` (`f` as it runs) over the rows it evaluates, as one table of what its `prepare`
        kept per batch (`gathered` in the pass before, or in a pass of its own)."""
        st = self.state
        tally = st.begin(f)
        t0 = time.perf_counter()
        if gathered is None:
            gathered, start = _Gathered(), 0
            for batch in self.inp.work(f.reads()):
                gathered.add(self.prepare(f, batch, start, self.cache.for_batch()))
                start += batch.num_rows
        idx = st.rows_for(f)
        table = gathered.rows(idx)
        tally.seconds = gathered.seconds
        ctx = st.context(idx, [g.label for g in self.filters[:i]], rows=idx, full=None, cache=self.cache,
                         **self.kw())
        tally.before = int(st.kept.sum())
        st.record(tally, idx, f.apply(table, ctx) if len(idx) else Verdicts.all_kept(0))
        tally.after = int(st.kept.sum())
        tally.seconds += time.perf_counter() - t0
        st.end(tally)

    def run(self) -> None:
        segs = list(_segments(self.filters))
        ahead: dict[int, tuple[Filter[Any], _Gathered]] = {}   # set-level filters prepared in a row-local pass
        with _progress_bar(self.progress, len(self.filters)) as step, contextlib.closing(self.cache):
            for k, seg in enumerate(segs):
                step(", ".join(self.filters[i].label for i in seg))
                if self.filters[seg[0]].row_local:
                    nxt = [s[0] for s in itertools.takewhile(lambda s: not self.filters[s[0]].row_local,
                                                             segs[k + 1:])]
                    then = [self.set_filter(i) for i in nxt]
                    ahead = dict(zip(nxt, zip(then, self.row_local(seg, then))))
                else:
                    i = seg[0]
                    f, g = ahead.pop(i, (self.set_filter(i), None))
                    self.set_level(i, f, g)
                for _ in seg:
                    step(None)


_Prepared = tuple[pa.Table, np.ndarray]


@dataclass
class _Gathered:
    """What a set-level filter's `prepare` kept, batch by batch, and the input rows it covers (ascending)."""

    parts: list[pa.Table] = field(default_factory=list)
    covered: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, prepared: _Prepared | None) -> None:
        if prepared is not None:
            self.parts.append(prepared[0])
            self.covered.append(prepared[1])

    def rows(self, idx: np.ndarray) -> pa.Table:
        """The prepared rows of input rows `idx` (a subset of those covered, ascending)."""
        if not self.parts:
            return pa.table({})
        table = pa.concat_tables(self.parts)
        covered = np.concatenate(self.covered)
        if len(covered) == len(idx):
            return table
        return table.take(pa.array(np.searchsorted(covered, idx), pa.int64()))


def _chain_run(inp: ChainInput, filters: list[Filter[Any]], spill: Path, *, ws: Workspace | None,
               sid_version: int | None, run_id: str | None, progress: bool, executor: str) -> _Run:
    run = _Run(inp, filters, ChainState.start(inp.ids(), spill), ws, sid_version, run_id, progress, executor)
    run.run()
    return run


def run_filters(table: pa.Table, filters: list[Filter[Any]], *, ws: Workspace | None = None,
                sid_version: int | None = None, run_id: str | None = None,
                progress: bool = False, executor: str = "local") -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Apply `filters` in order to a SAMPLE_SCHEMA table. Returns (curated table, verdicts, funnel).

    Pure apart from catalog reads (and the judge's teacher cache), so benchmarks and tests can call it
    without writing a version. The same engine as `run_chain` (batches of BATCH_ROWS rows), in memory."""
    inp = ChainInput.of_table(table)
    with tempfile.TemporaryDirectory(prefix="recot-curate-") as spill:
        r = _chain_run(inp, filters, Path(spill), ws=ws, sid_version=sid_version, run_id=run_id,
                       progress=progress, executor=executor)
        parts = list(r.state.curated_batches(inp))
        curated = pa.Table.from_batches(parts, schema=CURATED_SCHEMA) if parts else CURATED_SCHEMA.empty_table()
        return curated, r.state.verdicts(), r.state.funnel(filters, r.cache)


def run_chain(ws: Workspace, dataset_ref: str | DatasetVersion,
              chain: str | Path | ChainConfig | dict[str, Any] = "default",
              *, out: str | None = None, progress: bool = False,
              overrides: list[str] | None = None, executor: str = "local") -> DatasetVersion:
    """Curate `dataset_ref` with `chain` into a new version of dataset `out` (default '<input>-curated').

    Streams: the input is read in record batches at each pass (one per run of row-local filters, one per
    set-level filter, one for the output), verdicts are spilled to Parquet under the workspace's tmp folder and
    inserted by DuckDB from there, and the output is written batch by batch — what stays in memory is the per-row
    decisions (~0.15 KB a row with the default chain), one batch, and what the set-level filters keep of their
    rows (docs/curation.md, "Memory: the chain streams"). A killed run's spill folder is removed by the next run."""
    cfg, source = load_chain(chain, overrides)
    filters = cfg.build(source)
    src = dataset_ref if isinstance(dataset_ref, DatasetVersion) else resolve(ws, dataset_ref)
    out = out or f"{src.name}-curated"
    inp = ChainInput.of_version(src)
    config = {"chain": cfg.model_dump(mode="json"), "chain_source": source, "input": src.ref, "executor": executor}
    with ws.writer("curate"), recorded_run(ws, "curate", config) as run:
        clean_spills(ws.tmp_dir)
        with tempfile.TemporaryDirectory(prefix=f"curate-{os.getpid()}-", dir=ws.tmp_dir) as spill:
            dv = _curate(ws, run, inp, filters, Path(spill), cfg, source, src, out, config, progress, executor)
    return dv


def clean_spills(tmp_dir: Path) -> list[Path]:
    """Verdict spill folders (`curate-<pid>-*`) that a killed chain run left behind: removed when their process
    is gone (the caller holds the workspace's writer lock, so no live run of this workspace is writing them)."""
    removed = []
    for d in tmp_dir.glob("curate-*-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _curate(ws: Workspace, run: Any, inp: ChainInput, filters: list[Filter[Any]], spill: Path, cfg: ChainConfig,
            source: str, src: DatasetVersion, out: str, config: dict[str, Any], progress: bool, executor: str
            ) -> DatasetVersion:
    """run_chain's body inside the writer lock and the recorded run: filters, output version, verdicts."""
    run.stats = {"input": src.ref}
    r = _chain_run(inp, filters, spill, ws=ws, sid_version=cfg.sid_version, run_id=run.id,
                   progress=progress, executor=executor)
    funnel = {"chain": cfg.name, "chain_source": source, "input": src.ref, **r.state.funnel(filters, r.cache)}
    files = [str(p) for p in r.state.verdict_files]

    def store_verdicts(con: duckdb.DuckDBPyConnection, name: str, version: int) -> None:
        if files:
            con.execute("INSERT INTO verdicts SELECT ?, ?, sample_id, filter, keep, reason, score, ? "
                        "FROM read_parquet(?)", [name, version, run.id, files])

    # the verdicts are inserted in the transaction that registers the version: both or neither
    dv = write_version(ws, out, r.state.curated_batches(inp), step="curate", config=config,
                       parents=[(src.name, src.version)], run_id=run.id, schema=CURATED_SCHEMA,
                       extra_manifest={"funnel": funnel}, on_commit=store_verdicts)
    run.stats = {"input": src.ref, "output": dv.ref, "rows": funnel["rows"], "kept": funnel["kept"],
                 "rejected_by": funnel["rejected_by"]}
    if "teacher_stats" in funnel:
        run.stats["teacher"] = funnel["teacher_stats"]
    return dv
