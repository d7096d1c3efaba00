"""`recot eval`: HR@K, Recall@K and NDCG@K on the test split, models and baselines in one table, stored in the
`evals` table with the model's and the data's lineage.

Protocol (leave-last-out, as MiniOneRec/OneRec-Think; the same for every row of a table and recorded in its
config): for each user the target is the single test item, the history is the chronological train + valid
items; candidates are the catalog items with a SID; `exclude_seen` removes each user's train + valid items from
every ranked list (model and baselines alike). With one target, Recall@K = HR@K.

Model rows (`trainers.decoding`, two stages): `no_think` — the empty think block, then trie-constrained beam
search of width max(K); `think` — the reasoning (≤ `think_budget` tokens, closed at the budget if the model does
not close it), then the same beam search after `</think>`; `race` — OneReason's race mode: ⌈N/2⌉ think SIDs then
⌊N/2⌋ no-think SIDs, deduplicated (N = max K). Baseline rows (`trainers.baselines`): random, popular (train
split), item_knn. When the test targets span several domains, `metrics["by_domain"]` holds every row per domain.

`bench` scores a model level by level on items/users of the test split only: R0 grounding accuracy
(title + description → the exact SID) and perception (SID → caption, word F1 against title + categories), R2
evolution chains (synth's data-derived reference chain of the train+valid history, scored by curation's
0.5·action-F1 + 0.5·logic-F1 and by OneReason's in-order alignment) and R3 HR/NDCG. R1 has no reference to
score against and is reported as not scored.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storage.errors import ConfigError, NotFound
from storage.selection import domain_condition
from storage.sid_catalog import SidCatalog
from storage.workspace import Workspace
from trainers.common import model_lineage, resolve_sid_version
from trainers.metrics import per_domain, race_merge, ranking_metrics
from trainers.prompts import r0_grounding_messages, r3_messages

__all__ = ["MODES", "EvalResult", "bench_model", "evaluate_baselines", "evaluate_model", "ranking_metrics",
           "test_cases"]


def torch_no_grad_lazy(fn):
    """torch.no_grad without importing torch at module import (keeps `recot --help` fast)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        import torch

        with torch.no_grad():
            return fn(*a, **kw)
    return wrapper

log = logging.getLogger(__name__)

MODES = ("no_think", "think", "race")
PROTOCOL = {"split": "test (leave-last-out: the last item of each user)", "history": "train + valid",
            "candidates": "catalog items with a SID"}


@dataclass
class EvalResult:
    eval_id: str
    model: str
    metrics: dict[str, dict[str, Any]]            # row (mode or baseline) → metric → value; maybe "by_domain"
    n_users: int
    config: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, list[list[str]]] = field(default_factory=dict)
    reasonings: list[str | None] = field(default_factory=list)   # think mode, per user


def test_cases(ws: Workspace, sid_version: int, *, max_users: int | None = None,
               max_history: int = 20, domains: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One case per user with a test item that has a SID: the user's train+valid history (oldest first,
    last `max_history`) as (title, SID, ts) triples, the test item's SID, item id and domain, and every
    train+valid item of the user (`seen_items`, `seen_sids`: the protocol's 'seen' set, not truncated).
    `domains`: only users whose test item is in one of them (before `max_users`)."""
    cond, params = domain_condition(domains, "t.domain") if domains else ("TRUE", [])
    rows = ws.query(f"""
        WITH s AS (SELECT sp.user_id, sp.position, sp.split, sp.item_id, sp.ts, sp.domain, i.title, x.sid
                   FROM splits sp JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ?
                   LEFT JOIN items i ON i.item_id = sp.item_id),
             t AS (SELECT user_id, any_value(sid) AS target, any_value(item_id) AS target_item,
                          any_value(domain) AS domain
                   FROM s WHERE split = 'test' GROUP BY user_id),
             h AS (SELECT user_id, list(struct_pack(title := title, sid := sid, ts := ts, item_id := item_id)
                                        ORDER BY position) AS hist
                   FROM s WHERE split IN ('train', 'valid') GROUP BY user_id)
        SELECT t.user_id, t.target, t.target_item, t.domain, h.hist FROM t JOIN h USING (user_id) WHERE {cond}
        ORDER BY TRY_CAST(t.user_id AS BIGINT) NULLS LAST, t.user_id
        {f'LIMIT {int(max_users)}' if max_users else ''}""", [sid_version, *params])
    if not rows and domains:
        known = [r[0] for r in ws.query("SELECT DISTINCT coalesce(domain, 'default') FROM splits "
                                        "WHERE split = 'test' ORDER BY 1")]
        raise NotFound(f"no test users in domain(s) {list(domains)} with SIDs (version {sid_version}); the test "
                       f"split's domains are {known}")
    if not rows:
        raise NotFound(f"no test users with SIDs (version {sid_version}) in {ws.root}; ingest data with splits "
                       "and build SIDs first")
    return [{"user_id": u, "target_sid": tgt, "target_item": ti, "domain": dom or "default",
             "history": [(h["title"], h["sid"], h["ts"]) for h in hist][-max_history:],
             "seen_items": [h["item_id"] for h in hist], "seen_sids": [h["sid"] for h in hist]}
            for u, tgt, ti, dom, hist in rows]


def load_for_eval(model_dir: str | Path, ws: Workspace, sid_version: int):
    """Model + tokenizer; a model without SID tokens (a base model) gets them added (mean-init) so the
    constrained decoder can still run — that is the 'untrained' baseline."""
    from trainers.common import load_model_and_tokenizer

    model, tok, added = load_model_and_tokenizer(str(model_dir), ws=ws, sid_version=sid_version, add_tokens=True)
    if added:
        log.warning("%s had no SID tokens for version %d; added %d (untrained embeddings)", model_dir,
                    sid_version, added)
    return model, tok


def _store(ws: Workspace, *, model: str, dataset: str, config: dict, metrics: dict, lineage: dict) -> str:
    eval_id = f"eval-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with ws.transaction("eval") as con:
        con.execute("INSERT INTO evals VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [eval_id, datetime.now(UTC), model, dataset, json.dumps(config, default=str),
                     json.dumps(metrics), json.dumps(lineage, default=str)])
    return eval_id


def _rows_metrics(preds: dict[str, list[list[str]]], cases: list[dict[str, Any]], ks: Sequence[int],
                  ) -> dict[str, dict[str, Any]]:
    """Metrics per row, and per domain (under "by_domain") when the targets span several domains."""
    targets = [c["target_sid"] for c in cases]
    metrics: dict[str, dict[str, Any]] = {row: ranking_metrics(r, targets, ks) for row, r in preds.items()}
    domains = [c["domain"] for c in cases]
    if len(set(domains)) > 1:
        metrics["by_domain"] = {row: per_domain(r, targets, domains, ks) for row, r in preds.items()}
    return metrics


def _resolve(ws: Workspace, sid_version: int | None, model_dir: str | Path | None) -> int:
    v = resolve_sid_version(ws, sid_version, None, model_dir)
    if v is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    return v


def evaluate_baselines(ws: Workspace, *, ks: Sequence[int] = (1, 5, 10), sid_version: int | None = None,
                       max_users: int | None = None, max_history: int = 20, exclude_seen: bool = False,
                       seed: int = 0, names: Sequence[str] | None = None, neighbours: int = 100,
                       store: bool = True, cases: list[dict[str, Any]] | None = None,
                       domains: Sequence[str] | None = None) -> EvalResult:
    """The baselines (`trainers.baselines`) alone, on the same test users and protocol as `evaluate_model`."""
    from trainers.baselines import BASELINES, baseline_rankings

    sid_version = _resolve(ws, sid_version, None)
    catalog = SidCatalog.load(ws, sid_version)
    cases = cases if cases is not None else test_cases(ws, sid_version, max_users=max_users,
                                                       max_history=max_history, domains=domains)
    preds = baseline_rankings(ws, cases, catalog, max(ks), exclude_seen=exclude_seen, seed=seed,
                              names=list(names or BASELINES), neighbours=neighbours)
    metrics = _rows_metrics(preds, cases, ks)
    config = {"ks": list(ks), "rows": list(preds), "max_users": max_users, "split": "test", "kind": "r3",
              "protocol": {**PROTOCOL, "exclude_seen": exclude_seen}, "seed": seed, "neighbours": neighbours,
              "domains": list(domains) if domains else None}
    lineage = {"sid_version": sid_version, "n_users": len(cases), "split": "splits.test (history = train+valid)"}
    eval_id = _store(ws, model="baselines", dataset=f"splits:test@sid_v{sid_version}", config=config,
                     metrics=metrics, lineage=lineage) if store else ""
    return EvalResult(eval_id, "baselines", metrics, len(cases), config, preds)


def evaluate_model(ws: Workspace, model_dir: str | Path, *, ks: Sequence[int] = (1, 5, 10),
                   modes: Sequence[str] = ("no_think",), num_beams: int | None = None,
                   sid_version: int | None = None, max_users: int | None = None, max_history: int = 20,
                   think_budget: int = 1024, think_tokens: int | None = None, think_sample: bool = False,
                   batch_size: int = 8, store: bool = True, history_format: str = "sid_title",
                   exclude_seen: bool = False, baselines: bool | Sequence[str] = False, seed: int = 0,
                   domains: Sequence[str] | None = None) -> EvalResult:
    """Rank the test item of each user with the model in each of `modes` (no_think | think | race) and, with
    `baselines` (True = all, or a list of names), the baselines on the same users; one `evals` row with every
    row's metrics, the protocol and the model and data lineage.

    `think_budget`: reasoning tokens before `</think>` is forced (`think_tokens` is its former name);
    `think_sample`: sample the reasoning instead of greedy. `history_format` (sid_title | sid | title): how prompts
    show history items — use the one the model was trained with; it is stored in the eval's config.
    `domains`: score only users whose test item is in one of these domains (a specialist on its own domain)."""
    from synth.tasks.history import check_history_format

    check_history_format(history_format)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown mode(s) {bad}; use {MODES}")
    if think_tokens is not None:
        think_budget = think_tokens
    if think_budget < 1:
        raise ConfigError(f"think_budget must be ≥ 1, got {think_budget}")
    sid_version = _resolve(ws, sid_version, model_dir)
    catalog = SidCatalog.load(ws, sid_version)
    cases = test_cases(ws, sid_version, max_users=max_users, max_history=max_history, domains=domains)
    beams = num_beams or max(ks)
    model, tok = load_for_eval(model_dir, ws, sid_version)
    import trainers.decoding as decoding

    exclude = [c["seen_sids"] for c in cases] if exclude_seen else None
    runs = [m for m in ("no_think", "think") if m in modes or "race" in modes]
    preds: dict[str, list[list[str]]] = {}
    reasonings: list[str | None] = []
    closed: list[bool] = []
    for mode in runs:
        think = mode == "think"
        prompts = [r3_messages(c["history"], think=think, history_format=history_format) for c in cases]
        if think:                                   # keep the reasoning (and whether the model closed it)
            out = decoding.decode(model, tok, catalog.trie, prompts, think=True, num_beams=beams,
                                  think_budget=think_budget, batch_size=batch_size, exclude=exclude,
                                  think_sample=think_sample, seed=seed)
            preds[mode] = [d.sids for d in out]
            reasonings, closed = [d.reasoning for d in out], [d.closed for d in out]
        else:
            preds[mode] = decoding.generate_ranked(model, tok, catalog.trie, prompts, think=think, num_beams=beams,
                                                   think_budget=think_budget, batch_size=batch_size, exclude=exclude)
    if "race" in modes:
        preds["race"] = [race_merge(t, n, beams) for t, n in zip(preds["think"], preds["no_think"])]
    preds = {m: preds[m] for m in MODES if m in modes}
    for m in preds:
        log.info("%s %s: %d users ranked", model_dir, m, len(preds[m]))
    if baselines:
        names = None if baselines is True else list(baselines)
        base = evaluate_baselines(ws, ks=ks, sid_version=sid_version, exclude_seen=exclude_seen, seed=seed,
                                  names=names, store=False, cases=cases)
        preds = {**base.predictions, **preds}
    metrics = _rows_metrics(preds, cases, ks)
    for m in modes:
        metrics[m]["invalid_sids"] = float(sum(1 for r in preds[m] for s in r if s not in catalog.sid_to_item))
    if "think" in modes and closed:
        metrics["think"]["closed_think"] = sum(closed) / len(closed)     # share closed by the model itself
    config = {"ks": list(ks), "modes": list(modes), "rows": [r for r in preds], "num_beams": beams,
              "max_users": max_users, "max_history": max_history, "think_budget": think_budget,
              "think_sample": think_sample, "split": "test", "kind": "r3", "history_format": history_format,
              "protocol": {**PROTOCOL, "exclude_seen": exclude_seen}, "seed": seed,
              "domains": list(domains) if domains else None}
    lineage = {"model": model_lineage(model_dir), "sid_version": sid_version, "n_users": len(cases),
               "split": "splits.test (history = train+valid)"}
    eval_id = _store(ws, model=str(model_dir), dataset=f"splits:test@sid_v{sid_version}", config=config,
                     metrics=metrics, lineage=lineage) if store else ""
    return EvalResult(eval_id, str(model_dir), metrics, len(cases), config, preds, reasonings)


def bench_model(ws: Workspace, model_dir: str | Path, *, sid_version: int | None = None,
                max_items: int | None = 50, max_users: int | None = 50, ks: Sequence[int] = (1, 5, 10),
                batch_size: int = 4, r2_tokens: int = 160, caption_tokens: int = 48, store: bool = True) -> EvalResult:
    """One table R0 → R3 for a model, built from the test split only (test items for R0, test users for R3)."""
    from trainers.decoding import generate_ranked

    sid_version = _resolve(ws, sid_version, model_dir)
    catalog = SidCatalog.load(ws, sid_version)
    items = ws.query(f"""
        SELECT DISTINCT sp.item_id, i.title, i.description, x.sid, coalesce(i.categories, []) FROM splits sp
        JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ? JOIN items i ON i.item_id = sp.item_id
        WHERE sp.split = 'test' ORDER BY sp.item_id {f'LIMIT {int(max_items)}' if max_items else ''}""",
                     [sid_version])
    model, tok = load_for_eval(model_dir, ws, sid_version)
    prompts = [r0_grounding_messages(t or "", d) for _, t, d, _, _ in items]
    got = generate_ranked(model, tok, catalog.trie, prompts, think=False, num_beams=1, batch_size=batch_size)
    r0 = sum(1 for g, it in zip(got, items) if g[:1] == [it[3]]) / max(len(items), 1)
    captions = perception_bench(model, tok, [(sid, t, list(c)) for _, t, _, sid, c in items],
                                max_new_tokens=caption_tokens, batch_size=batch_size)
    r2 = r2_chain_bench(ws, model, tok, sid_version, max_users=max_users, max_new_tokens=r2_tokens)
    del model
    r3 = evaluate_model(ws, model_dir, ks=ks, modes=("no_think",), sid_version=sid_version, max_users=max_users,
                        batch_size=batch_size, store=False)
    metrics = {
        "R0": {"grounding_accuracy": r0, **captions, "n": float(len(items))},
        "R1": {"scored": 0.0},
        "R2": r2,
        "R3": {**r3.metrics["no_think"], "n": float(r3.n_users)},
    }
    config = {"kind": "bench", "max_items": max_items, "max_users": max_users, "ks": list(ks), "split": "test",
              "r2_tokens": r2_tokens, "caption_tokens": caption_tokens}
    lineage = {"model": model_lineage(model_dir), "sid_version": sid_version}
    eval_id = _store(ws, model=str(model_dir), dataset=f"bench:test@sid_v{sid_version}", config=config,
                     metrics=metrics, lineage=lineage) if store else ""
    return EvalResult(eval_id, str(model_dir), metrics, r3.n_users, config)


@torch_no_grad_lazy
def perception_bench(model, tok, items: Sequence[tuple[str, str | None, list[str]]], *, max_new_tokens: int = 48,
                     batch_size: int = 4) -> dict[str, float]:
    """Perception (SID → caption): the model describes each item from its SID alone (synth's r0_understand
    student prompt, /no_think, greedy); word F1 against the item's title and categories (`caption_f1`)."""
    from synth.tasks.templates import load_template
    from trainers.decoding import answer_prefill
    from trainers.metrics import caption_f1

    if not items:
        return {"caption_f1": 0.0}
    template = load_template("r0_understand")
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    scores: list[float] = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        texts = [tok.apply_chat_template([{"role": "user", "content": template.render("student", sid=sid)
                                           + " /no_think"}], tokenize=False, add_generation_prompt=True)
                 + answer_prefill(None) for sid, _, _ in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        for (_, title, cats), text in zip(chunk, tok.batch_decode(gen[:, enc["input_ids"].shape[1]:],
                                                                  skip_special_tokens=True)):
            scores.append(caption_f1(text, title, cats))
    return {"caption_f1": sum(scores) / len(scores)}


@torch_no_grad_lazy
def r2_chain_bench(ws: Workspace, model, tok, sid_version: int, *, max_users: int | None,
                   max_new_tokens: int = 160) -> dict[str, float]:
    """R2 on test users: the model writes an evolution chain for the train+valid history (greedy, free text);
    scored against synth's reference chain of the same history with curation's R2 scorer (order-free greedy
    matching) and with OneReason's topic-generation scores (events aligned in order: `ordered_*`)."""
    from curation.filters.r2_score import r2_chain_score
    from synth.tasks.cognition import reference_chain
    from synth.tasks.history import Event, render_history
    from trainers.prompts import NO_THINK_PREFILL, r2_messages

    rows = ws.query(f"""
        SELECT sp.user_id, list(struct_pack(item_id := sp.item_id, sid := x.sid, title := i.title, ts := sp.ts,
                                            domain := sp.domain, cats := coalesce(i.categories, []))
                                ORDER BY sp.position)
        FROM splits sp JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ?
        JOIN items i ON i.item_id = sp.item_id
        WHERE sp.split IN ('train', 'valid') AND sp.user_id IN (SELECT user_id FROM splits WHERE split = 'test')
        GROUP BY sp.user_id ORDER BY TRY_CAST(sp.user_id AS BIGINT) NULLS LAST, sp.user_id
        {f'LIMIT {int(max_users)}' if max_users else ''}""", [sid_version])
    from trainers.metrics import topic_generation_scores

    scores, actions, logics = [], [], []
    ordered: list[dict[str, float]] = []
    tok.padding_side = "left"
    for user_id, hist in rows:
        events = [Event(h["item_id"], h["sid"], h["title"] or "", h["ts"], h["domain"], list(h["cats"]))
                  for h in hist][-20:]
        ref = reference_chain(user_id, events)
        if ref is None:
            continue
        text = tok.apply_chat_template(r2_messages(render_history(events)), tokenize=False,
                                       add_generation_prompt=True) + NO_THINK_PREFILL
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id)
        answer = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        s, a, lg = r2_chain_score(answer, ref)
        scores.append(s)
        actions.append(a)
        logics.append(lg)
        ordered.append(topic_generation_scores(answer, ref))
    n = len(scores)
    if not n:
        return {"scored": 0.0}
    return {"chain_score": sum(scores) / n, "action_f1": sum(actions) / n, "logic_f1": sum(logics) / n,
            "ordered_action_f1": sum(o["action_f1"] for o in ordered) / n,
            "ordered_logic_f1": sum(o["logic_f1"] for o in ordered) / n, "n": float(n)}
