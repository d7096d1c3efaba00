"""Every read the viewer makes, as plain functions (no Streamlit here, so tests call them directly).

Two kinds of source, two kinds of connection:
- catalog tables (dataset_versions, runs, verdicts, reviews, items, splits, item_sids): `Workspace.reader()`,
  a short read-only connection opened per call and closed at once — a job's writer only needs the file for
  its brief transactions, and `reader()` retries while one is in flight;
- dataset versions (Parquet parts): an in-memory DuckDB over `read_parquet(dv.glob)`, with filters, LIMIT and
  OFFSET pushed into SQL, so a page of a 1M-sample version reads a few row groups, never the whole thing.
When a sample filter needs catalog rows (review status, a filter's drops), the matching sample ids are
fetched as Arrow and registered in the in-memory connection: never a join that keeps the catalog open.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from storage.datasets import DatasetVersion, diff_versions, list_versions
from storage.sid import extract_sids, find_malformed_sids
from storage.sid_catalog import latest_sid_version
from storage.workspace import Workspace

log = logging.getLogger(__name__)

PREVIEW_CHARS = 160
# Columns shown in the trace list when the version has them (order kept).
LIST_COLUMNS = ["sample_id", "task", "level", "mode", "user_id", "teacher", "keep", "rejected_by", "error"]
# Sample columns that can be filtered by equality from a dropdown.
CHOICE_COLUMNS = ["task", "level", "mode", "teacher"]


# ---------------------------------------------------------------------------------------------- workspace
def open_readonly(root: str | Path) -> Workspace | None:
    """A handle on an existing workspace, or None when there is no catalog yet.

    Deliberately not `Workspace.open`: that creates a workspace or migrates its schema, i.e. writes, and the
    viewer must never write."""
    ws = Workspace(root=Path(root).expanduser().resolve())
    return ws if ws.db_path.exists() else None


def catalog_stamp(ws: Workspace) -> tuple:
    """A cheap fingerprint of what the viewer shows; cached results are keyed on it, so a new dataset version,
    a finished run, new verdicts or pulled reviews make every page re-query."""
    with ws.reader() as con:
        row = con.execute("""
            SELECT (SELECT count(*) FROM dataset_versions), (SELECT max(created_at) FROM dataset_versions),
                   (SELECT count(*) FROM runs), (SELECT max(coalesce(finished_at, started_at)) FROM runs),
                   (SELECT count(*) FROM runs WHERE status = 'running'),
                   (SELECT count(*) FROM verdicts), (SELECT count(*) FROM reviews),
                   (SELECT max(pulled_at) FROM reviews),
                   (SELECT count(*) FROM sid_versions), (SELECT count(*) FROM items),
                   (SELECT count(*) FROM splits)
        """).fetchone()
    return tuple(str(v) for v in row)


def counts(ws: Workspace) -> dict[str, int]:
    return ws.counts()


def is_empty(counts_: dict[str, int]) -> bool:
    return not any(counts_.get(t, 0) for t in ("items", "interactions", "dataset_versions", "runs"))


# ---------------------------------------------------------------------------------------------- overview
def versions(ws: Workspace) -> list[DatasetVersion]:
    return list_versions(ws)


def schema_names(dv: DatasetVersion) -> list[str]:
    names = [f["name"] for f in dv.manifest.get("schema", [])]
    if names:
        return names
    con = duckdb.connect()
    try:
        return [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_src(dv)}").fetchall()]
    finally:
        con.close()


def is_curated(dv: DatasetVersion) -> bool:
    return "keep" in schema_names(dv)


def has_samples(dv: DatasetVersion) -> bool:
    return "sample_id" in schema_names(dv)


def datasets_table(ws: Workspace) -> pd.DataFrame:
    """One row per dataset version: what the overview lists."""
    rows = []
    for dv in list_versions(ws):
        rows.append({"dataset": dv.ref, "name": dv.name, "version": dv.version, "rows": dv.rows, "step": dv.step,
                     "created_at": dv.created_at,
                     "parents": ", ".join(f"{p.get('name')}@v{p.get('version')}" for p in dv.parents or []),
                     "curated": is_curated(dv), "run_id": dv.run_id})
    return pd.DataFrame(rows, columns=["dataset", "name", "version", "rows", "step", "created_at", "parents",
                                       "curated", "run_id"])


def runs_table(ws: Workspace, limit: int = 200) -> pd.DataFrame:
    """Runs, newest first, with their accounting (the `stats` JSON) flattened into columns."""
    with ws.reader() as con:
        df = con.execute("""SELECT run_id, kind, status, started_at, finished_at,
                                   date_diff('millisecond', started_at, finished_at) / 1000.0 AS duration_s,
                                   error, stats
                            FROM runs ORDER BY started_at DESC LIMIT ?""", [limit]).df()
    if df.empty:
        return df.drop(columns=["stats"])
    stats = [_json(s) or {} for s in df.pop("stats")]
    flat = pd.json_normalize([s if isinstance(s, dict) else {"stats": s} for s in stats], sep=".")
    if not flat.empty:
        flat.columns = [f"stats.{c}" for c in flat.columns]
        # Lists/dicts don't fit a grid cell; show them as JSON text.
        for c in flat.columns:
            if flat[c].map(lambda v: isinstance(v, (list, dict))).any():
                flat[c] = flat[c].map(lambda v: json.dumps(v, default=str) if isinstance(v, (list, dict)) else v)
        df = pd.concat([df.reset_index(drop=True), flat], axis=1)
    return df


def running_runs(ws: Workspace) -> pd.DataFrame:
    """Jobs still running (their process alive), with what they have done so far: a synth run's teacher
    accounting (requests completed / cached / failed, which the engine writes into the run row as it goes)."""
    from storage.runs import is_interrupted

    with ws.reader() as con:
        rows = con.execute("""SELECT run_id, kind, started_at, stats, config FROM runs WHERE status = 'running'
                              ORDER BY started_at DESC""").fetchall()
    out = []
    for run_id, kind, started, stats, config in rows:
        st_, cfg = _json(stats) or {}, _json(config) or {}
        if is_interrupted("running", st_):
            continue
        teachers = [t for t in [st_.get("teacher"), *(st_.get("teachers") or [])] if isinstance(t, dict)]
        done = sum(int(t.get("completed") or 0) + int(t.get("failed") or 0) for t in teachers)
        total = sum(int(t.get("requests") or 0) for t in teachers)
        out.append({"run_id": run_id, "kind": kind, "task": st_.get("task") or cfg.get("task"),
                    "dataset": cfg.get("dataset"), "started_at": started,
                    "requests done": f"{done:,} of {total:,}" if total else None,
                    "cached": sum(int(t.get("cached") or 0) for t in teachers) if teachers else None,
                    "failed": sum(int(t.get("failed") or 0) for t in teachers) if teachers else None})
    return pd.DataFrame(out)


def review_progress(ws: Workspace) -> pd.DataFrame:
    """Review rows by dataset and status (one row per sample and annotator in `reviews`)."""
    with ws.reader() as con:
        return con.execute("""SELECT coalesce(dataset, '(any)') AS dataset, status, count(*) AS responses,
                                     count(DISTINCT sample_id) AS samples, count(DISTINCT annotator) AS annotators
                              FROM reviews GROUP BY ALL ORDER BY dataset, status""").df()


_IN_KEYS = ("in", "n_in", "input", "rows_in", "before")
_OUT_KEYS = ("out", "kept", "n_out", "output", "rows_out", "after", "keep")
_DROP_KEYS = ("dropped", "removed", "n_dropped", "rejected")
_NAME_KEYS = ("name", "filter", "step", "id")


def normalize_funnel(funnel: Any) -> pd.DataFrame:
    """The curation funnel as a table (order, filter, in, out, dropped, reasons).

    Documented shape (curation writes it into the curated version's manifest under "funnel"):
        {"filters": [{"name": str, "in": int, "out": int, "dropped": int, "reasons": {reason: count}}], ...}
    Also accepted, so the viewer survives small changes on the writer's side: a bare list of such entries,
    a {"steps": [...]} dict, or a {filter_name: {"in": .., "out": ..}} mapping; alternative key names
    (kept/n_in/n_out/removed/filter); a missing "in" taken from the previous filter's "out"; a missing
    "dropped" computed as in − out."""
    entries: list[tuple[str, dict]] = []
    if isinstance(funnel, dict):
        seq = funnel.get("filters", funnel.get("steps"))
        if isinstance(seq, list):
            funnel = seq
        else:
            for k, v in funnel.items():
                if isinstance(v, dict) and any(key in v for key in _IN_KEYS + _OUT_KEYS + _DROP_KEYS):
                    entries.append((str(k), v))
    if isinstance(funnel, list):
        for i, e in enumerate(funnel):
            if isinstance(e, dict):
                name = next((str(e[k]) for k in _NAME_KEYS if e.get(k) is not None), f"filter {i + 1}")
                entries.append((name, e))
    rows, prev_out = [], None
    for order, (name, e) in enumerate(entries, 1):
        n_in = _first_number(e, _IN_KEYS)
        n_out = _first_number(e, _OUT_KEYS)
        dropped = _first_number(e, _DROP_KEYS)
        if n_in is None:
            if prev_out is not None:
                n_in = prev_out
            elif n_out is not None and dropped is not None:
                n_in = n_out + dropped
        if n_out is None and n_in is not None and dropped is not None:
            n_out = n_in - dropped
        if dropped is None and n_in is not None and n_out is not None:
            dropped = n_in - n_out
        reasons = e.get("reasons") or {}
        if isinstance(reasons, list):  # [{"reason": r, "count": n}] or [[r, n]]
            reasons = {str(r.get("reason") if isinstance(r, dict) else r[0]):
                       (r.get("count") if isinstance(r, dict) else r[1]) for r in reasons}
        rows.append({"order": order, "filter": name, "in": n_in, "out": n_out, "dropped": dropped,
                     "reasons": reasons if isinstance(reasons, dict) else {}})
        prev_out = n_out if n_out is not None else prev_out
    return pd.DataFrame(rows, columns=["order", "filter", "in", "out", "dropped", "reasons"])


def funnel(ws: Workspace, dv: DatasetVersion) -> pd.DataFrame:
    """The funnel of a curated version: from its manifest when curation wrote one, else rebuilt from the
    `verdicts` table (filters ordered by how many samples reached them)."""
    df = normalize_funnel(dv.manifest.get("funnel")) if dv.manifest.get("funnel") else pd.DataFrame()
    if not df.empty:
        return df
    with ws.reader() as con:
        v = con.execute("""SELECT filter, count(*) AS n_in, count(*) FILTER (WHERE keep) AS n_out
                           FROM verdicts WHERE dataset = ? AND version = ? GROUP BY filter
                           ORDER BY n_in DESC, filter""", [dv.name, dv.version]).fetchall()
        r = con.execute("""SELECT filter, coalesce(reason, '(none)'), count(*) FROM verdicts
                           WHERE dataset = ? AND version = ? AND NOT keep GROUP BY ALL""",
                        [dv.name, dv.version]).fetchall()
    reasons: dict[str, dict] = {}
    for f, reason, n in r:
        reasons.setdefault(f, {})[reason] = n
    return normalize_funnel([{"name": f, "in": a, "out": b, "reasons": reasons.get(f, {})} for f, a, b in v])


def funnel_reasons(df: pd.DataFrame) -> pd.DataFrame:
    """Long table (filter, reason, count) of a normalized funnel, biggest first."""
    rows = [{"filter": r["filter"], "reason": reason, "count": n}
            for _, r in df.iterrows() for reason, n in (r["reasons"] or {}).items()]
    out = pd.DataFrame(rows, columns=["filter", "reason", "count"])
    return out.sort_values(["count", "filter"], ascending=[False, True]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- traces
@dataclass(frozen=True)
class TraceFilter:
    """What the trace browser filters on; None/empty means 'any'."""

    task: str | None = None
    level: str | None = None
    mode: str | None = None
    teacher: str | None = None
    verdict: str | None = None        # "keep" | "drop"
    reason: str | None = None         # name of a filter that dropped the sample
    user: str | None = None
    review_status: str | None = None  # a reviews.status value, or "unreviewed"
    search: str | None = None         # text searched in the prompt, the reasoning and the answer
    regex: bool = False               # treat `search` as a (case-insensitive) regular expression

    def active(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) not in (None, "", False)}


def _src(dv: DatasetVersion) -> str:
    return "read_parquet('" + dv.glob.replace("'", "''") + "')"


def has_verdicts(ws: Workspace, dv: DatasetVersion) -> bool:
    with ws.reader() as con:
        return bool(con.execute("SELECT count(*) FROM verdicts WHERE dataset = ? AND version = ?",
                                [dv.name, dv.version]).fetchone()[0])


def choices(dv: DatasetVersion, column: str, limit: int = 500) -> list[str]:
    """Distinct values of a sample column (for dropdowns); [] when the version lacks it."""
    if column not in schema_names(dv) or dv.rows == 0:
        return []
    con = duckdb.connect()
    try:
        rows = con.execute(f'SELECT DISTINCT "{column}" FROM {_src(dv)} WHERE "{column}" IS NOT NULL '
                           f'ORDER BY 1 LIMIT {int(limit)}').fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]


def reason_choices(ws: Workspace, dv: DatasetVersion) -> list[str]:
    """Filters that dropped at least one sample of this version (from verdicts, else `rejected_by`)."""
    with ws.reader() as con:
        rows = con.execute("""SELECT DISTINCT filter FROM verdicts WHERE dataset = ? AND version = ? AND NOT keep
                              ORDER BY 1""", [dv.name, dv.version]).fetchall()
    return [r[0] for r in rows] or choices(dv, "rejected_by")


def review_status_choices(ws: Workspace) -> list[str]:
    with ws.reader() as con:
        rows = con.execute("SELECT DISTINCT status FROM reviews ORDER BY 1").fetchall()
    return [r[0] for r in rows] + ["unreviewed"]


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> pa.Table:
    return con.sql(sql, params=params).to_arrow_table()


def _catalog_ids(ws: Workspace, sql: str, params: list) -> pa.Table:
    """Sample ids from the catalog as an Arrow table (connection closed before the Parquet query runs)."""
    with ws.reader() as con:
        return _arrow(con, sql, params)


def _where(ws: Workspace, dv: DatasetVersion, f: TraceFilter, con: duckdb.DuckDBPyConnection) -> tuple[str, list]:
    """SQL conditions (and their parameters) for `f` on `dv`; registers catalog-derived id sets in `con`."""
    cols = set(schema_names(dv))
    conds: list[str] = []
    params: list[Any] = []
    for c in CHOICE_COLUMNS:
        v = getattr(f, c)
        if v and c in cols:
            conds.append(f'"{c}" = ?')
            params.append(v)
    if f.user and "user_id" in cols:
        conds.append("user_id = ?")
        params.append(f.user.strip())
    verdicts_here = (f.verdict or f.reason) and has_verdicts(ws, dv)
    if f.verdict in ("keep", "drop"):
        want = f.verdict == "keep"
        if "keep" in cols:
            conds.append("coalesce(keep, false) = ?")
            params.append(want)
        elif verdicts_here:
            con.register("_verdict_keep", _catalog_ids(ws, """
                SELECT sample_id, bool_and(keep) AS keep FROM verdicts WHERE dataset = ? AND version = ?
                GROUP BY sample_id""", [dv.name, dv.version]))
            conds.append("sample_id IN (SELECT sample_id FROM _verdict_keep WHERE keep = ?)")
            params.append(want)
    if f.reason:
        if verdicts_here:
            con.register("_reason_ids", _catalog_ids(ws, """
                SELECT DISTINCT sample_id FROM verdicts
                WHERE dataset = ? AND version = ? AND filter = ? AND NOT keep""",
                [dv.name, dv.version, f.reason]))
            conds.append("sample_id IN (SELECT sample_id FROM _reason_ids)")
        elif "rejected_by" in cols:
            conds.append("rejected_by = ?")
            params.append(f.reason)
    if f.review_status:
        if f.review_status == "unreviewed":
            con.register("_review_ids", _catalog_ids(ws, "SELECT DISTINCT sample_id FROM reviews", []))
            conds.append("sample_id NOT IN (SELECT sample_id FROM _review_ids)")
        else:
            con.register("_review_ids", _catalog_ids(
                ws, "SELECT DISTINCT sample_id FROM reviews WHERE status = ?", [f.review_status]))
            conds.append("sample_id IN (SELECT sample_id FROM _review_ids)")
    if f.search:
        text_cols = [c for c in ("reasoning", "answer") if c in cols]
        if "messages" in cols:   # the prompt: every message before the assistant's answer
            text_cols.append("array_to_string(list_transform(list_filter(messages, lambda m: m.role <> 'assistant'), "
                             "lambda m: m.content), chr(10))")
        if text_cols:
            # RE2 with the 'i' flag was the fastest case-insensitive scan here (faster than ILIKE or
            # contains(lower(...))); a plain search is the same regex with its metacharacters escaped.
            pattern = f.search if f.regex else re2_escape(f.search)
            conds.append("(" + " OR ".join(f"regexp_matches({c}, ?, 'i')" for c in text_cols) + ")")
            params.extend([pattern] * len(text_cols))
    return (" WHERE " + " AND ".join(conds)) if conds else "", params


_RE2_META = set("\\.^$|?*+()[]{}-")


def re2_escape(text: str) -> str:
    """Escape RE2 metacharacters so `text` matches literally (Python's re.escape also escapes characters RE2
    rejects as escapes)."""
    return "".join("\\" + ch if ch in _RE2_META else ch for ch in text)


def count_traces(ws: Workspace, dv: DatasetVersion, f: TraceFilter) -> int:
    """How many samples of `dv` match `f` (one streaming count in DuckDB; Parquet metadata when unfiltered)."""
    if dv.rows == 0:
        return 0
    con = duckdb.connect()
    try:
        where, params = _where(ws, dv, f, con)
        return int(con.execute(f"SELECT count(*) FROM {_src(dv)}{where}", params).fetchone()[0])
    finally:
        con.close()


def page_sql(ws: Workspace, dv: DatasetVersion, f: TraceFilter, con: duckdb.DuckDBPyConnection,
             limit: int, offset: int) -> tuple[str, list]:
    """The SQL of one page of the trace list (exposed so tests can profile it)."""
    cols = schema_names(dv)
    select = [f'"{c}"' for c in LIST_COLUMNS if c in cols]
    if "answer" in cols:
        select.append(f"left(replace(coalesce(answer, ''), chr(10), ' '), {PREVIEW_CHARS}) AS answer_preview")
    where, params = _where(ws, dv, f, con)
    # No ORDER BY: DuckDB keeps file order (insertion order), so LIMIT/OFFSET stops the scan early instead of
    # sorting a million rows per page.
    return f"SELECT {', '.join(select)} FROM {_src(dv)}{where} LIMIT ? OFFSET ?", params + [int(limit), int(offset)]


def trace_page(ws: Workspace, dv: DatasetVersion, f: TraceFilter, *, limit: int = 50, offset: int = 0) -> pd.DataFrame:
    """One page of matching samples (short columns plus an answer preview), in file order."""
    if dv.rows == 0:
        return pd.DataFrame(columns=[c for c in LIST_COLUMNS if c in schema_names(dv)])
    con = duckdb.connect()
    try:
        sql, params = page_sql(ws, dv, f, con, limit, offset)
        return con.execute(sql, params).df()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------- trace detail
def sample_row(dv: DatasetVersion, sample_id: str) -> dict | None:
    con = duckdb.connect()
    try:
        t = _arrow(con, f"SELECT * FROM {_src(dv)} WHERE sample_id = ? LIMIT 1", [sample_id])
    finally:
        con.close()
    rows = t.to_pylist()
    return rows[0] if rows else None


def sid_lookup(ws: Workspace, sid_version: int | None, sids: Iterable[str]) -> dict[str, dict]:
    """SID → {item_id, title} for those of `sids` that exist in `sid_version`; the others are hallucinated."""
    wanted = sorted({s for s in sids if s})
    if not wanted or sid_version is None:
        return {}
    with ws.reader() as con:
        rows = con.execute("""SELECT x.sid, x.item_id, i.title FROM item_sids x LEFT JOIN items i USING (item_id)
                              WHERE x.sid_version = ? AND x.sid IN (SELECT unnest(?::VARCHAR[]))""",
                           [sid_version, wanted]).fetchall()
    return {s: {"item_id": item, "title": title} for s, item, title in rows}


def user_history(ws: Workspace, user_id: str, sid_version: int | None) -> pd.DataFrame:
    """The user's interactions in time order with titles, SIDs, dates and split (splits, else interactions)."""
    with ws.reader() as con:
        df = con.execute("""
            SELECT s.position, s.ts, s.split, s.item_id, i.title, x.sid
            FROM splits s LEFT JOIN items i USING (item_id)
                 LEFT JOIN item_sids x ON x.item_id = s.item_id AND x.sid_version = ?
            WHERE s.user_id = ? ORDER BY s.position""", [sid_version, user_id]).df()
        if df.empty:
            df = con.execute("""
                SELECT (row_number() OVER (ORDER BY n.ts) - 1)::INTEGER AS position, n.ts, NULL AS split,
                       n.item_id, i.title, x.sid
                FROM interactions n LEFT JOIN items i USING (item_id)
                     LEFT JOIN item_sids x ON x.item_id = n.item_id AND x.sid_version = ?
                WHERE n.user_id = ? ORDER BY n.ts""", [sid_version, user_id]).df()
    return df


def items_table(ws: Workspace, item_ids: list[str], sid_version: int | None) -> pd.DataFrame:
    """Titles and SIDs of `item_ids`, in the given order (for item-level samples without a user)."""
    if not item_ids:
        return pd.DataFrame(columns=["position", "item_id", "title", "sid"])
    with ws.reader() as con:
        found = {r[0]: r[1:] for r in con.execute("""
            SELECT i.item_id, i.title, x.sid FROM items i
                 LEFT JOIN item_sids x ON x.item_id = i.item_id AND x.sid_version = ?
            WHERE i.item_id IN (SELECT unnest(?::VARCHAR[]))""", [sid_version, list(item_ids)]).fetchall()}
    return pd.DataFrame([{"position": i, "item_id": it, "title": found.get(it, (None, None))[0],
                          "sid": found.get(it, (None, None))[1]} for i, it in enumerate(item_ids)])


def trace_detail(ws: Workspace, dv: DatasetVersion, sample_id: str) -> dict | None:
    """Everything the trace-detail page shows about one sample, or None when it is not in `dv`."""
    row = sample_row(dv, sample_id)
    if row is None:
        return None
    sid_version = row.get("sid_version") if row.get("sid_version") is not None else latest_sid_version(ws)
    history_ids = list(row.get("history_item_ids") or [])
    target_ids = list(row.get("target_item_ids") or [])
    if row.get("user_id"):
        history = user_history(ws, row["user_id"], sid_version)
    else:
        history = pd.DataFrame()
    if history.empty:
        history = items_table(ws, history_ids + [t for t in target_ids if t not in history_ids], sid_version)
    if not history.empty:
        hist_set, target_set = set(history_ids), set(target_ids)
        history["role"] = [("target" if it in target_set else "in prompt" if it in hist_set else "")
                           for it in history["item_id"]]
    texts = [row.get("reasoning"), row.get("answer")] + [m.get("content") for m in row.get("messages") or []]
    mentioned = [s for t in texts for s in extract_sids(t)]
    mentioned += list(row.get("answer_sids") or []) + list(row.get("target_sids") or [])
    lookup = sid_lookup(ws, sid_version, mentioned)
    with ws.reader() as con:
        # rowid = insertion order = chain order (curation writes a filter's verdicts after the previous one's)
        verdicts = con.execute("""SELECT filter, keep, reason, score, run_id FROM verdicts
                                  WHERE sample_id = ? AND dataset = ? AND version = ? ORDER BY rowid""",
                               [sample_id, dv.name, dv.version]).df()
        if verdicts.empty:  # a raw version: show the verdicts of whichever curated versions hold it
            verdicts = con.execute("""SELECT dataset || '@v' || version AS curated_version, filter, keep, reason,
                                             score, run_id FROM verdicts WHERE sample_id = ?
                                      ORDER BY dataset, version, rowid""", [sample_id]).df()
        reviews = con.execute("""SELECT annotator, status, rating, correct, labels, corrected_answer, "values",
                                        updated_at, dataset FROM reviews WHERE sample_id = ? ORDER BY annotator""",
                              [sample_id]).df()
    scores = _json(row.get("scores")) or {}
    judge = {k: v for k, v in scores.items() if "judge" in str(k).lower()} if isinstance(scores, dict) else {}
    if not judge and not verdicts.empty:
        jv = verdicts[verdicts["filter"].str.contains("judge", case=False) & verdicts["score"].notna()]
        judge = {r["filter"]: r["score"] for _, r in jv.iterrows()}
    answer_sids = list(row.get("answer_sids") or extract_sids(row.get("answer")))
    return {
        "row": row, "dataset": dv.ref, "sid_version": sid_version, "history": history, "lookup": lookup,
        "answer_sids": [{"sid": s, "known": s in lookup, "title": (lookup.get(s) or {}).get("title"),
                         "item_id": (lookup.get(s) or {}).get("item_id")} for s in answer_sids],
        "targets": [{"item_id": it, "sid": (list(row.get("target_sids") or []) + [None] * len(target_ids))[i],
                     "title": None} for i, it in enumerate(target_ids)],
        "malformed": find_malformed_sids(row.get("answer")) + find_malformed_sids(row.get("reasoning")),
        "verdicts": verdicts, "scores": scores, "judge": judge, "reviews": reviews,
    }


def lineage_of(ws: Workspace, sample_id: str) -> list[dict]:
    from storage.datasets import lineage

    return lineage(ws, sample_id)


# ---------------------------------------------------------------------------------------------- SIDs
def sid_versions_table(ws: Workspace) -> pd.DataFrame:
    with ws.reader() as con:
        df = con.execute("""SELECT v.sid_version, v.created_at, v.levels, v.codebook_size, v.n_items,
                                   count(x.item_id) AS items_with_sid
                            FROM sid_versions v LEFT JOIN item_sids x USING (sid_version)
                            GROUP BY ALL ORDER BY v.sid_version DESC""").df()
        if df.empty:  # item_sids without a version row (hand-made workspace)
            df = con.execute("""SELECT sid_version, NULL AS created_at, max(len(codes)) AS levels,
                                       NULL AS codebook_size, count(*) AS n_items, count(*) AS items_with_sid
                                FROM item_sids GROUP BY sid_version ORDER BY sid_version DESC""").df()
    return df


def base_levels(ws: Workspace, sid_version: int) -> int:
    """Levels of the version's codebook (items with more codes carry a collision-resolving extra level)."""
    with ws.reader() as con:
        row = con.execute("SELECT levels FROM sid_versions WHERE sid_version = ?", [sid_version]).fetchone()
        if row is None:
            row = con.execute("SELECT min(len(codes)) FROM item_sids WHERE sid_version = ?", [sid_version]).fetchone()
    return int(row[0] or 0)


def code_counts(ws: Workspace, sid_version: int, prefix: tuple[int, ...] = ()) -> pd.DataFrame:
    """Items per code at the level below `prefix` (the codebook tree, one level at a time)."""
    depth = len(prefix)
    cond, params = "", [sid_version]
    if depth:
        cond = f" AND codes[1:{depth}] = ?::INTEGER[]"
        params.append(list(prefix))
    with ws.reader() as con:
        return con.execute(f"""SELECT codes[{depth + 1}] AS code, count(*) AS items,
                                      count(DISTINCT codes[{depth + 2}]) AS children
                               FROM item_sids WHERE sid_version = ? AND len(codes) > {depth}{cond}
                               GROUP BY 1 ORDER BY items DESC, code""", params).df()


def items_with_prefix(ws: Workspace, sid_version: int, prefix: tuple[int, ...], limit: int = 500) -> pd.DataFrame:
    depth = len(prefix)
    cond, params = "", [sid_version]
    if depth:
        cond = f" AND x.codes[1:{depth}] = ?::INTEGER[]"
        params.append(list(prefix))
    with ws.reader() as con:
        return con.execute(f"""SELECT x.item_id, i.title, x.sid FROM item_sids x LEFT JOIN items i USING (item_id)
                               WHERE x.sid_version = ?{cond} ORDER BY x.codes LIMIT {int(limit)}""", params).df()


def collisions(ws: Workspace, sid_version: int) -> pd.DataFrame:
    """Items that share their first `levels` codes with another item (they carry an extra level), grouped."""
    levels = base_levels(ws, sid_version)
    with ws.reader() as con:
        return con.execute(f"""
            WITH x AS (SELECT x.item_id, i.title, x.sid, x.codes, x.codes[1:{levels}] AS base
                       FROM item_sids x LEFT JOIN items i USING (item_id) WHERE x.sid_version = ?),
                 g AS (SELECT base FROM x GROUP BY base HAVING count(*) > 1 OR max(len(codes)) > {levels})
            SELECT array_to_string(x.base, '-') AS base_codes, x.item_id, x.title, x.sid,
                   count(*) OVER (PARTITION BY x.base) AS group_size
            FROM x JOIN g USING (base) ORDER BY group_size DESC, x.base, x.codes""", [sid_version]).df()


def search_items(ws: Workspace, sid_version: int | None, q: str, limit: int = 50) -> pd.DataFrame:
    """Items whose title contains `q`, whose id is `q`, or whose SID contains `q` (case-insensitive)."""
    q = (q or "").strip()
    if not q:
        return pd.DataFrame(columns=["item_id", "title", "sid", "categories"])
    with ws.reader() as con:
        return con.execute(f"""SELECT i.item_id, i.title, x.sid, i.categories
                               FROM items i LEFT JOIN item_sids x ON x.item_id = i.item_id AND x.sid_version = ?
                               WHERE contains(lower(coalesce(i.title, '')), lower(?)) OR i.item_id = ?
                                     OR contains(lower(coalesce(x.sid, '')), lower(?))
                               ORDER BY i.title LIMIT {int(limit)}""", [sid_version, q, q, q]).df()


# ---------------------------------------------------------------------------------------------- compare
def version_metrics(ws: Workspace, dv: DatasetVersion) -> dict[str, Any]:
    """Headline numbers of one version: rows, keep rate (curated), parse-error rate, mean score per filter."""
    cols = set(schema_names(dv))
    out: dict[str, Any] = {"rows": dv.rows}
    if dv.rows and cols:
        con = duckdb.connect()
        try:
            if "keep" in cols:
                out["keep_rate"] = con.execute(f"SELECT avg(coalesce(keep, false)::INT) FROM {_src(dv)}").fetchone()[0]
            if "error" in cols:
                out["error_rate"] = con.execute(f"SELECT avg((error IS NOT NULL)::INT) FROM {_src(dv)}").fetchone()[0]
        finally:
            con.close()
    with ws.reader() as con:
        for f, s in con.execute("""SELECT filter, avg(score) FROM verdicts WHERE dataset = ? AND version = ?
                                   AND score IS NOT NULL GROUP BY filter ORDER BY filter""",
                                [dv.name, dv.version]).fetchall():
            out[f"mean_score.{f}"] = s
    return out


def per_task_counts(a: DatasetVersion, b: DatasetVersion) -> pd.DataFrame:
    """Samples (and kept samples, when curated) per task in a and b, with the change."""
    def counts_of(dv: DatasetVersion) -> pd.DataFrame:
        cols = set(schema_names(dv))
        if "task" not in cols or dv.rows == 0:
            return pd.DataFrame(columns=["task", "n", "kept"])
        kept = "count(*) FILTER (WHERE keep)" if "keep" in cols else "NULL::BIGINT"
        con = duckdb.connect()
        try:
            return con.execute(f"SELECT task, count(*) AS n, {kept} AS kept FROM {_src(dv)} GROUP BY task").df()
        finally:
            con.close()

    ca, cb = counts_of(a), counts_of(b)
    m = ca.merge(cb, on="task", how="outer", suffixes=("_a", "_b"))
    for c in ("n_a", "n_b"):
        m[c] = m[c].fillna(0).astype(int)
    m["delta"] = m["n_b"] - m["n_a"]
    return m.sort_values("task").reset_index(drop=True)


def compare(ws: Workspace, a: DatasetVersion, b: DatasetVersion) -> dict[str, Any]:
    """Counts (diff by sample_id), headline metric shifts, and per-task counts of two versions."""
    diff = diff_versions(ws, a, b) if has_samples(a) and has_samples(b) else {
        "a": a.ref, "b": b.ref, "rows_a": a.rows, "rows_b": b.rows, "removed": None, "added": None, "common": None}
    ma, mb = version_metrics(ws, a), version_metrics(ws, b)
    keys = list(dict.fromkeys(list(ma) + list(mb)))
    shifts = pd.DataFrame([{"metric": k, "a": ma.get(k), "b": mb.get(k),
                            "delta": (mb[k] - ma[k]) if isinstance(ma.get(k), (int, float))
                            and isinstance(mb.get(k), (int, float)) else None} for k in keys])
    return {"diff": diff, "shifts": shifts, "tasks": per_task_counts(a, b)}


def added_removed(a: DatasetVersion, b: DatasetVersion, limit: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Up to `limit` samples only in b (added) and only in a (removed)."""
    def only(x: DatasetVersion, y: DatasetVersion) -> pd.DataFrame:
        cols = set(schema_names(x))
        extra = ", ".join(c for c in ("task", "level", "user_id") if c in cols)
        preview = (f", left(replace(coalesce(answer, ''), chr(10), ' '), {PREVIEW_CHARS}) AS answer_preview"
                   if "answer" in cols else "")
        con = duckdb.connect()
        try:
            return con.execute(f"""SELECT sample_id{', ' + extra if extra else ''}{preview} FROM {_src(x)}
                                   WHERE sample_id NOT IN (SELECT sample_id FROM {_src(y)}) LIMIT {int(limit)}""").df()
        finally:
            con.close()

    if not (has_samples(a) and has_samples(b)):
        return pd.DataFrame(), pd.DataFrame()
    return only(b, a), only(a, b)


# ---------------------------------------------------------------------------------------------- helpers
def _json(v: Any) -> Any:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, (dict, list)):
        return v
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return v


def _first_number(d: dict, keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            return int(v)
    return None
