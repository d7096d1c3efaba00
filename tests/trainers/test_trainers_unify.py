"""Trainers that start from a trained model (rft, merge, distill) and constrained evaluation. They share one
SFT model trained once per session (two steps on one curated row).

What these tests check (routing, lineage, keep-only-correct, a loss that drops on a repeated row, constrained
decoding validity) does not depend on what a pretrained LM knows, so they run on `tiny_model` (a from-scratch
1-layer model with SmolLM2's tokenizer and the SID tokens; conftest.py). Only the tests that need something it
cannot give use the embedded SmolLM2-135M; each says why."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from storage.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


@pytest.fixture(scope="session")
def sft_model(_tiny_template, tiny_model, tmp_path_factory):
    """(model dir, TrainResult, workspace) of a 2-step SFT run of `tiny_model` on one row of the tiny workspace."""
    from storage.workspace import Workspace
    from trainers.config import load_config
    from trainers.sft import SFTTrainConfig, train_sft

    root = tmp_path_factory.mktemp("sft_model")
    shutil.copytree(_tiny_template, root / "ws", ignore=shutil.ignore_patterns(".lock"))
    ws = Workspace.open(root / "ws")
    cfg = load_config(SFTTrainConfig, CONFIGS / "sft.cpu.yaml",   # one row, seen twice: the loss must drop
                      ["max_steps=2", "max_length=192", "think_ratio=null", "max_samples=1", "learning_rate=1e-4"],
                      dataset="r3_curated@v1", out=str(root / "sft"), model=str(tiny_model))
    res = train_sft(ws, cfg)
    return res.out_dir, res, ws


@pytest.mark.slow
def test_sft_trains_and_saves_loadable_model_with_lineage(sft_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from storage.runs import get_run
    from trainers.common import model_lineage

    out_dir, res, ws = sft_model
    loss = res.metrics["loss"]
    assert loss["n"] == 2 and math.isfinite(loss["first"]) and math.isfinite(loss["last"])
    assert loss["last"] < loss["first"], loss                 # the same row after one update: it learned
    lin = model_lineage(out_dir)
    assert lin["datasets"] == ["r3_curated@v1"] and lin["sid_version"] == 1 and lin["kind"] == "sft"
    run = get_run(ws, res.run_id)
    assert run["status"] == "done" and run["stats"]["out_dir"] == str(out_dir)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    enc = tok("Hello", return_tensors="pt")
    assert model.generate(**enc, max_new_tokens=1, do_sample=False).shape[1] == enc["input_ids"].shape[1] + 1


@pytest.mark.slow
def test_constrained_decoding_never_emits_invalid_sids(tiny_ws, tiny_model):
    """An untrained model (its SID embeddings random) ranks only catalog SIDs, in both modes."""
    from storage.sid import parse_sid
    from storage.sid_catalog import SidCatalog
    from trainers.evaluate import evaluate_model

    res = evaluate_model(tiny_ws, tiny_model, ks=(1, 3), modes=("no_think", "think"), max_users=2,
                         think_tokens=12, batch_size=2)
    catalog = SidCatalog.load(tiny_ws, 1)
    for mode in ("no_think", "think"):
        lists = res.predictions[mode]
        assert len(lists) == 2 and all(lists)
        for ranked in lists:
            assert len(ranked) == len(set(ranked)) <= 3
            for sid in ranked:
                parse_sid(sid)
                assert sid in catalog.sid_to_item
        assert res.metrics[mode]["invalid_sids"] == 0.0
        for k in (1, 3):
            assert 0.0 <= res.metrics[mode][f"NDCG@{k}"] <= res.metrics[mode][f"HR@{k}"] <= 1.0
    row = tiny_ws.query("SELECT model, dataset, metrics, lineage FROM evals WHERE eval_id = ?", [res.eval_id])[0]
    assert json.loads(row[2])["think"]["HR@3"] == res.metrics["think"]["HR@3"]
    assert json.loads(row[3])["n_users"] == 2 and row[1] == "splits:test@sid_v1"


@pytest.mark.slow
def test_eval_cli_side_by_side_on_trained_model(tiny_ws, sft_model):
    from typer.testing import CliRunner

    from ui.cli import app

    out_dir = sft_model[0]
    r = CliRunner().invoke(app, ["eval", "--model", str(out_dir), "--both", "--k", "1,2", "--max-users", "2",
                                 "--think-tokens", "8", "-w", str(tiny_ws.root)])
    assert r.exit_code == 0, r.output
    assert "no_think" in r.output and "think" in r.output and "NDCG@2" in r.output
    lineage = json.loads(tiny_ws.query("SELECT lineage FROM evals")[0][0])
    assert lineage["model"]["kind"] == "sft" and lineage["model"]["datasets"] == ["r3_curated@v1"]
    bad = CliRunner().invoke(app, ["eval", "--model", str(out_dir), "--k", "0", "-w", str(tiny_ws.root)])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_merge_averages_weights(tiny_ws, sft_model, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from trainers.common import model_lineage
    from trainers.merge import MergeConfig, train_merge
    from trainers.tokenizer import extend_and_save

    out_dir = sft_model[0]
    base = tiny_ws.root / "models" / "base_sid"
    # the SFT model's starting point re-saved: same vocab, untrained; it already holds every SID token
    assert extend_and_save(tiny_model, tiny_ws, base, 1)["added_tokens"] == 0
    res = train_merge(tiny_ws, MergeConfig(models=[str(out_dir), str(base)], weights=[3, 1],
                                           out=str(tiny_ws.root / "models" / "merged")))
    a, b, m = (AutoModelForCausalLM.from_pretrained(p) for p in (out_dir, base, res.out_dir))
    name = "model.layers.0.self_attn.q_proj.weight"
    expect = 0.75 * a.state_dict()[name] + 0.25 * b.state_dict()[name]
    assert torch.allclose(m.state_dict()[name], expect, atol=1e-6)
    lin = model_lineage(res.out_dir)
    assert lin["weights"] == [0.75, 0.25] and lin["sid_version"] == 1 and lin["parents"][0]["kind"] == "sft"
    with pytest.raises(ConfigError, match="at least two"):
        train_merge(tiny_ws, MergeConfig(models=[str(out_dir)]))


@pytest.mark.slow
def test_rft_keeps_only_correct_samples_and_trains(tiny_ws, tiny_model):
    """One round from an untrained model with the constrained sampler (every answer is a catalog SID);
    only answers whose first level matches the target (min_reward 0.25) survive and are trained on."""
    import duckdb

    from curation.rewards import prefix_match_levels
    from storage.datasets import resolve
    from trainers.config import load_config
    from trainers.rft import RFTConfig, train_rft

    cfg = load_config(RFTConfig, CONFIGS / "rft.cpu.yaml",
                      ["sampler=constrained", "n=4", "think_budget=8", "max_steps=2", "max_length=192",
                       "min_reward=0.25", "keep_per_prompt=2", "max_samples=6"], dataset="r3_curated@v1",
                      model=str(tiny_model))
    res = train_rft(tiny_ws, cfg)
    assert math.isfinite(res.metrics["loss"]["last"])
    rounds = json.loads(tiny_ws.query("SELECT stats FROM runs WHERE run_id = ?", [res.run_id])[0][0])["rounds"]
    assert rounds[0]["trained"] and 0 < rounds[0]["kept"] < rounds[0]["sampled"] == 6 * 4
    kept = resolve(tiny_ws, rounds[0]["dataset"])
    assert kept.parents[0]["name"] == "r3_curated"
    rows = duckdb.sql(f"SELECT answer_sids, target_sids, prompt_id FROM read_parquet('{kept.glob}')").fetchall()
    assert len(rows) == rounds[0]["kept"]
    for answer, target, _ in rows:
        assert prefix_match_levels(answer[0], target[0]) >= 1
    per_prompt = {}
    for _, _, pid in rows:
        per_prompt[pid] = per_prompt.get(pid, 0) + 1
    assert max(per_prompt.values()) <= 2
    assert (res.out_dir / "config.json").exists()


@pytest.mark.slow
def test_rft_engine_sampler_draws_n_per_prompt(tiny_ws, local_model_path):
    """The default sampler goes through the teacher engine's local backend on a model folder.

    SmolLM2 on purpose: the engine refuses truncated choices (finish_reason 'length'), so the model must end a
    short reply by itself within the budget, which a chat-tuned model does and an untrained one never does.
    (24 tokens: with the default seed the first choice ends after about 10; a request needs one usable choice.)"""
    from trainers.rft import RFTConfig, sample_round

    prompts = [[{"role": "user", "content": "Say hello in one word."}]]
    outs = sample_round(tiny_ws, local_model_path, prompts, RFTConfig(n=2, max_new_tokens=24), "rft:test:r1")
    assert len(outs) == 1 and len(outs[0]) == 2 and all(isinstance(t, str) and t for t in outs[0])
    # the engine cached the round under its own model name: a second call repeats no generation
    again = sample_round(tiny_ws, local_model_path, prompts, RFTConfig(n=2, max_new_tokens=24), "rft:test:r1")
    assert again == outs


@pytest.mark.slow
def test_distill_routes_each_task_to_its_teacher(tiny_ws, sft_model):
    from trainers.common import model_lineage
    from trainers.config import load_config
    from trainers.distill import DistillConfig, train_distill

    teacher = str(sft_model[0])
    cfg = load_config(DistillConfig, CONFIGS / "distill.cpu.yaml",
                      ["max_steps=2", "max_completion_length=8", "max_samples=4"],
                      dataset="r3_curated@v1", **{"teachers": {"r3_recommend": teacher}})
    res = train_distill(tiny_ws, cfg)
    assert math.isfinite(res.metrics["loss"]["last"])
    lin = model_lineage(res.out_dir)
    assert lin["routing"] == {"r3_recommend": teacher} and lin["stages"][0]["task"] == "r3_recommend"
    assert lin["base_model"] == model_lineage(teacher)["base_model"]   # no `model:`: the student is the teacher's base
    with pytest.raises(ConfigError, match="no teacher for task"):
        train_distill(tiny_ws, DistillConfig(dataset="r3_curated@v1", teachers={"other_task": teacher}))


@pytest.mark.slow
def test_bench_table_r0_to_r3_from_test_split(tiny_ws, tiny_model):
    from trainers.evaluate import bench_model

    res = bench_model(tiny_ws, tiny_model, max_users=2, ks=(1, 3), r2_tokens=16, caption_tokens=8)
    m = res.metrics
    n_test_items = tiny_ws.query("SELECT count(DISTINCT item_id) FROM splits WHERE split = 'test'")[0][0]
    assert m["R0"]["n"] == n_test_items and 0.0 <= m["R0"]["grounding_accuracy"] <= 1.0
    assert m["R1"] == {"scored": 0.0}
    assert m["R2"]["n"] == 2 and 0.0 <= m["R2"]["chain_score"] <= 1.0      # fixture items have categories
    assert m["R3"]["n"] == 2 and m["R3"]["invalid_sids"] == 0.0
    stored = json.loads(tiny_ws.query("SELECT metrics FROM evals WHERE eval_id = ?", [res.eval_id])[0][0])
    assert stored["R2"]["chain_score"] == m["R2"]["chain_score"]
