"""Deterministic itemic-text alignment tasks (no teacher): one DuckDB query each, straight from the catalog
and the TRAIN part of the splits.

Counts (documented in docs/tasks.md, checked by tests):
- align_token: one sample per SID prefix at level 1 and at level 2 that covers >= min_items items with a
  category;
- align_item: per item with a SID: sid2title and title2sid (items with a title), sid2desc (items with a
  title and a description or categories), desc2sid (only when that description identifies exactly one item);
  a title shared by several items (MovieLens lists 18 films twice under two ids) is disambiguated in
  title2sid with the item id, "Title (1998) [item 267]", so identical prompts never have different answers;
- align_relational: per relation, min(max_pairs, eligible pairs) samples;
- align_user: per user, one window per TRAIN item at train rank k >= min_history (k = 0-based), times the
  three variants; the target is always a TRAIN item, so valid/test items never appear.
"""
from __future__ import annotations

from storage.sid import sid_prefix_sql
from synth.tasks.base import DETERMINISTIC, Option, Task, TaskContext
from synth.tasks.registry import register
from synth.tasks.sql import catalog_cte, fill, hash_order, samples_select, train_cte
from synth.tasks.templates import sql_str


def _variants(ctx: TaskContext, allowed: tuple[str, ...]) -> list[str]:
    from storage.errors import ConfigError

    chosen = ctx.opt("variants") or list(allowed)
    bad = [v for v in chosen if v not in allowed]
    if bad:
        raise ConfigError(f"task '{ctx.task.name}': unknown variant(s) {bad} (choose from {', '.join(allowed)})")
    return chosen


# ---------------------------------------------------------------------------------------------- token
def _token_sql(ctx: TaskContext) -> str:
    tpl, top_k, min_items = ctx.template, int(ctx.opt("top_k")), int(ctx.opt("min_items"))
    levels = [int(x) for x in ctx.opt("levels")]
    pre = []
    if 1 in levels:
        pre.append(f"SELECT 1 AS lvl, {sid_prefix_sql('codes', 1)} AS prefix, item_id, categories, "
                   "attributes, domain FROM cat")
    if 2 in levels:
        pre.append(f"SELECT 2 AS lvl, {sid_prefix_sql('codes', 2)} AS prefix, "
                   "item_id, categories, attributes, domain FROM cat WHERE len(codes) >= 2")
    if not pre:
        from storage.errors import ConfigError
        raise ConfigError("task 'align_token': option levels must include 1 and/or 2")
    ctes = [catalog_cte(ctx),
            f"pre AS ({' UNION ALL '.join(pre)})",
            """sizes AS (SELECT lvl, prefix, count(*) FILTER (WHERE len(categories) > 0) AS n_items,
                                min(domain) AS domain FROM pre GROUP BY lvl, prefix)""",
            """cnt AS (SELECT lvl, prefix, category, count(*) AS c
                       FROM (SELECT lvl, prefix, unnest(categories) AS category FROM pre) GROUP BY ALL)""",
            f"""top AS (SELECT r.lvl, r.prefix,
                          list(r.category || ' (' || r.c || ' of ' || s.n_items || ')' ORDER BY r.c DESC, r.category)
                              FILTER (WHERE r.rk <= {top_k}) AS parts,
                          list(r.category ORDER BY r.c DESC, r.category) FILTER (WHERE r.rk <= {top_k}) AS cats,
                          any_value(s.n_items) AS n_items, any_value(s.domain) AS domain
                   FROM (SELECT *, row_number() OVER (PARTITION BY lvl, prefix ORDER BY c DESC, category) AS rk
                         FROM cnt) r JOIN sizes s USING (lvl, prefix)
                   WHERE s.n_items >= {min_items}
                   GROUP BY r.lvl, r.prefix)"""]
    summary = "array_to_string(parts, ', ')"
    keys = [str(k) for k in ctx.opt("attribute_keys")]
    if keys:
        # dominant values of chosen attributes (e.g. year), appended as "; year: 1995 (3 of 5), ..."
        ctes += [f"""av AS (SELECT lvl, prefix, k, json_extract_string(attributes, '$."' || k || '"') AS v,
                                  count(*) AS c
                           FROM pre, (SELECT unnest([{', '.join(sql_str(k) for k in keys)}]) AS k)
                           WHERE attributes IS NOT NULL GROUP BY ALL HAVING v IS NOT NULL)""",
                 f"""attr AS (SELECT lvl, prefix, list(k || ': ' || vals ORDER BY k) AS aparts FROM (
                                SELECT a.lvl, a.prefix, a.k,
                                       array_to_string(list(a.v || ' (' || a.c || ' of ' || s.n_items || ')'
                                                            ORDER BY a.c DESC, a.v)
                                                       FILTER (WHERE a.rk <= {top_k}), ', ') AS vals
                                FROM (SELECT *, row_number() OVER (PARTITION BY lvl, prefix, k ORDER BY c DESC, v) AS rk
                                      FROM av) a JOIN sizes s USING (lvl, prefix) GROUP BY ALL)
                              GROUP BY lvl, prefix)""",
                 "top2 AS (SELECT t.*, a.aparts FROM top t LEFT JOIN attr a USING (lvl, prefix))"]
        summary = "array_to_string(parts, ', ') || coalesce('; ' || array_to_string(aparts, '; '), '')"
    src = "top2" if keys else "top"
    cols = {"prefix": "prefix", "level": "lvl", "n_items": "n_items", "summary": summary}
    body = "SELECT " + fill({
        "variant": "'level' || lvl", "key": "prefix",
        "user_text": tpl.to_sql("user", cols), "assistant_text": tpl.to_sql("assistant", cols),
        "domain": "domain",
        "extra": "to_json({'level': lvl, 'prefix': prefix, 'n_items': n_items, 'categories': cats})",
    }) + f" FROM {src}"
    return samples_select(ctx, body, ctes=ctes)


ALIGN_TOKEN = register(Task(
    name="align_token", level="alignment", kind=DETERMINISTIC,
    description="SID prefix (levels 1, 2) -> dominant categories (and chosen attributes) of the items under it",
    options=(Option("levels", ["1", "2"], "prefix levels to describe"),
             Option("attribute_keys", [], "also name the dominant values of these attributes (e.g. year)"),
             Option("top_k", 3, "categories named per prefix"),
             Option("min_items", 2, "skip prefixes covering fewer items (with a category)")),
    generate=_token_sql))


# ---------------------------------------------------------------------------------------------- item
ITEM_VARIANTS = ("sid2title", "title2sid", "sid2desc", "desc2sid")


def _item_sql(ctx: TaskContext) -> str:
    tpl = ctx.template
    cols = {"sid": "sid", "title": "title", "about": "about"}
    where = {"sid2title": "title IS NOT NULL", "title2sid": "title IS NOT NULL",
             # the answer is "<title>. <about>": an item without a title would answer ". Categories: …"
             "sid2desc": "about IS NOT NULL AND title IS NOT NULL", "desc2sid": "about IS NOT NULL AND n_about = 1"}
    parts = []
    for v in _variants(ctx, ITEM_VARIANTS):
        c = {**cols, "title": "title_q"} if v == "title2sid" else cols
        parts.append("SELECT " + fill({
            "variant": sql_str(v), "key": "item_id",
            "user_text": tpl.to_sql(f"{v}_user", c), "assistant_text": tpl.to_sql(f"{v}_assistant", c),
            "domain": "domain", "target_item_ids": "[item_id]", "target_sids": "[sid]",
        }) + f" FROM catx WHERE {where[v]}")
    # title_q: the title as a question can name it — with the item id when several items share the title
    ctes = [catalog_cte(ctx), """catx AS (SELECT *, count(*) OVER (PARTITION BY about) AS n_about,
                                        CASE WHEN count(*) OVER (PARTITION BY lower(trim(title))) > 1
                                             THEN title || ' [item ' || item_id || ']' ELSE title END AS title_q
                                 FROM cat)"""]
    return samples_select(ctx, " UNION ALL ".join(parts), ctes=ctes)


ALIGN_ITEM = register(Task(
    name="align_item", level="alignment", kind=DETERMINISTIC,
    description="SID <-> title and SID <-> description/categories, both ways (one sample per item and direction)",
    options=(Option("variants", list(ITEM_VARIANTS), "directions to emit"),),
    generate=_item_sql))


# ---------------------------------------------------------------------------------------------- relational
RELATIONS = ("co_interacted", "complementary", "substitute")


def _relational_sql(ctx: TaskContext) -> str:
    tpl = ctx.template
    min_support, max_pairs = int(ctx.opt("min_support")), int(ctx.opt("max_pairs"))
    rels = _variants(ctx, RELATIONS)
    ctes = [catalog_cte(ctx), train_cte(ctx),
            "seq AS (SELECT user_id, item_id, lead(item_id) OVER (PARTITION BY user_id ORDER BY k) AS nxt FROM tr)",
            f"""co AS (SELECT least(item_id, nxt) AS i1, greatest(item_id, nxt) AS i2,
                             count(DISTINCT user_id) AS support
                      FROM seq WHERE nxt IS NOT NULL AND nxt <> item_id GROUP BY ALL
                      HAVING count(DISTINCT user_id) >= {min_support})""",
            """co2 AS (SELECT co.i1, co.i2, co.support,
                              CASE WHEN len(a.categories) > 0 AND len(b.categories) > 0
                                        AND len(list_intersect(a.categories, b.categories)) = 0
                                   THEN 'complementary' ELSE 'co_interacted' END AS relation
                       FROM co JOIN cat a ON a.item_id = co.i1 JOIN cat b ON b.item_id = co.i2)""",
            f"""sub AS (SELECT i1, i2, 0::BIGINT AS support, 'substitute' AS relation FROM (
                        SELECT item_id AS i1, lead(item_id) OVER (
                            PARTITION BY array_to_string(list_sort(categories), '|')
                            ORDER BY {hash_order(ctx, 'item_id')}, item_id) AS i2
                        FROM cat WHERE len(categories) > 0) WHERE i2 IS NOT NULL)""",
            f"""pairs AS (SELECT * FROM (
                          SELECT *, row_number() OVER (PARTITION BY relation
                                                       ORDER BY {hash_order(ctx, 'i1', 'i2')}, i1, i2) AS rk
                          FROM (SELECT * FROM co2 UNION ALL SELECT * FROM sub))
                        WHERE rk <= {max_pairs} AND relation IN ({', '.join(sql_str(r) for r in rels)}))""",
            """pj AS (SELECT p.*, a.sid AS sid1, a.title AS title1, b.sid AS sid2, b.title AS title2,
                             array_to_string(a.categories, ', ') AS cats, a.domain
                      FROM pairs p JOIN cat a ON a.item_id = p.i1 JOIN cat b ON b.item_id = p.i2)"""]
    cols = {"sid1": "sid1", "title1": "title1", "sid2": "sid2", "title2": "title2", "support": "support",
            "categories": "cats"}
    answer = "CASE relation " + " ".join(f"WHEN {sql_str(r)} THEN {tpl.to_sql(r, cols)}" for r in RELATIONS) + " END"
    body = "SELECT " + fill({
        "variant": "relation", "key": "i1 || '|' || i2",
        "user_text": tpl.to_sql("user", cols), "assistant_text": answer, "domain": "domain",
        "target_item_ids": "[i1, i2]", "target_sids": "[sid1, sid2]",
        "extra": "to_json({'relation': relation, 'support': support, 'item_ids': [i1, i2]})",
    }) + " FROM pj"
    return samples_select(ctx, body, ctes=ctes)


ALIGN_RELATIONAL = register(Task(
    name="align_relational", level="alignment", kind=DETERMINISTIC,
    description="item pairs with a stated relation: co-interacted / complementary (train sequences), substitute "
                "(same categories)",
    options=(Option("variants", list(RELATIONS), "relations to emit"),
             Option("min_support", 2, "co-interacted pairs need this many users consuming them back to back"),
             Option("max_pairs", 2000, "cap per relation (seeded sample)")),
    generate=_relational_sql))


# ---------------------------------------------------------------------------------------------- user
USER_VARIANTS = ("sid2sid", "sid2title", "title2sid")


def users_filter_cte(ctx: TaskContext, source: str = "tr") -> str:
    """`sel_users`: the first `users` users in seeded order (all when 0)."""
    n = int(ctx.options.get("users") or 0)
    lim = f"LIMIT {n}" if n else ""
    return (f"sel_users AS (SELECT user_id FROM (SELECT DISTINCT user_id FROM {source}) "
            f"ORDER BY {hash_order(ctx, 'user_id')}, user_id {lim})")


def _user_sql(ctx: TaskContext) -> str:
    tpl = ctx.template
    h, mn = int(ctx.opt("max_history")), int(ctx.opt("min_history"))
    stride, per_user = max(1, int(ctx.opt("stride"))), int(ctx.opt("max_windows_per_user"))
    from storage.errors import ConfigError
    if h < 1 or mn < 1:
        raise ConfigError("task 'align_user': max_history and min_history must be >= 1")
    ctes = [catalog_cte(ctx), train_cte(ctx), users_filter_cte(ctx),
            f"""w AS (SELECT tr.*, count(*) OVER (PARTITION BY user_id) AS n_train,
                        list({{'item_id': item_id, 'sid': sid, 'title': title}}) OVER (
                            PARTITION BY user_id ORDER BY k ROWS BETWEEN {h} PRECEDING AND 1 PRECEDING) AS hist
                      FROM tr WHERE user_id IN (SELECT user_id FROM sel_users))""",
            f"""win AS MATERIALIZED (SELECT *,
                               array_to_string(list_transform(hist, lambda x: x.sid), chr(10)) AS h_sids,
                               array_to_string(list_transform(hist, lambda x: x.title), chr(10)) AS h_titles
                        FROM w WHERE k >= {mn} AND (k - {mn}) % {stride} = 0
                              AND ({per_user} = 0 OR k >= n_train - {per_user}))"""]
    cols = {"history_sids": "h_sids", "history_titles": "h_titles", "sid": "sid", "title": "title"}
    parts = []
    for v in _variants(ctx, USER_VARIANTS):
        parts.append("SELECT " + fill({
            "variant": sql_str(v), "key": "user_id || ':' || k",
            "user_text": tpl.to_sql(f"{v}_user", cols), "assistant_text": tpl.to_sql(f"{v}_assistant", cols),
            "user_id": "user_id", "domain": "domain",
            "history_item_ids": "list_transform(hist, lambda x: x.item_id)",
            "target_item_ids": "[item_id]", "target_sids": "[sid]",
            "extra": "to_json({'train_rank': k})",
        }) + " FROM win")
    return samples_select(ctx, " UNION ALL ".join(parts), ctes=ctes)


ALIGN_USER = register(Task(
    name="align_user", level="alignment", kind=DETERMINISTIC,
    description="sliding windows over TRAIN histories: SID history -> next SID / next title, title history -> "
                "next SID",
    options=(Option("variants", list(USER_VARIANTS), "variants to emit"),
             Option("users", 0, "at most this many users (seeded order; 0 = all)"),
             Option("max_history", 10, "items shown before the target (most recent kept)"),
             Option("min_history", 3, "first window at train rank k = min_history (k is 0-based)"),
             Option("stride", 1, "one window every `stride` train items"),
             Option("max_windows_per_user", 0, "keep only each user's last N windows (0 = all)")),
    generate=_user_sql))
