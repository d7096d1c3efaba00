"""SQL building blocks shared by the deterministic tasks: the catalog joined with one SID version, the TRAIN
part of the splits, and the wrapper that turns a task's (key, user text, assistant text, …) rows into full
SAMPLE_SCHEMA rows — ids, messages, parsed SIDs — inside DuckDB, so no Python touches a row.
"""
from __future__ import annotations

from storage.sid import SID_SQL_PATTERN
from synth.tasks.base import TaskContext, selected_domains
from synth.tasks.templates import sql_str

SAMPLE_COLUMN_TYPES = {
    "sample_id": "VARCHAR", "prompt_id": "VARCHAR", "task": "VARCHAR", "level": "VARCHAR", "mode": "VARCHAR",
    "think": "BOOLEAN", "domain": "VARCHAR", "user_id": "VARCHAR", "history_item_ids": "VARCHAR[]",
    "target_item_ids": "VARCHAR[]", "target_sids": "VARCHAR[]",
    "messages": "STRUCT(role VARCHAR, content VARCHAR)[]", "reasoning": "VARCHAR", "answer": "VARCHAR",
    "answer_sids": "VARCHAR[]", "reference": "VARCHAR", "extra": "VARCHAR", "teacher": "VARCHAR",
    "template_version": "VARCHAR", "request_key": "VARCHAR", "run_id": "VARCHAR", "sid_version": "INTEGER",
    "error": "VARCHAR", "created_at": "TIMESTAMPTZ",
}


def catalog_cte(ctx: TaskContext) -> str:
    """`cat`: every item that has a SID in the context's SID version, with a display SID and an `about`
    text (the description, else "Categories: A, B")."""
    v = int(ctx.sid_version)
    return f"""cat AS (
        SELECT i.item_id, i.title, i.description, coalesce(i.categories, []::VARCHAR[]) AS categories,
               i.attributes, i.domain, s.sid, s.codes,
               CASE WHEN i.description IS NOT NULL AND trim(i.description) <> '' THEN trim(i.description)
                    WHEN len(coalesce(i.categories, []::VARCHAR[])) > 0
                         THEN 'Categories: ' || array_to_string(i.categories, ', ') || '.'
                    ELSE NULL END AS about
        FROM items i JOIN item_sids s ON s.item_id = i.item_id AND s.sid_version = {v}
    )"""


def train_cte(ctx: TaskContext) -> str:
    """`tr`: TRAIN interactions of items with a SID, with k = 0-based rank inside the user's train part."""
    return """tr AS (
        SELECT sp.user_id, sp.item_id, sp.ts, sp.domain, c.sid, c.title, c.categories,
               (row_number() OVER (PARTITION BY sp.user_id ORDER BY sp.position, sp.ts, sp.item_id) - 1)::INTEGER AS k
        FROM splits sp JOIN cat c ON c.item_id = sp.item_id
        WHERE sp.split = 'train'
    )"""


def hash_order(ctx: TaskContext, *exprs: str) -> str:
    """A deterministic pseudo-random order key seeded by the task seed."""
    return f"hash(concat_ws('|', {ctx.seed}, {', '.join(exprs)}))"


def samples_select(ctx: TaskContext, body: str, *, ctes: list[str]) -> str:
    """Wrap `body` — a SELECT with columns variant, key, user_text, assistant_text and optionally user_id,
    domain, history_item_ids, target_item_ids, target_sids, extra — into a query returning SAMPLE_SCHEMA
    columns. sample_id = sha256(task | template | sid version | variant | key), so re-running gives the
    same ids; one sample per prompt (prompt_id = sample_id)."""
    t = ctx.task
    created = ctx.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    limit = int(ctx.options.get("limit") or 0)
    order = f"ORDER BY {hash_order(ctx, 'variant', 'key')}, variant, key" if limit else ""
    lim = f"LIMIT {limit}" if limit else ""
    domains = selected_domains(ctx.options)
    where = (f"WHERE coalesce(domain, 'default') IN ({', '.join(sql_str(d) for d in domains)})" if domains else "")
    sid_id = (f"substr(sha256(concat_ws('|', {sql_str(t.name)}, {sql_str(ctx.template.ref)}, "
              f"'{int(ctx.sid_version)}', variant, key)), 1, 20)")
    return f"""
    WITH {', '.join(ctes)},
    body AS ({body}),
    b AS (SELECT *, {sid_id} AS _id FROM (SELECT * FROM body {where} {order} {lim}))
    SELECT b._id AS sample_id,
           b._id AS prompt_id,
           {sql_str(t.name)} AS task,
           {sql_str(t.level)} AS level,
           'none' AS mode,
           false AS think,
           b.domain::VARCHAR AS domain,
           b.user_id::VARCHAR AS user_id,
           b.history_item_ids::VARCHAR[] AS history_item_ids,
           b.target_item_ids::VARCHAR[] AS target_item_ids,
           b.target_sids::VARCHAR[] AS target_sids,
           [{{'role': 'user', 'content': b.user_text}}, {{'role': 'assistant', 'content': b.assistant_text}}]
               ::STRUCT(role VARCHAR, content VARCHAR)[] AS messages,
           NULL::VARCHAR AS reasoning,
           b.assistant_text AS answer,
           regexp_extract_all(b.assistant_text, '{SID_SQL_PATTERN}') AS answer_sids,
           NULL::VARCHAR AS reference,
           json_merge_patch(to_json({{'variant': b.variant}}), coalesce(b.extra::JSON, '{{}}'::JSON))::VARCHAR AS extra,
           'catalog' AS teacher,
           {sql_str(ctx.template.ref)} AS template_version,
           NULL::VARCHAR AS request_key,
           {sql_str(ctx.run_id)} AS run_id,
           {int(ctx.sid_version)}::INTEGER AS sid_version,
           NULL::VARCHAR AS error,
           TIMESTAMPTZ '{created}+00' AS created_at
    FROM b
    """


def fill(columns: dict[str, str]) -> str:
    """`body` helper: a SELECT list giving NULLs of the right type for optional columns not provided."""
    optional = {"user_id": "VARCHAR", "domain": "VARCHAR", "history_item_ids": "VARCHAR[]",
                "target_item_ids": "VARCHAR[]", "target_sids": "VARCHAR[]", "extra": "VARCHAR"}
    out = dict(columns)
    for k, typ in optional.items():
        out.setdefault(k, f"NULL::{typ}")
    return ", ".join(f"{expr} AS {name}" for name, expr in out.items())
