"""run_chain end to end: all samples kept with decisions, verdicts table, funnel in the manifest, lineage,
determinism, threshold re-runs, rejection sampling, the CLI."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from curation_samples import HALLUCINATED, good, make_sample, reasoning_text, sid, write_samples
from test_curation_filters import defect_rows
from typer.testing import CliRunner

from curation.chain import run_chain
from curation.report import funnel
from storage.datasets import read_dv
from storage.errors import ConfigError


def test_chain_writes_all_samples_verdicts_and_funnel(cat_ws):
    src = write_samples(cat_ws, defect_rows())
    dv = run_chain(cat_ws, "samples", "default")
    assert dv.ref == "samples-curated@v1" and dv.parents == [{"name": "samples", "version": 1}]
    t = read_dv(dv).to_pylist()
    assert len(t) == src.rows  # kept and rejected samples are both stored
    by_id = {r["sample_id"]: r for r in t}
    expect = {"hallucinated": "sid_grounding", "malformed": "sid_grounding", "title_mismatch": "sid_grounding",
              "leak_sid": "hint_leakage", "leak_title": "hint_leakage", "two_open": "format", "no_close": "format",
              "empty_answer": "format", "gen_error": "format", "r2_missing_date": "format", "r2_not_json": "format",
              "repetitive": "repetition", "foreign": "language", "x_exact_dup": "exact_dup",
              "x_near_dup": "near_dup"}
    assert {k: r["rejected_by"] for k, r in by_id.items() if not r["keep"]} == expect
    assert HALLUCINATED in by_id["hallucinated"]["reject_reason"]
    assert json.loads(by_id["ok1"]["scores"])["outcome"] == pytest.approx(1.1)

    # verdict rows: one per (sample, filter evaluated); rejected_by = first filter in chain order with keep=False
    rows = cat_ws.query("SELECT sample_id, filter, keep FROM verdicts WHERE dataset = ? AND version = ?",
                        [dv.name, dv.version])
    rep = funnel(cat_ws, dv.ref)
    order = [s["name"] for s in rep["filters"]]
    for s in rep["filters"]:
        assert s["evaluated"] == sum(1 for r in rows if r[1] == s["name"])
        assert s["in"] - s["out"] == s["dropped"]
    first_drop: dict[str, str] = {}
    for sample_id, filt, keep in sorted(rows, key=lambda r: order.index(r[1])):
        if not keep:
            first_drop.setdefault(sample_id, filt)
    assert first_drop == expect
    # the funnel in the manifest: counts chain and histogram + examples name the defect
    assert rep["rows"] == src.rows and rep["kept"] == src.rows - len(expect)
    sg = next(s for s in rep["filters"] if s["name"] == "sid_grounding")
    assert sg["reasons"] == {"hallucinated SID": 1, "malformed SID": 1, "title mismatch": 1}
    assert HALLUCINATED in sg["examples"]["hallucinated SID"][0]["reason"]
    assert sg["scores"]["count"] == sum(1 for r in t if "<|sid_begin|>" in r["messages"][1]["content"])


def test_chain_in_small_batches_writes_the_same_version_verdicts_and_funnel(cat_ws, monkeypatch):
    """The chain streams its input in record batches: batches of 2 rows (row-local filters per batch, dedup keys
    prepared per batch, verdicts spilled per batch) give what one batch gives, and the spill folder is removed."""
    import curation.chain as chain_mod

    write_samples(cat_ws, defect_rows())
    dead = cat_ws.tmp_dir / "curate-999999999-left"     # a killed run's spill folder (no such pid)
    live = cat_ws.tmp_dir / f"curate-{os.getpid()}-live"  # a live process's: kept
    for d in (dead, live):
        d.mkdir()
        (d / "verdicts-0000.parquet").write_bytes(b"partial")
    one = run_chain(cat_ws, "samples", "default", out="one")
    assert not dead.exists() and live.is_dir()
    shutil.rmtree(live)
    monkeypatch.setattr(chain_mod, "BATCH_ROWS", 2)
    many = run_chain(cat_ws, "samples", "default", out="many")
    drop = ["run_id", "created_at"]
    a, b = read_dv(one), read_dv(many)
    assert a.drop_columns([c for c in drop if c in a.column_names]).equals(
        b.drop_columns([c for c in drop if c in b.column_names]))
    q = "SELECT sample_id, filter, keep, reason, score FROM verdicts WHERE dataset = ? ORDER BY filter, sample_id"
    assert cat_ws.query(q, ["one"]) == cat_ws.query(q, ["many"]) and cat_ws.query(q, ["one"])

    def stages(dv):
        return [{k: v for k, v in s.items() if k != "seconds"} for s in dv.manifest["funnel"]["filters"]]

    assert stages(one) == stages(many)
    assert not list(cat_ws.tmp_dir.glob("curate-*"))


def test_chain_is_deterministic_and_rerunnable_with_other_thresholds(cat_ws):
    write_samples(cat_ws, defect_rows())
    a = run_chain(cat_ws, "samples", "default")
    b = run_chain(cat_ws, "samples@v1", "default")
    assert (a.version, b.version) == (1, 2)
    assert a.content_hash == b.content_hash

    def verdicts(v):
        return sorted(cat_ws.query("SELECT sample_id, filter, keep, reason, score FROM verdicts "
                                   "WHERE dataset = ? AND version = ?", ["samples-curated", v]))
    assert verdicts(1) == verdicts(2)
    # other thresholds on the same input, nothing regenerated: a looser near-dup threshold, outcome off
    c = run_chain(cat_ws, "samples", "default", out="loose",
                  overrides=["outcome.require=none", "near_dup.threshold=0.99", "language.enabled=false"])
    kept = {r["sample_id"] for r in read_dv(c).to_pylist() if r["keep"]}
    assert {"x_near_dup", "foreign"} <= kept and "x_exact_dup" not in kept
    assert c.manifest["config"]["chain"]["filters"][-1]["params"]["threshold"] == 0.99
    with pytest.raises(ConfigError, match="no filter named 'nope'"):
        run_chain(cat_ws, "samples", "default", overrides=["nope.x=1"])
    with pytest.raises(ConfigError, match="bad params"):
        run_chain(cat_ws, "samples", {"filters": [{"type": "near_dedup", "params": {"treshold": 0.5}}]})


def test_rejection_sampling_keeps_best_k_correct(cat_ws):
    rows = []
    # prompt P1: 5 samples; 3 correct (ids r1, r3, r4), ties broken by sample_id → k=2 keeps r1, r3
    for i, item in enumerate(["1", "2", "1", "1", "3"], start=1):
        rows.append(good(f"r{i}", seed=100 + i, item=item, target="1", prompt_id="P1"))
    # prompt P2: ranked answers; correct = target in top 3; best = higher NDCG (q2 ranks the target first)
    rows.append(make_sample("q1", f"<think>{reasoning_text(201)}</think>\n{sid('2')}, {sid('4')}", prompt_id="P2"))
    rows.append(make_sample("q2", f"<think>{reasoning_text(202)}</think>\n{sid('4')}, {sid('2')}", target="4",
                            prompt_id="P2"))
    rows[-2]["target_item_ids"], rows[-2]["target_sids"] = ["4"], [sid("4")]
    rows.append(make_sample("q3", f"<think>{reasoning_text(203)}</think>\n{sid('5')}", target="4", prompt_id="P2"))
    rows.append(make_sample("zz_no_target", f"<think>{reasoning_text(204)}</think>\nA quiet drama.", target=None,
                            prompt_id="P3"))
    write_samples(cat_ws, rows)
    chain = {"name": "rs", "filters": [
        {"type": "outcome", "params": {"require": "none", "score": "ndcg", "k": 3}},
        {"type": "rejection_sampling", "params": {"k": 1, "correct": "topk", "topk": 3}}]}
    dv = run_chain(cat_ws, "samples", chain, out="rs1")
    kept = {r["sample_id"] for r in read_dv(dv).to_pylist() if r["keep"]}
    assert kept == {"r1", "q2", "zz_no_target"}
    reasons = {r["sample_id"]: r["reject_reason"] for r in read_dv(dv).to_pylist()}
    assert reasons["r2"].startswith("rejected (incorrect): wrong answer")
    assert reasons["r3"].startswith("rejected (not in best k): correct, but ranked 2 of 3 correct among 5 samples "
                                    "for prompt P1 (k=1)")
    assert reasons["q1"].startswith("rejected (not in best k)")
    assert reasons["q3"].startswith("rejected (incorrect)")
    chain["filters"][1]["params"]["k"] = 2
    dv2 = run_chain(cat_ws, "samples", chain, out="rs2")
    assert {r["sample_id"] for r in read_dv(dv2).to_pylist() if r["keep"]} == {"r1", "r3", "q1", "q2",
                                                                                  "zz_no_target"}


def test_cli_curate_and_report(cat_ws):
    from ui.cli import app

    write_samples(cat_ws, [good("a", 1), good("b", 1), make_sample("c", f"<think>x</think>{HALLUCINATED}")])
    runner = CliRunner()
    res = runner.invoke(app, ["curate", "-w", str(cat_ws.root), "--dataset", "samples", "--chain", "minimal",
                              "--out", "cur"])
    assert res.exit_code == 0, res.output
    assert "sid_grounding" in res.output and "hallucinated SID" in res.output and "wrote cur@v1" in res.output
    res = runner.invoke(app, ["curate", "report", "-w", str(cat_ws.root), "--dataset", "cur@v1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["dataset"] == "cur@v1" and data["kept"] == 1 and data["rejected_by"] == {"sid_grounding": 1,
                                                                                          "exact_dup": 1}
    res = runner.invoke(app, ["curate", "-w", str(cat_ws.root), "--dataset", "samples", "--chain", "nope"])
    assert res.exit_code != 0
    # human review overrides the filters in a new version (curation.review.overrides, lazily imported)
    with cat_ws.transaction() as con:
        con.execute("INSERT INTO reviews (sample_id, dataset, annotator, status, rating, correct, pulled_at) "
                    "VALUES ('a', 'cur', 'ann1', 'submitted', 1, 'no', now())")
    res = runner.invoke(app, ["curate", "-w", str(cat_ws.root), "--dataset", "cur", "--apply-reviews"])
    assert res.exit_code == 0, res.output
    assert "wrote cur@v2" in res.output
    rows = {r[0]: (r[1], r[2]) for r in cat_ws.query(
        "SELECT sample_id, keep, rejected_by FROM read_parquet(?)",
        [str(cat_ws.datasets_dir / "cur" / "v2" / "*.parquet")])}
    assert rows["a"] == (False, "human")
