"""`recot eval`: HR@K, Recall@K and NDCG@K on the test split with beam search constrained to catalog SIDs,
thinking and non-thinking side by side, stored in the `evals` table with the model's and the data's lineage.

Protocol (leave-last-out, as MiniOneRec/OneRec-Think): for each user the prompt is the chronological
train+valid history (last `max_history` items, rendered with synth's R3 student template), the target is the single test
item, the ranked list is the `max(K)` beams of constrained decoding. With one target, Recall@K = HR@K.

`bench` scores a model level by level on items/users of the test split only: R0 grounding accuracy
(title + description → the exact SID), R2 evolution chains (synth's data-derived reference chain of the
train+valid history, scored by curation's 0.5·action-F1 + 0.5·logic-F1) and R3 HR/NDCG. R1 has no
reference to score against and is reported as not scored.
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

from curation.rewards import hit_at_k, ndcg_at_k, recall_at_k
from storage.errors import NotFound
from storage.sid_catalog import SidCatalog
from storage.workspace import Workspace
from trainers.common import model_lineage, resolve_sid_version
from trainers.prompts import r0_grounding_messages, r3_messages


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

MODES = ("no_think", "think")


@dataclass
class EvalResult:
    eval_id: str
    model: str
    metrics: dict[str, dict[str, float]]          # mode → metric → value
    n_users: int
    config: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, list[list[str]]] = field(default_factory=dict)


def test_cases(ws: Workspace, sid_version: int, *, max_users: int | None = None,
               max_history: int = 20) -> list[dict[str, Any]]:
    """One case per user with a test item that has a SID: the user's train+valid history (oldest first,
    last `max_history`) as (title, SID, ts) triples and the test item's SID."""
    rows = ws.query(f"""
        WITH s AS (SELECT sp.user_id, sp.position, sp.split, sp.item_id, sp.ts, i.title, x.sid
                   FROM splits sp JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ?
                   LEFT JOIN items i ON i.item_id = sp.item_id),
             t AS (SELECT user_id, any_value(sid) AS target, any_value(item_id) AS target_item
                   FROM s WHERE split = 'test' GROUP BY user_id),
             h AS (SELECT user_id, list(struct_pack(title := title, sid := sid, ts := ts) ORDER BY position) AS hist
                   FROM s WHERE split IN ('train', 'valid') GROUP BY user_id)
        SELECT t.user_id, t.target, t.target_item, h.hist FROM t JOIN h USING (user_id)
        ORDER BY TRY_CAST(t.user_id AS BIGINT) NULLS LAST, t.user_id
        {f'LIMIT {int(max_users)}' if max_users else ''}""", [sid_version])
    if not rows:
        raise NotFound(f"no test users with SIDs (version {sid_version}) in {ws.root}; ingest data with splits "
                       "and build SIDs first")
    return [{"user_id": u, "target_sid": tgt, "target_item": ti,
             "history": [(h["title"], h["sid"], h["ts"]) for h in hist][-max_history:]} for u, tgt, ti, hist in rows]


def ranking_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[str], ks: Sequence[int]) -> dict[str, float]:
    """Mean HR@K, Recall@K, NDCG@K over users."""
    n = len(targets)
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = sum(hit_at_k(r, t, k) for r, t in zip(ranked, targets)) / n
        out[f"Recall@{k}"] = sum(recall_at_k(r, t, k) for r, t in zip(ranked, targets)) / n
        out[f"NDCG@{k}"] = sum(ndcg_at_k(r, t, k) for r, t in zip(ranked, targets)) / n
    return out


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


def evaluate_model(ws: Workspace, model_dir: str | Path, *, ks: Sequence[int] = (1, 5, 10),
                   modes: Sequence[str] = ("no_think",), num_beams: int | None = None,
                   sid_version: int | None = None, max_users: int | None = None, max_history: int = 20,
                   think_tokens: int = 64, batch_size: int = 4, store: bool = True,
                   history_format: str = "sid_title") -> EvalResult:
    """Rank the test item of each user; metrics per mode; one `evals` row with model and data lineage.
    `history_format` (sid_title | sid | title): how prompts show history items — use the one the model was
    trained with (synth's r3_recommend option of the same name); it is stored in the eval's config."""
    from synth.tasks.history import check_history_format

    check_history_format(history_format)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown mode(s) {bad}; use {MODES}")
    sid_version = resolve_sid_version(ws, sid_version, None, model_dir)
    if sid_version is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    catalog = SidCatalog.load(ws, sid_version)
    cases = test_cases(ws, sid_version, max_users=max_users, max_history=max_history)
    beams = num_beams or max(ks)
    model, tok = load_for_eval(model_dir, ws, sid_version)
    from trainers.decoding import generate_ranked

    metrics, preds = {}, {}
    targets = [c["target_sid"] for c in cases]
    for mode in modes:
        think = mode == "think"
        prompts = [r3_messages(c["history"], think=think, history_format=history_format) for c in cases]
        ranked = generate_ranked(model, tok, catalog.trie, prompts, think=think, num_beams=beams,
                                 max_new_tokens=think_tokens, batch_size=batch_size)
        preds[mode] = ranked
        metrics[mode] = ranking_metrics(ranked, targets, ks)
        invalid = sum(1 for r in ranked for s in r if s not in catalog.sid_to_item)
        metrics[mode]["invalid_sids"] = float(invalid)
        log.info("%s %s: %s", model_dir, mode, metrics[mode])
    config = {"ks": list(ks), "modes": list(modes), "num_beams": beams, "max_users": max_users,
              "max_history": max_history, "think_tokens": think_tokens, "split": "test", "kind": "r3",
              "history_format": history_format}
    lineage = {"model": model_lineage(model_dir), "sid_version": sid_version, "n_users": len(cases),
               "split": "splits.test (history = train+valid)"}
    eval_id = _store(ws, model=str(model_dir), dataset=f"splits:test@sid_v{sid_version}", config=config,
                     metrics=metrics, lineage=lineage) if store else ""
    return EvalResult(eval_id, str(model_dir), metrics, len(cases), config, preds)


def bench_model(ws: Workspace, model_dir: str | Path, *, sid_version: int | None = None,
                max_items: int | None = 50, max_users: int | None = 50, ks: Sequence[int] = (1, 5, 10),
                batch_size: int = 4, r2_tokens: int = 160, store: bool = True) -> EvalResult:
    """One table R0 → R3 for a model, built from the test split only (test items for R0, test users for R3)."""
    from trainers.decoding import generate_ranked

    sid_version = resolve_sid_version(ws, sid_version, None, model_dir)
    if sid_version is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    catalog = SidCatalog.load(ws, sid_version)
    items = ws.query(f"""
        SELECT DISTINCT sp.item_id, i.title, i.description, x.sid FROM splits sp
        JOIN item_sids x ON x.item_id = sp.item_id AND x.sid_version = ? JOIN items i ON i.item_id = sp.item_id
        WHERE sp.split = 'test' ORDER BY sp.item_id {f'LIMIT {int(max_items)}' if max_items else ''}""",
                     [sid_version])
    model, tok = load_for_eval(model_dir, ws, sid_version)
    prompts = [r0_grounding_messages(t or "", d) for _, t, d, _ in items]
    got = generate_ranked(model, tok, catalog.trie, prompts, think=False, num_beams=1, batch_size=batch_size)
    r0 = sum(1 for g, (_, _, _, sid) in zip(got, items) if g[:1] == [sid]) / max(len(items), 1)
    r2 = r2_chain_bench(ws, model, tok, sid_version, max_users=max_users, max_new_tokens=r2_tokens)
    del model
    r3 = evaluate_model(ws, model_dir, ks=ks, modes=("no_think",), sid_version=sid_version, max_users=max_users,
                        batch_size=batch_size, store=False)
    metrics = {
        "R0": {"grounding_accuracy": r0, "n": float(len(items))},
        "R1": {"scored": 0.0},
        "R2": r2,
        "R3": {**r3.metrics["no_think"], "n": float(r3.n_users)},
    }
    config = {"kind": "bench", "max_items": max_items, "max_users": max_users, "ks": list(ks), "split": "test",
              "r2_tokens": r2_tokens}
    lineage = {"model": model_lineage(model_dir), "sid_version": sid_version}
    eval_id = _store(ws, model=str(model_dir), dataset=f"bench:test@sid_v{sid_version}", config=config,
                     metrics=metrics, lineage=lineage) if store else ""
    return EvalResult(eval_id, str(model_dir), metrics, r3.n_users, config)


@torch_no_grad_lazy
def r2_chain_bench(ws: Workspace, model, tok, sid_version: int, *, max_users: int | None,
                   max_new_tokens: int = 160) -> dict[str, float]:
    """R2 on test users: the model writes an evolution chain for the train+valid history (greedy, free text);
    scored against synth's reference chain of the same history with curation's R2 scorer."""
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
    scores, actions, logics = [], [], []
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
    n = len(scores)
    if not n:
        return {"scored": 0.0}
    return {"chain_score": sum(scores) / n, "action_f1": sum(actions) / n, "logic_f1": sum(logics) / n,
            "n": float(n)}
