"""Running a task end to end: resolve options → build → (teacher engine) → parse → ONE new dataset version.

Resume is "run the same command again": the teacher engine's durable cache answers every request that
already completed (zero new requests), and sample ids are deterministic — `stable_id(request_key,
choice_index, variant)` for teacher samples, a hash of (task, template, SID version, variant, key) for
deterministic ones — so a re-run reproduces the same ids and never duplicates a sample.

Several teachers (`teacher=[cfg_a, cfg_b]`) answer the same prompts; every sample names its teacher, and
`prompt_id` does not depend on the teacher, so rejection sampling can compare teachers on one prompt.

Per teacher, the request's token budget is the task's `max_tokens` option when given explicitly, else the
teacher config's `max_tokens`, else the task's default (2048 for chain-of-thought tasks); a JSON task's answer
schema is sent when the teacher supports structured outputs (`TeacherConfig.structured()`). `plan_task` is the
dry run: the same requests, counted and priced (synth/teacher/cost.py), nothing sent or written.

Errors are told apart in each sample's extra["error_kind"]: the engine's kind for a request that failed
(`rate_limit`, `timeout`, …, `truncated` when every choice hit the budget), `truncated` for a choice cut at
the budget, `parse` for an answer that came back whole but does not parse or validate, and `unresolved` for a
blind answer that names no catalog item.
"""
from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from storage.datasets import DatasetVersion, list_versions, same_rows, write_version
from storage.errors import ConfigError, NotFound
from storage.records import SAMPLE_SCHEMA, samples_from_pylist, stable_id
from storage.runs import recorded_run
from storage.sid import extract_sids
from storage.workspace import Workspace
from synth.tasks.base import DETERMINISTIC, Parsed, Prompt, TaskContext, dumps, selected_domains
from synth.tasks.registry import get_task
from synth.tasks.templates import load_template
from synth.teacher.types import ChatRequest, ChatResponse, SamplingParams

log = logging.getLogger(__name__)
PARSE_BATCH = 256

THINK_VARIANTS = {"think": ("think",), "no_think": ("no_think",), "both": ("think", "no_think")}
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
                  "pt": "Portuguese", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ru": "Russian"}


# ---------------------------------------------------------------------------------------------- entry point
def run_task(ws: Workspace, name: str, *, teacher: Any = None, options: dict | None = None,
             dataset: str | None = None, progress: bool = False, executor: str = "local") -> DatasetVersion:
    """Run task `name` and write one new version of `dataset` (default: the task's default dataset,
    'alignment' or 'cot'). `teacher`: a TeacherConfig / dict / YAML path / 'backend:model', or a list of
    them (None = the embedded local model); ignored by deterministic tasks. `executor`: 'local' or 'ray' for
    the parsing stage of teacher tasks (requests scale out through the teacher's servers, SQL tasks through
    DuckDB)."""
    task = get_task(name)
    opts = task.resolve_options(options)
    _check_domains(ws, opts)
    sid_version = _resolve_sid_version(ws, int(opts.get("sid_version") or 0))
    template = load_template(task.template_name, int(opts.get("template_version") or 0) or None,
                             opts.get("language") or "en")
    teachers = _teacher_configs(teacher) if task.kind != DETERMINISTIC else []
    explicit_budget = "max_tokens" in (options or {})
    dataset = dataset or task.default_dataset
    config = {"task": task.name, "level": task.level, "kind": task.kind, "options": opts, "executor": executor,
              "sid_version": sid_version, "template_version": template.ref, "dataset": dataset,
              "teachers": [t.public_dict() for t in teachers]}
    with recorded_run(ws, "synth", config) as run, ws.writer("synth"):
        run_id = run.id
        ctx = TaskContext(ws=ws, task=task, options=opts, sid_version=sid_version, template=template,
                          run_id=run_id, created_at=datetime.now(UTC))
        stats = run.stats
        stats["task"] = task.name
        if task.kind == DETERMINISTIC:
            data, counter = _deterministic_batches(ctx, progress)
        else:
            # the list is the run's own: a run stopped by a teacher (max_cost_usd) keeps what it spent
            stats["teachers"] = engine_stats = []
            rows, counter, _ = _teacher_rows(ctx, teachers, progress, executor, explicit_budget, engine_stats)
            data = samples_from_pylist(rows)
        extra = {"task": task.name, "level": task.level, "kind": task.kind, "sid_version": sid_version,
                 "template_version": template.ref, "teachers": [t.teacher_id for t in teachers] or ["catalog"],
                 "options": opts}
        # An identical re-run (same rows as the latest version, apart from run id and time) writes nothing.
        latest = next(iter(list_versions(ws, dataset)[-1:]), None)
        if latest is not None:
            data = data if isinstance(data, pa.Table) else pa.Table.from_batches(list(data), schema=SAMPLE_SCHEMA)
            if same_rows(latest, data):
                stats.update(summarize(latest))
                stats["unchanged"] = latest.ref
                return latest
        dv = write_version(ws, dataset, data, step=f"synth:{task.name}", config=config, run_id=run_id,
                           parents=list(ctx.parents),
                           schema=SAMPLE_SCHEMA, extra_manifest={"synth": extra})
        stats.update(summarize(dv))
        # the row is closed with these stats, replacing what the engine stored under stats['teacher'] while
        # running (its accounting is kept under 'teachers')
    return dv


def plan_task(ws: Workspace, name: str, *, teacher: Any = None, options: dict | None = None) -> dict[str, Any]:
    """The dry run of `run_task`: build the same prompts and requests, and per teacher count what would be
    sent (cache hits are free), estimate its prompt and completion tokens and its cost (synth/teacher/cost.py).
    Nothing is sent and nothing is written (no run row, no dataset version)."""
    from synth.teacher.cache import TeacherCache
    from synth.teacher.cost import estimate_requests
    from synth.teacher.engine import cache_key

    task = get_task(name)
    opts = task.resolve_options(options)
    _check_domains(ws, opts)
    if task.kind == DETERMINISTIC:
        return {"task": task.name, "kind": task.kind, "teachers": [], "requests": 0,
                "note": "deterministic task: no teacher requests"}
    sid_version = _resolve_sid_version(ws, int(opts.get("sid_version") or 0))
    template = load_template(task.template_name, int(opts.get("template_version") or 0) or None,
                             opts.get("language") or "en")
    teachers = _teacher_configs(teacher)
    ctx = TaskContext(ws=ws, task=task, options=opts, sid_version=sid_version, template=template,
                      run_id="dry-run", created_at=datetime.now(UTC))
    prompts = _prompts(ctx)
    out: dict[str, Any] = {"task": task.name, "kind": task.kind, "template_version": template.ref,
                           "prompts": len(prompts), "teachers": []}
    explicit = "max_tokens" in (options or {})
    for cfg in teachers:
        requests = make_requests(ctx, prompts, cfg, explicit)
        cache = TeacherCache(ws.cache_dir / "teacher", fsync_interval_ms=cfg.fsync_interval_ms)
        try:
            est = estimate_requests(cfg, requests, cache, functools.partial(cache_key, cfg)).as_dict()
        finally:
            cache.close()
        est["max_tokens"] = requests[0].params.max_tokens if requests else token_budget(ctx, cfg, explicit)
        est["structured"] = bool(requests and requests[0].json_schema)
        est["max_cost_usd"] = cfg.max_cost_usd
        est["example"] = requests[0].message_dicts() if requests else None
        out["teachers"].append(est)
    return out


def _check_domains(ws: Workspace, opts: dict[str, Any]) -> None:
    """A `domains` option naming a domain the catalog does not have is a typo, not an empty run."""
    wanted = selected_domains(opts)
    if not wanted:
        return
    known = [r[0] for r in ws.query("SELECT DISTINCT coalesce(domain, 'default') FROM items ORDER BY 1")]
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise ConfigError(f"unknown domain(s) {unknown} in --domain / domains; the catalog's domains are {known}")


def _resolve_sid_version(ws: Workspace, requested: int) -> int:
    from storage.sid_catalog import latest_sid_version

    if requested:
        if not ws.query("SELECT 1 FROM sid_versions WHERE sid_version = ?", [requested]):
            raise NotFound(f"SID version {requested} does not exist in {ws.root}; see `recot sids list`")
        return requested
    v = latest_sid_version(ws)
    if v is None:
        raise NotFound(f"no semantic IDs in workspace {ws.root}; run `recot sids build` before `recot synth`")
    return v


def _teacher_configs(teacher: Any) -> list:
    from synth.teacher.config import TeacherConfig

    items = teacher if isinstance(teacher, (list, tuple)) else [teacher]
    cfgs = [TeacherConfig.coerce(t) for t in items] or [TeacherConfig()]
    ids = [c.teacher_id for c in cfgs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"the same teacher is given twice ({', '.join(ids)}); give each teacher once")
    return cfgs


def summarize(dv: DatasetVersion) -> dict[str, Any]:
    """Rows and error rows of a synth version per teacher and chat variant, and error rows per error kind
    (truncated, parse, unresolved, the engine's transport kinds; for run stats and the CLI)."""
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.execute(f"""SELECT teacher, coalesce(json_extract_string(extra, '$.variant'), '') AS variant,
                                      count(*) AS n, count(error) AS errors
                               FROM {dv.sql} GROUP BY ALL ORDER BY ALL""").fetchall()
        kinds = con.execute(f"""SELECT coalesce(json_extract_string(extra, '$.error_kind'), 'other') AS kind,
                                       count(*) FROM {dv.sql} WHERE error IS NOT NULL
                                GROUP BY ALL ORDER BY 2 DESC, 1""").fetchall()
    finally:
        con.close()
    return {"dataset": dv.ref, "rows": dv.rows, "errors": sum(r[3] for r in rows),
            "errors_by_kind": {k: n for k, n in kinds},
            "by": [{"teacher": r[0], "variant": r[1], "rows": r[2], "errors": r[3]} for r in rows]}


# ---------------------------------------------------------------------------------------------- deterministic
def _deterministic_batches(ctx: TaskContext, progress: bool) -> tuple[Iterator[pa.RecordBatch], Counter]:
    """Stream the task's SQL result from DuckDB as Arrow batches (cast to SAMPLE_SCHEMA) straight into the
    new version: no Python per row, no intermediate file, memory bounded by the batch size. The caller holds
    the writer lock for the job, so the connection stays open only while the version is written."""
    sql = ctx.task.generate(ctx)

    def batches() -> Iterator[pa.RecordBatch]:
        with ctx.ws.reader() as con:
            con.execute("SET TimeZone = 'UTC'")
            if progress:
                from rich.console import Console

                with Console(stderr=True).status(f"{ctx.task.name}: running SQL"):
                    reader = con.sql(sql).to_arrow_reader(65536)
            else:
                reader = con.sql(sql).to_arrow_reader(65536)
            for b in reader:
                if b.num_rows:
                    yield pa.Table.from_batches([b]).cast(SAMPLE_SCHEMA).to_batches()[0]

    return batches(), Counter()


# ---------------------------------------------------------------------------------------------- teacher
def _language_note(ctx: TaskContext) -> str | None:
    lang = (ctx.options.get("language") or "en").lower()
    if lang == "en" or ctx.template.language == lang:
        return None
    return f"Write your reasoning and your answer in {LANGUAGE_NAMES.get(lang, lang)}."


def token_budget(ctx: TaskContext, teacher: Any = None, explicit: bool = False) -> int:
    """max_tokens for `teacher`: the task option when given explicitly, else the teacher config's max_tokens,
    else the task's default."""
    cfg_budget = getattr(teacher, "max_tokens", None)
    if explicit or cfg_budget is None:
        return int(ctx.options["max_tokens"])
    return int(cfg_budget)


def make_requests(ctx: TaskContext, prompts: list[Prompt], teacher: Any = None,
                  explicit_budget: bool = False) -> list[ChatRequest]:
    """One ChatRequest per prompt with the task's sampling options and template version (part of the cache
    key, so a new template version never reuses old answers), for `teacher` (a TeacherConfig: its token budget
    and whether it gets the task's JSON schema; None = the task's own defaults, no schema)."""
    o = ctx.options
    params = SamplingParams(temperature=float(o["temperature"]), n=int(o["n"]), seed=int(o["seed"]),
                            max_tokens=token_budget(ctx, teacher, explicit_budget))
    schema = (ctx.task.answer_schema() if ctx.task.answer_schema is not None and teacher is not None
              and teacher.structured() else None)
    note = _language_note(ctx)
    out = []
    for p in prompts:
        msgs = [dict(m) for m in p.teacher_messages]
        if note:
            if msgs and msgs[0]["role"] == "system":
                msgs[0]["content"] = msgs[0]["content"] + " " + note
            else:
                msgs.insert(0, {"role": "system", "content": note})
        out.append(ChatRequest.from_messages(msgs, params, json_schema=schema, template_version=ctx.template.ref,
                                             meta={"prompt_id": p.prompt_id}))
    return out


def _prompts(ctx: TaskContext) -> list[Prompt]:
    prompts = ctx.task.build(ctx)
    domains = selected_domains(ctx.options)
    if domains:   # history tasks already chose users by target domain; item tasks are filtered here
        prompts = [p for p in prompts if (p.domain or "default") in domains]
    limit = int(ctx.options.get("limit") or 0)
    return prompts[:limit] if limit else prompts


def _teacher_rows(ctx: TaskContext, teachers: list, progress: bool, executor: str = "local",
                  explicit_budget: bool = False,
                  engine_stats: list[dict] | None = None) -> tuple[list[dict], Counter, list[dict]]:
    """Sample rows from every teacher. Each engine's accounting is appended to `engine_stats` even when its
    run stops (BudgetExceeded, a setup error), so the failed run row still says what was spent."""
    from synth.teacher.engine import make_engine

    prompts = _prompts(ctx)
    rows: list[dict] = []
    counter: Counter = Counter()
    engine_stats = [] if engine_stats is None else engine_stats
    for cfg in teachers:
        requests = make_requests(ctx, prompts, cfg, explicit_budget)
        engine = make_engine(cfg, ctx.ws, ctx.run_id)
        try:
            responses = engine.run(requests, progress=progress) if requests else []
        finally:
            engine_stats.append(engine.stats)
            engine.close()
        parsed = _parse_responses(ctx, prompts, responses, executor)
        for r in parsed:
            counter["errors" if r["error"] else "ok"] += 1
        rows.extend(parsed)
    return rows, counter, engine_stats


def _parse_responses(ctx: TaskContext, prompts: list, responses: list, executor: str) -> list[dict]:
    """Responses → sample rows: in-process, or as a Ray Data stage over batches of prompts (`--executor ray`).
    Parsing is a pure function of (prompt, response) (and the task's resolver, made once here from the
    catalog), so both give the same rows in the same order."""
    resolve = ctx.task.resolver(ctx) if ctx.task.resolver is not None and prompts else None
    if executor == "local" or not prompts:
        return [r for p, resp in zip(prompts, responses) for r in response_rows(ctx, p, resp, resolve)]
    from storage.executor import map_batches

    index = pa.table({"i": pa.array(range(len(prompts)), pa.int64())})
    fn = functools.partial(parse_batch, ctx, prompts, responses, resolve=resolve)
    return map_batches(index, fn, executor=executor, batch_size=PARSE_BATCH).to_pylist()


def parse_batch(ctx: TaskContext, prompts: list, responses: list, batch: pa.Table, resolve: Any = None) -> pa.Table:
    """The sample rows of the prompts at positions `batch['i']` (runs in a Ray worker)."""
    rows = [r for i in batch.column("i").to_pylist()
            for r in response_rows(ctx, prompts[i], responses[i], resolve)]
    return samples_from_pylist(rows)


def _variants(ctx: TaskContext) -> tuple[str, ...]:
    if not ctx.task.cot:
        return ("plain",)
    v = ctx.options.get("think", "think")
    if v not in THINK_VARIANTS:
        raise ConfigError(f"option think must be one of {', '.join(THINK_VARIANTS)}, got {v!r}")
    return THINK_VARIANTS[v]


def student_messages(user: str, variant: str, parsed: Parsed | None, raw: str | None) -> list[dict[str, str]]:
    """The stored chat. Qwen3 convention: the user turn ends with the soft switch ' /think' or ' /no_think';
    the assistant turn is '<think>\\n{reasoning}\\n</think>\\n\\n{answer}' for /think and
    '<think>\\n\\n</think>\\n\\n{answer}' (an empty think block) for /no_think. Unparseable answers keep the
    raw teacher text as the assistant turn so reviewers see what came back."""
    if variant == "think":
        u = user + " /think"
    elif variant == "no_think":
        u = user + " /no_think"
    else:
        u = user
    msgs = [{"role": "user", "content": u}]
    if parsed is None:                               # teacher error: no completion at all
        return msgs
    if parsed.error or parsed.answer is None:
        if raw is not None:
            msgs.append({"role": "assistant", "content": raw})
        return msgs
    if variant == "think":
        a = f"<think>\n{parsed.reasoning or ''}\n</think>\n\n{parsed.answer}"
    elif variant == "no_think":
        a = f"<think>\n\n</think>\n\n{parsed.answer}"
    else:
        a = parsed.answer
    msgs.append({"role": "assistant", "content": a})
    return msgs


def response_rows(ctx: TaskContext, p: Prompt, resp: ChatResponse, resolve: Any = None) -> list[dict]:
    """Sample rows for one teacher response: one per choice and chat variant; an engine error (retries
    exhausted) becomes one row with `error` set, never a lost prompt. `resolve(prompt, parsed)` (the task's
    resolver, blind R3) maps a parsed answer onto the catalog before validation."""
    task = ctx.task
    variants = _variants(ctx)
    base = {
        "prompt_id": p.prompt_id, "task": task.name, "level": task.level, "mode": p.mode, "domain": p.domain,
        "user_id": p.user_id, "history_item_ids": p.history_item_ids, "target_item_ids": p.target_item_ids,
        "target_sids": p.target_sids, "reference": dumps(p.reference), "teacher": resp.teacher,
        "template_version": ctx.template.ref, "request_key": resp.key, "run_id": ctx.run_id,
        "sid_version": ctx.sid_version, "created_at": ctx.created_at,
    }
    rows = []
    if not resp.ok:
        v = variants[0]
        rows.append({**base, "sample_id": stable_id(resp.key, 0, v), "think": v == "think",
                     "messages": student_messages(p.student_user, v, None, None),
                     "answer_sids": [], "extra": dumps({**p.extra, "variant": v, "choice": 0,
                                                        "error_kind": resp.error_kind}),
                     "error": f"teacher error ({resp.error_kind}): {resp.error}"})
        return rows
    reasons = list(resp.finish_reasons) + ["stop"] * (len(resp.choices) - len(resp.finish_reasons))
    for i, (text, fin) in enumerate(zip(resp.choices, reasons)):
        resolved_error = False
        try:
            parsed = task.parse(p, text, fin)
            if resolve is not None and parsed.error is None:
                resolve(p, parsed)
                resolved_error = parsed.error is not None
            if task.validate is not None and parsed.error is None:
                parsed.error = task.validate(p, parsed)
        except Exception as exc:  # noqa: BLE001 — a parser bug must not lose the run; keep the row
            log.warning("parser of %s failed on one answer", task.name, exc_info=True)
            parsed = Parsed(None, None, error=f"parser failed: {type(exc).__name__}: {exc}")
        for v in variants:
            extra = {**p.extra, **parsed.extra, "variant": v, "choice": i, "finish_reason": fin}
            if parsed.error:
                extra["raw"] = text
                extra["error_kind"] = ("truncated" if fin == "length" else "unresolved" if resolved_error
                                       else "parse")
            rows.append({**base, "sample_id": stable_id(resp.key, i, v), "think": v == "think",
                         "messages": student_messages(p.student_user, v, parsed, text),
                         "reasoning": parsed.reasoning if v == "think" else None,
                         "answer": parsed.answer, "answer_sids": extract_sids(parsed.answer),
                         "extra": dumps(extra), "error": parsed.error})
    return rows


def prompt_id_of(ctx: TaskContext, teacher_messages: list[dict], student_user: str, *keys: Any) -> str:
    """Teacher-independent id of a prompt (what the teacher sees + what the student sees + keys)."""
    return stable_id(ctx.task.name, ctx.template.ref, ctx.sid_version,
                     [[m["role"], m["content"]] for m in teacher_messages], student_user, *keys)
