"""Push a sample of a curated dataset version to Argilla for human review, through the `argilla` SDK.

What an annotator sees per record (one sample): the user history as titles with their SIDs, the teacher's
reasoning, its answer (with the SIDs it named resolved to titles) and the target; questions: overall rating
(1–5), correct yes/no, issue labels and an optional corrected answer. The curation filters' and the judge's
opinions come as *suggestions* (pre-filled, with agent = filter name and a score), and each filter's
verdict is a metadata property so annotators can slice by it. A dropping filter suggests the issue label
its class declares (`Filter.review_label`, see filter_kinds).

Resumable by construction: Argilla record ids (`rg.Record(id=...)`, `external_id` on the server) are recot
sample ids and the server has a unique (dataset, external_id) constraint, so a push first lists the ids
already there and sends only the rest, in batches; a push killed at any point and run again ends with every
record exactly once. Selection is deterministic for a given (dataset version, strategy, size, seed), so the
re-run picks the same samples.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from curation.review.client import DatasetGone, argilla_client, ensure_workspace, find_dataset, is_published, record_ids
from curation.review.filter_kinds import FilterKinds, filter_kinds
from curation.review.stack import Connection, connect, ping
from storage.datasets import DatasetVersion, resolve
from storage.errors import ConfigError, NotFound, RecotError
from storage.runs import recorded_run
from storage.sid import CODE_TOKEN_PATTERN, SID_BEGIN, SID_END
from storage.workspace import Workspace

if TYPE_CHECKING:
    import argilla as rg

log = logging.getLogger(__name__)

ARGILLA_WORKSPACE = "recot"
STRATEGIES = ("stratified", "uncertain", "random")
ISSUE_LABELS = ("hallucinated_item", "leaked_target", "wrong_logic", "format", "other")
TEXT_FIELDS = ("history", "reasoning", "answer", "target")
TERMS = ("level", "task", "teacher", "mode")

GUIDELINES = (
    "Each record is one synthetic reasoning trace for a recommendation task. Read the user's history "
    "(titles with their semantic IDs), the reasoning and the answer, and compare with the target. "
    "Rate the overall quality (1 = useless, 5 = a trace you would train on), say whether the answer is "
    "correct/acceptable, tick the issues you see, and optionally write a corrected answer. The pre-filled "
    "suggestions come from the automatic filters and the LLM judge (agent = filter name): check them, do not "
    "trust them. Discard a record only when you cannot judge it. Angle brackets are shown as \u2039 \u203a so "
    "that semantic IDs display exactly as written.")


# ---------------------------------------------------------------------------------------------- helpers
def argilla_dataset_name(dv: DatasetVersion) -> str:
    """One Argilla dataset per curated version: `<name>-v<N>`."""
    return f"{dv.name}-v{dv.version}"


def metadata_name(filter_name: str) -> str:
    """Filter names become metadata property names (lowercase letters, digits, '_')."""
    return "verdict_" + re.sub(r"[^a-z0-9_]+", "_", filter_name.lower()).strip("_")


def judge_rating(score: float | None) -> int | None:
    """A judge score on any of the usual scales (0–1, 1–5, 0–10) as a 1–5 rating."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return None
    s = float(score)
    if 0.0 <= s <= 1.0:
        r = 1 + 4 * s
    elif s <= 5.0:
        r = s
    else:
        r = s / 2.0
    return int(min(5, max(1, math.floor(r + 0.5))))  # half up: 0.5 → 3, 9/10 → 5


def _unit(score: float | None) -> float | None:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return None
    return float(score) if 0.0 <= float(score) <= 1.0 else None


def review_settings(client: rg.Argilla, filters: list[str], terms: dict[str, list[str]]) -> rg.Settings:
    """Fields, questions and metadata properties of a review dataset (one record per sample, one response
    per annotator: overlap distribution with min_submitted = 1)."""
    import argilla as rg

    # markdown fields: the text is escaped for markdown (display_text) and SIDs are code spans, so they show,
    # and copy, exactly as written
    fields = [rg.TextField(name="history", title="User history (titles [SID])", required=True, use_markdown=True,
                           client=client),
              rg.TextField(name="reasoning", title="Reasoning", required=False, use_markdown=True, client=client),
              rg.TextField(name="answer", title="Answer", required=True, use_markdown=True, client=client),
              rg.TextField(name="target", title="Target", required=False, use_markdown=True, client=client)]
    questions = [
        rg.RatingQuestion(name="rating", title="Overall quality (1 = useless, 5 = train on it)",
                          values=[1, 2, 3, 4, 5], required=True, client=client),
        rg.LabelQuestion(name="correct", title="Is the answer correct / acceptable?",
                         labels={"yes": "yes", "no": "no"}, required=True, client=client),
        rg.MultiLabelQuestion(name="issues", title="Issues", required=False, client=client,
                              labels={v: v.replace("_", " ") for v in ISSUE_LABELS}),
        rg.TextQuestion(name="corrected_answer", title="Corrected answer (optional)", required=False, client=client),
    ]
    metadata = [rg.TermsMetadataProperty(name=k, title=k, options=sorted(v) or ["unknown"], client=client)
                for k, v in terms.items()]
    metadata += [rg.TermsMetadataProperty(name=metadata_name(f), title=f"verdict: {f}", options=["keep", "drop"],
                                          client=client) for f in filters]
    return rg.Settings(guidelines=GUIDELINES, fields=fields, questions=questions, metadata=metadata,
                       allow_extra_metadata=False, distribution=rg.TaskDistribution(min_submitted=1))


# ---------------------------------------------------------------------------------------------- selection
def _sample_sql(dv: DatasetVersion) -> str:
    return dv.sql


def select_samples(ws: Workspace, dv: DatasetVersion, size: int, strategy: str, seed: int = 0) -> list[str]:
    """Sample ids to review, deterministic for (version, size, strategy, seed).

    stratified: proportional allocation over level × task × keep (largest remainder, at least one per
      stratum while the size allows), random within a stratum;
    uncertain: samples where the filters disagree with each other or the judge's score lies near its
      decision boundary come first;
    random: a seeded uniform sample."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if size <= 0:
        raise ConfigError(f"--size must be positive (got {size})")
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TEMP TABLE s AS SELECT sample_id, level, task, keep, "
                    f"hash(sample_id || '#' || {int(seed)}) AS h FROM {_sample_sql(dv)}")
        if strategy == "random":
            rows = con.execute("SELECT sample_id FROM s ORDER BY h, sample_id LIMIT ?", [size]).fetchall()
        elif strategy == "stratified":
            rows = _select_stratified(con, size)
        else:
            rows = _select_uncertain(con, ws, dv, size)
        return [r[0] for r in rows]
    finally:
        con.close()


def _select_stratified(con: duckdb.DuckDBPyConnection, size: int) -> list[tuple[Any, ...]]:
    strata = con.execute("SELECT level, task, keep, count(*) FROM s GROUP BY ALL ORDER BY ALL").fetchall()
    quotas = _allocate([c for *_, c in strata], size)
    con.execute("CREATE TEMP TABLE q (level VARCHAR, task VARCHAR, keep BOOLEAN, quota INTEGER)")
    con.executemany("INSERT INTO q VALUES (?, ?, ?, ?)", [[lv, t, k, n] for (lv, t, k, _), n in zip(strata, quotas)])
    return con.execute("""
        SELECT sample_id FROM (
            SELECT s.sample_id, s.h, q.quota,
                   row_number() OVER (PARTITION BY s.level, s.task, s.keep ORDER BY s.h, s.sample_id) AS rn
            FROM s JOIN q ON s.level IS NOT DISTINCT FROM q.level AND s.task IS NOT DISTINCT FROM q.task
                         AND s.keep IS NOT DISTINCT FROM q.keep)
        WHERE rn <= quota ORDER BY h, sample_id""").fetchall()


def _select_uncertain(con: duckdb.DuckDBPyConnection, ws: Workspace, dv: DatasetVersion,
                      size: int) -> list[tuple[Any, ...]]:
    """Filters' disagreement (share of the minority verdict) + closeness of the judge's score to the middle
    of its scale; the judge is whichever label the funnel says is a judge filter."""
    v = ws.query("SELECT sample_id, filter, keep, score FROM verdicts WHERE dataset = ? AND version = ?",
                 [dv.name, dv.version])
    kinds = filter_kinds(ws, dv)
    con.execute("CREATE TEMP TABLE v (sample_id VARCHAR, filter VARCHAR, keep BOOLEAN, score DOUBLE)")
    if v:
        con.executemany("INSERT INTO v VALUES (?, ?, ?, ?)", [list(r) for r in v])
    judges = sorted({r[1] for r in v if kinds.is_judge(r[1])}) or [""]
    return con.execute("""
        WITH agg AS (
            SELECT sample_id,
                   count(*) AS n, sum(CASE WHEN keep THEN 0 ELSE 1 END) AS drops,
                   max(CASE WHEN list_contains(?::VARCHAR[], filter) THEN score END) AS judge
            FROM v GROUP BY sample_id),
        u AS (
            SELECT s.sample_id, s.h,
                   coalesce(least(agg.drops, agg.n - agg.drops) / nullif(agg.n, 0), 0) AS disagreement,
                   CASE WHEN agg.judge IS NULL THEN 0
                        WHEN agg.judge BETWEEN 0 AND 1 THEN 1 - 2 * abs(agg.judge - 0.5)
                        WHEN agg.judge <= 5 THEN 1 - abs(agg.judge - 3) / 2
                        ELSE 1 - abs(agg.judge - 5) / 5 END AS near_boundary
            FROM s LEFT JOIN agg USING (sample_id))
        SELECT sample_id FROM u ORDER BY disagreement + near_boundary DESC, h, sample_id LIMIT ?""",
                       [judges, size]).fetchall()


def _allocate(counts: list[int], size: int) -> list[int]:
    """Split `size` over strata proportionally to `counts`: every stratum gets one while the size allows,
    then each next slot goes to the stratum furthest below its proportional share (never above its count)."""
    total = sum(counts)
    if total <= size:
        return list(counts)
    quotas = [0] * len(counts)
    if size < sum(1 for c in counts if c):  # fewer slots than strata: the largest strata get one each
        for i in sorted(range(len(counts)), key=lambda i: -counts[i])[:size]:
            quotas[i] = 1
        return quotas
    quotas = [1 if c else 0 for c in counts]
    ideal = [size * c / total for c in counts]
    for _ in range(size - sum(quotas)):
        i = max((i for i in range(len(counts)) if quotas[i] < counts[i]),
                key=lambda i: (ideal[i] - quotas[i], counts[i]))
        quotas[i] += 1
    return quotas


# ---------------------------------------------------------------------------------------------- rendering
@dataclass
class _Catalog:
    """Titles and SIDs for rendering, from helper 2's SidCatalog (per SID version) or items only."""

    ws: Workspace
    _cats: dict[Any, Any] = field(default_factory=dict)
    _titles: dict[str, str] | None = None

    def titles(self) -> dict[str, str]:
        if self._titles is None:
            self._titles = {str(i): t for i, t in self.ws.query("SELECT item_id, title FROM items")}
        return self._titles

    def cat(self, sid_version: int | None) -> Any:
        if sid_version not in self._cats:
            from storage.sid_catalog import SidCatalog

            try:
                self._cats[sid_version] = SidCatalog.load(self.ws, None if sid_version is None else int(sid_version))
            except NotFound:
                self._cats[sid_version] = None
        return self._cats[sid_version]

    def item_line(self, item_id: str, sid_version: int | None) -> str:
        c = self.cat(sid_version)
        sid = c.item_to_sid.get(str(item_id)) if c else None
        title = self.titles().get(str(item_id)) or f"item {item_id}"
        return f"{title} {sid or '[no SID]'}"

    def sid_line(self, sid: str, sid_version: int | None) -> str:
        c = self.cat(sid_version)
        item = c.get_item(sid) if c else None
        if item is None:
            return f"{sid} → (not in the catalog)"
        return f"{sid} → {self.titles().get(item) or 'item ' + item}"


# A whole SID, or a stray SID-like token (`<s_a_12>`, `<|sid_end|>`), possibly malformed.
_SID_RUN = re.compile(rf"(?:{re.escape(SID_BEGIN)}|{CODE_TOKEN_PATTERN}|{re.escape(SID_END)})+")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def display_text(text: str) -> str:
    """Model text as Argilla markdown that renders to exactly `text`. Argilla's UI drops anything that looks
    like an HTML tag, and SID tokens (`<s_a_12>`) look like tags — so each SID (run of SID tokens) becomes a
    code span, which shows and copies as the real SID; everywhere else markdown syntax is backslash-escaped,
    `& < >` become entities (model text is never HTML) and line breaks are hard breaks."""
    out = []
    pos = 0
    for m in _SID_RUN.finditer(text):
        out.append(_md_escape(text[pos:m.start()]))
        out.append(f"`{m.group(0)}`")
        pos = m.end()
    out.append(_md_escape(text[pos:]))
    return "".join(out)


def _md_escape(text: str) -> str:
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\n", "  \n")


def render_fields(row: dict[str, Any], cat: _Catalog) -> dict[str, str]:
    sv = row.get("sid_version")
    hist = row.get("history_item_ids") or []
    history = "\n".join(f"{i + 1}. {cat.item_line(it, sv)}" for i, it in enumerate(hist)) or "(no history)"
    answer = row.get("answer") or "(empty answer)"
    if row.get("answer_sids"):
        answer += "\n\n— SIDs named in the answer —\n" + "\n".join(cat.sid_line(s, sv) for s in row["answer_sids"])
    targets = [cat.item_line(t, sv) for t in (row.get("target_item_ids") or [])]
    if not targets and row.get("target_sids"):
        targets = [cat.sid_line(s, sv) for s in row["target_sids"]]
    reasoning = row.get("reasoning") or "(no reasoning)"
    if row.get("error"):
        reasoning += f"\n\n[parse error: {row['error']}]"
    fields = {"history": history, "reasoning": reasoning, "answer": answer, "target": "\n".join(targets) or "(none)"}
    return {k: display_text(v) for k, v in fields.items()}


def _suggestions(row: dict[str, Any], verdicts: list[dict[str, Any]], kinds: FilterKinds) -> list[rg.Suggestion]:
    """The filters' and the judge's opinions: `correct` (the curation decision, scored by the share of
    filters agreeing with it), `issues` (each dropping filter's review label) and `rating` (the judge)."""
    import argilla as rg

    drops = [v for v in verdicts if not v["keep"]]
    keep = bool(row.get("keep")) if row.get("keep") is not None else not drops
    agreeing = [v for v in verdicts if bool(v["keep"]) == keep]
    dropped_by = "/".join(sorted(v["filter"] for v in drops))[:200]
    out = [rg.Suggestion("correct", "yes" if keep else "no", type="model",
                         agent=dropped_by if not keep and drops else "curation",
                         score=round(len(agreeing) / len(verdicts), 4) if verdicts else None)]
    if drops:
        labels: dict[str, float | None] = {}
        for v in drops:
            lab = kinds.issue_label(v["filter"])
            labels[lab] = _unit(v.get("score")) if labels.get(lab) is None else labels[lab]
        values = sorted(labels)
        scores = [labels[v] for v in values]
        out.append(rg.Suggestion("issues", values, type="model", agent=dropped_by,
                                 score=scores if all(s is not None for s in scores) else None))
    judges = [v for v in verdicts if kinds.is_judge(v["filter"])]
    if judges and judge_rating(judges[0].get("score")) is not None:
        j = judges[0]
        out.append(rg.Suggestion("rating", judge_rating(j["score"]), type="model", agent=j["filter"],
                                 score=_unit(j["score"])))
    return out


def build_record(row: dict[str, Any], verdicts: list[dict[str, Any]], cat: _Catalog, filters: list[str],
                 kinds: FilterKinds) -> rg.Record:
    """The Argilla record of one sample (id = sample id): fields, metadata (incl. one verdict per filter)
    and the filters' and judge's suggestions."""
    import argilla as rg

    by_filter = {v["filter"]: v for v in verdicts}
    metadata = {k: (row.get(k) or "unknown") for k in TERMS}
    for f in filters:
        if f in by_filter:
            metadata[metadata_name(f)] = "keep" if by_filter[f]["keep"] else "drop"
    return rg.Record(id=row["sample_id"], fields=render_fields(row, cat), metadata=metadata,
                     suggestions=_suggestions(row, verdicts, kinds))


# ---------------------------------------------------------------------------------------------- push
@dataclass
class PushResult:
    dataset: str
    argilla_dataset: str
    url: str
    selected: int
    already_there: int
    sent: int
    batches: int
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _load_rows(dv: DatasetVersion, ids: list[str]) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        con.execute("CREATE TEMP TABLE ids (sample_id VARCHAR)")
        con.executemany("INSERT INTO ids VALUES (?)", [[i] for i in ids])
        df = con.sql(f"SELECT t.* FROM {_sample_sql(dv)} t JOIN ids USING (sample_id)").to_arrow_table()
    finally:
        con.close()
    by_id = {r["sample_id"]: r for r in df.to_pylist()}
    return [by_id[i] for i in ids if i in by_id]


def _verdicts(ws: Workspace, dv: DatasetVersion) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    rows = ws.query("SELECT sample_id, filter, keep, reason, score FROM verdicts WHERE dataset = ? AND version = ? "
                    "ORDER BY sample_id, filter", [dv.name, dv.version])
    out: dict[str, list[dict[str, Any]]] = {}
    for sid, f, k, reason, score in rows:
        out.setdefault(sid, []).append({"filter": f, "keep": bool(k), "reason": reason, "score": score})
    filters = sorted({r[1] for r in rows})
    return filters, out


def _terms(dv: DatasetVersion) -> dict[str, list[str]]:
    con = duckdb.connect()
    try:
        return {c: [r[0] or "unknown" for r in con.execute(
            f"SELECT DISTINCT {c} FROM {_sample_sql(dv)} ORDER BY 1").fetchall()] for c in TERMS}
    finally:
        con.close()


def ensure_review_dataset(client: rg.Argilla, ws: Workspace, dv: DatasetVersion) -> rg.Dataset:
    """The published Argilla dataset of `dv`, created (settings, then published) when missing."""
    import argilla as rg

    name = argilla_dataset_name(dv)
    ds = find_dataset(client, ARGILLA_WORKSPACE, name)
    if ds is not None and not is_published(ds):
        # a draft left by a push killed while the SDK created it: the server accepts records only in a
        # published dataset, so a draft holds none and is simply made again
        log.info("Argilla dataset %s is an unfinished draft: recreating it", name)
        ds.delete()
        ds = None
    if ds is None:
        w = ensure_workspace(client, ARGILLA_WORKSPACE)
        filters, _ = _verdicts(ws, dv)
        ds = rg.Dataset(name=name, workspace=w, settings=review_settings(client, filters, _terms(dv)),
                        client=client).create()
    return ds


def _curated(ws: Workspace, dataset_ref: str, batch_size: int) -> DatasetVersion:
    dv = resolve(ws, dataset_ref)
    if "keep" not in {f["name"] for f in dv.manifest.get("schema", [])}:
        raise RecotError(f"{dv.ref} is not a curated dataset (no 'keep' column); push the output of "
                         "`recot curate run` (a curated version)")
    if batch_size < 1 or batch_size > 500:
        raise ConfigError(f"--batch-size must be between 1 and 500 (got {batch_size})")
    return dv


def _send(ws: Workspace, dv: DatasetVersion, ds: rg.Dataset, todo: list[str], batch_size: int) -> None:
    """Render the samples `todo` and log them into `ds`; the SDK sends them `batch_size` at a time (and draws
    its own progress bar), so the records of every finished batch are on the server even if this dies."""
    if not todo:
        return
    filters, verdicts = _verdicts(ws, dv)
    kinds, cat = filter_kinds(ws, dv), _Catalog(ws)
    records = [build_record(r, verdicts.get(r["sample_id"], []), cat, filters, kinds) for r in _load_rows(dv, todo)]
    ds.records.log(records, batch_size=min(batch_size, len(records)))  # the SDK warns about a larger one


def push(ws: Workspace, dataset_ref: str, *, size: int = 100, strategy: str = "stratified", seed: int = 0,
         batch_size: int = 64, conn: Connection | None = None) -> PushResult:
    """Push `size` samples of curated version `dataset_ref` to Argilla; only records not yet on the server
    are sent."""
    dv = _curated(ws, dataset_ref, batch_size)
    conn = conn or connect(ws, check=False)
    ping(conn)  # fail before touching the catalog when the server is down or the key is wrong
    ids = select_samples(ws, dv, size, strategy, seed)
    name = argilla_dataset_name(dv)
    config = {"dataset": dv.ref, "argilla_dataset": name, "url": conn.url, "size": size, "strategy": strategy,
              "seed": seed}
    with recorded_run(ws, "review_push", config) as run, argilla_client(conn, f"push to {name}") as client:
        ds = ensure_review_dataset(client, ws, dv)
        existing = record_ids(ds)
        todo = [i for i in ids if i not in existing]
        log.info("push %s → %s: %d selected, %d already there, %d to send", dv.ref, name, len(ids),
                 len(ids) - len(todo), len(todo))
        run.stats = {"selected": len(ids), "already_there": len(ids) - len(todo), "to_send": len(todo)}
        _send(ws, dv, ds, todo, batch_size)
        result = PushResult(dataset=dv.ref, argilla_dataset=name, url=conn.url, selected=len(ids),
                            already_there=len(ids) - len(todo), sent=len(todo),
                            batches=math.ceil(len(todo) / batch_size), run_id=run.id)
        run.stats = result.as_dict()
    return result


def pushed_datasets(ws: Workspace) -> list[dict[str, Any]]:
    """Argilla datasets this workspace pushed to (from its review_push runs), newest first, one per name."""
    rows = ws.query("SELECT config, started_at FROM runs WHERE kind = 'review_push' ORDER BY started_at DESC")
    seen, out = set(), []
    for cfg, _ in rows:
        c = json.loads(cfg) if isinstance(cfg, str) else cfg
        if c and c.get("argilla_dataset") not in seen:
            seen.add(c["argilla_dataset"])
            out.append(c)
    return out


__all__ = ["push", "select_samples", "PushResult", "argilla_dataset_name", "pushed_datasets", "DatasetGone",
           "ISSUE_LABELS", "ensure_review_dataset", "review_settings", "build_record"]
