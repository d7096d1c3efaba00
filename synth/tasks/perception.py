"""R0 perception: what an item is.

- r0_item_qa (deterministic): "Which categories does <sid> belong to?" and one question per short scalar
  attribute (e.g. year, release_date; URLs and long values skipped) — answered from the catalog;
- r0_grounding (deterministic): a description -> the item's SID. Descriptions come from the catalog (items
  whose description identifies exactly one item) or, with `source=auto` on a catalog without descriptions, from
  the newest dataset holding error-free teacher descriptions (r0_understand / align_item_narrative); that
  dataset version is recorded as the new version's parent. Teacher descriptions can hold invented facts, so
  those samples carry extra["verified"] = false (catalog ones true): filter on it, curate them with the judge
  chain, or refuse them with `--option allow_unverified=false`;
- r0_understand (teacher CoT): the teacher sees SID + title + categories + facts and explains what the item
  is; the stored sample asks about the SID alone.
"""
from __future__ import annotations

import json
from typing import Any

from storage.answer import split_think
from storage.errors import NotFound
from storage.selection import domain_condition
from synth.tasks.base import DETERMINISTIC, TEACHER, Option, Parsed, Prompt, Task, TaskContext, selected_domains
from synth.tasks.registry import register
from synth.tasks.sql import catalog_cte, fill, hash_order, samples_select
from synth.tasks.templates import sql_str

DESCRIPTION_TASKS = ("r0_understand", "align_item_narrative")


# ---------------------------------------------------------------------------------------------- item QA
def _qa_sql(ctx: TaskContext) -> str:
    tpl = ctx.template
    max_len = int(ctx.opt("max_value_len"))
    keys = ctx.opt("attribute_keys")
    key_filter = f"AND k IN ({', '.join(sql_str(k) for k in keys)})" if keys else ""
    ctes = [catalog_cte(ctx),
            """kv AS (SELECT item_id, sid, title, domain, k, json_extract_string(attributes, '$."' || k || '"') AS v
                      FROM (SELECT *, unnest(json_keys(attributes)) AS k FROM cat WHERE attributes IS NOT NULL))"""]
    ctes.append(f"""kv2 AS (SELECT * FROM kv WHERE v IS NOT NULL AND trim(v) <> '' AND length(v) <= {max_len}
                        AND NOT starts_with(v, '[') AND NOT starts_with(v, '{{')
                        AND NOT regexp_matches(v, '^(https?://|www[.])')
                        AND NOT regexp_matches(lower(k), '(url|link|image|img)') {key_filter})""")
    cat_cols = {"sid": "sid", "title": "title", "categories": "array_to_string(categories, ', ')"}
    kv_cols = {"sid": "sid", "title": "title", "key": "replace(k, '_', ' ')", "value": "v"}
    parts = ["SELECT " + fill({
        "variant": "'categories'", "key": "item_id",
        "user_text": tpl.to_sql("categories_user", cat_cols),
        "assistant_text": tpl.to_sql("categories_assistant", cat_cols),
        "domain": "domain", "target_item_ids": "[item_id]", "target_sids": "[sid]",
        "extra": "to_json({'question': 'categories', 'categories': categories})",
    }) + " FROM cat WHERE len(categories) > 0"]
    if ctx.opt("attributes"):
        parts.append("SELECT " + fill({
            "variant": "'attribute'", "key": "item_id || '|' || k",
            "user_text": tpl.to_sql("attribute_user", kv_cols),
            "assistant_text": tpl.to_sql("attribute_assistant", kv_cols),
            "domain": "domain", "target_item_ids": "[item_id]", "target_sids": "[sid]",
            "extra": "to_json({'question': 'attribute', 'key': k, 'value': v})",
        }) + " FROM kv2")
    return samples_select(ctx, " UNION ALL ".join(parts), ctes=ctes)


R0_QA = register(Task(
    name="r0_item_qa", level="R0", kind=DETERMINISTIC, default_dataset="cot",
    description="item QA from the catalog: categories of a SID, and its short attributes (year, ...)",
    options=(Option("attributes", True, "also ask one question per short scalar attribute"),
             Option("attribute_keys", [], "only these attribute keys (default: every short scalar one)"),
             Option("max_value_len", 40, "skip attribute values longer than this")),
    generate=_qa_sql))


# ---------------------------------------------------------------------------------------------- grounding
def _description_source(ctx: TaskContext) -> str | None:
    """None = the catalog's own descriptions; else the glob of a dataset version with teacher descriptions."""
    from storage.datasets import list_versions, resolve

    src = ctx.opt("source")
    if src == "catalog":
        return None
    if src != "auto" and not _truthy(ctx.opt("allow_unverified")):
        from storage.errors import ConfigError

        raise ConfigError(f"r0_grounding: source={src} holds teacher descriptions (unverified) and "
                          "allow_unverified=false; use source=catalog or allow_unverified=true")
    if src == "auto":
        n = ctx.ws.query("SELECT count(*) FROM items WHERE description IS NOT NULL AND trim(description) <> ''")[0][0]
        if n:
            return None
        if not _truthy(ctx.opt("allow_unverified")):
            raise NotFound("r0_grounding: the catalog has no item descriptions, and allow_unverified=false "
                           "refuses teacher-written ones")
        import duckdb

        for dv in reversed(list_versions(ctx.ws)):
            if (dv.manifest.get("synth") or {}).get("task") in DESCRIPTION_TASKS and dv.rows:
                usable = duckdb.sql(f"SELECT count(*) FROM read_parquet({sql_str(dv.glob)}) "
                                    "WHERE error IS NULL AND answer IS NOT NULL").fetchall()[0][0]
                if usable:                         # newest version with at least one error-free description
                    ctx.parents.append((dv.name, dv.version))
                    return dv.glob
        raise NotFound("r0_grounding: the catalog has no item descriptions and no dataset holds teacher "
                       "descriptions yet; run `recot synth run align_item_narrative` (or r0_understand) first, "
                       "or pass --option source=NAME@vN")
    dv = resolve(ctx.ws, src)
    ctx.parents.append((dv.name, dv.version))
    return dv.glob


def _truthy(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() not in ("false", "0", "no", "off", "")


def _grounding_sql(ctx: TaskContext) -> str:
    tpl = ctx.template
    glob = _description_source(ctx)
    if glob is None:
        desc = """d AS (SELECT item_id, trim(description) AS description FROM cat
                        WHERE description IS NOT NULL AND trim(description) <> '')"""
    else:
        tasks = ", ".join(sql_str(t) for t in DESCRIPTION_TASKS)
        desc = f"""d AS (SELECT target_item_ids[1] AS item_id, arg_min(trim(answer), sample_id) AS description
                        FROM read_parquet({sql_str(glob)})
                        WHERE error IS NULL AND answer IS NOT NULL AND trim(answer) <> '' AND task IN ({tasks})
                        GROUP BY 1)"""
    ctes = [catalog_cte(ctx), desc,
            """g AS (SELECT c.item_id, c.sid, c.title, c.domain, d.description,
                            count(*) OVER (PARTITION BY d.description) AS n_same
                     FROM d JOIN cat c USING (item_id))"""]
    cols = {"description": "description", "sid": "sid", "title": "title"}
    body = "SELECT " + fill({
        "variant": "'grounding'", "key": "item_id",
        "user_text": tpl.to_sql("user", cols), "assistant_text": tpl.to_sql("assistant", cols),
        "domain": "domain", "target_item_ids": "[item_id]", "target_sids": "[sid]",
        # a description the catalog holds is a fact; one a teacher wrote is not checked (verified = false)
        "extra": f"to_json({{'description_source': {sql_str('catalog' if glob is None else 'dataset')}, "
                 f"'verified': {'true' if glob is None else 'false'}}})",
    }) + " FROM g WHERE n_same = 1"
    return samples_select(ctx, body, ctes=ctes)


R0_GROUNDING = register(Task(
    name="r0_grounding", level="R0", kind=DETERMINISTIC, default_dataset="cot",
    description="description -> SID (catalog descriptions, or teacher descriptions from a dataset)",
    options=(Option("source", "auto", "auto | catalog | NAME@vN (a dataset with r0_understand / "
                                      "align_item_narrative samples)"),
             Option("allow_unverified", True, "use teacher-written descriptions (samples marked "
                                              "extra.verified=false); false: catalog descriptions only")),
    generate=_grounding_sql))


# ---------------------------------------------------------------------------------------------- understanding
def item_facts(attributes: Any, max_len: int = 40) -> str:
    """' year: 1995.' style facts from an attributes JSON (short scalars only, no URLs)."""
    if not attributes:
        return ""
    try:
        d = json.loads(attributes) if isinstance(attributes, str) else dict(attributes)
    except (TypeError, ValueError):
        return ""
    out = []
    for k, v in d.items():
        if v is None or isinstance(v, (dict, list)):
            continue
        s = str(v)
        if not s.strip() or len(s) > max_len or s.startswith(("http://", "https://", "www.")) \
                or any(x in k.lower() for x in ("url", "link", "image", "img")):
            continue
        out.append(f" {k.replace('_', ' ')}: {s}.")
    return "".join(out)


def load_items(ctx: TaskContext) -> list[dict]:
    """Items with a SID in seeded order, of the `domains` option's domains (the `limit` option caps prompts
    later)."""
    cond, params = domain_condition(domains) if (domains := selected_domains(ctx.options)) else ("TRUE", [])
    rows = ctx.ws.query(f"""WITH {catalog_cte(ctx)}
        SELECT item_id, sid, title, categories, attributes, domain FROM cat WHERE {cond}
        ORDER BY {hash_order(ctx, 'item_id')}, item_id""", params or None)
    return [dict(zip(["item_id", "sid", "title", "categories", "attributes", "domain"], r)) for r in rows]


def build_item_prompts(ctx: TaskContext) -> list[Prompt]:
    from synth.tasks.run import prompt_id_of

    tpl = ctx.template
    limit = int(ctx.options.get("limit") or 0)
    items = load_items(ctx)
    if limit:
        items = items[:limit]
    out = []
    for it in items:
        v = {"sid": it["sid"], "title": it["title"] or "", "categories": ", ".join(it["categories"] or []) or "none",
             "facts": item_facts(it["attributes"])}
        msgs = [{"role": "system", "content": tpl.render("system", **v)},
                {"role": "user", "content": tpl.render("user", **v)}]
        student = tpl.render("student", **v)
        out.append(Prompt(prompt_id=prompt_id_of(ctx, msgs, student, it["item_id"]), teacher_messages=msgs,
                          student_user=student, domain=it["domain"], target_item_ids=[it["item_id"]],
                          target_sids=[it["sid"]], target_titles=[it["title"] or ""]))
    return out


def parse_understand(p: Prompt, text: str, finish: str | None) -> Parsed:
    return split_think(text, finish)


R0_UNDERSTAND = register(Task(
    name="r0_understand", level="R0", kind=TEACHER, cot=True, default_dataset="cot",
    description="item understanding: SID -> what the item is (teacher CoT from title, categories, facts)",
    options=(Option("think", "think", "think | no_think | both: which chat variants to emit"),),
    build=build_item_prompts, parse=parse_understand))
