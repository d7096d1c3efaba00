"""trainers.models (small starting models derived from the embedded SmolLM2) and trainers.windows (sliding-window
R3 direct answers): what they build, that trainers accept them, and that windows never leak valid/test items."""
from __future__ import annotations

import json

import pytest
import torch


def test_scratch_model_shares_the_tokenizer_adds_sid_tokens_and_trains(tiny_ws, tmp_path, local_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.common import LINEAGE_FILE, model_lineage
    from trainers.models import scratch_model
    from trainers.tokenizer import sid_tokens

    info = scratch_model(tiny_ws, tmp_path / "m", layers=1, hidden=32, heads=2, seed=3)
    base_tok = AutoTokenizer.from_pretrained(local_model_path)
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32
    # the base vocabulary unchanged, the SID tokens appended, one embedding row per token, tied head
    assert {t: i for t, i in tok.get_vocab().items() if i < len(base_tok)} == base_tok.get_vocab()
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) == 1 for t in sid_tokens(tiny_ws, 1))
    assert model.get_input_embeddings().weight.shape[0] == len(tok) == info["vocab"]
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert (tmp_path / "m" / LINEAGE_FILE).exists() and model_lineage(tmp_path / "m")["sid_version"] == 1
    # seeded: the same seed gives the same weights, another seed different ones
    scratch_model(tiny_ws, tmp_path / "m2", layers=1, hidden=32, heads=2, seed=3)
    scratch_model(tiny_ws, tmp_path / "m3", layers=1, hidden=32, heads=2, seed=4)
    w = [AutoModelForCausalLM.from_pretrained(tmp_path / d).model.layers[0].mlp.up_proj.weight for d in ("m2", "m3")]
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, w[0])
    assert not torch.equal(w[0], w[1])


def test_scratch_model_refuses_heads_that_do_not_divide_hidden(tiny_ws, tmp_path):
    from storage.errors import ConfigError
    from trainers.models import scratch_model

    with pytest.raises(ConfigError, match="multiple of heads"):
        scratch_model(tiny_ws, tmp_path / "m", hidden=30, heads=4)


def test_truncated_model_keeps_the_first_layers_and_the_embeddings(tiny_ws, tmp_path, local_model_path):
    from transformers import AutoModelForCausalLM

    from storage.errors import ConfigError
    from trainers.models import truncated_model

    info = truncated_model(tiny_ws, tmp_path / "t", layers=2)
    base = AutoModelForCausalLM.from_pretrained(local_model_path)
    small = AutoModelForCausalLM.from_pretrained(tmp_path / "t")
    assert small.config.num_hidden_layers == 2 == len(small.model.layers) and info["added_tokens"] > 0
    n_base = base.get_input_embeddings().weight.shape[0]
    assert torch.equal(small.get_input_embeddings().weight[:n_base], base.get_input_embeddings().weight)
    for i in range(2):
        assert torch.equal(small.model.layers[i].self_attn.q_proj.weight, base.model.layers[i].self_attn.q_proj.weight)
    assert info["parameters"] < sum(p.numel() for p in base.parameters())
    with pytest.raises(ConfigError, match="layers must be within"):
        truncated_model(tiny_ws, tmp_path / "t2", layers=99)


def test_windows_slide_over_train_only_in_the_evaluator_prompt(tiny_ws):
    from trainers.prompts import r3_messages
    from trainers.windows import NO_THINK_ANSWER, window_rows

    rows = window_rows(tiny_ws, 1, max_history=2, min_history=1)
    splits = tiny_ws.query("SELECT user_id, item_id, split, position, ts FROM splits ORDER BY user_id, position")
    train = {}
    for u, it, sp, _, ts in splits:
        if sp == "train":
            train.setdefault(u, []).append((it, ts))
    # the fixture: 6 users × 4 train items → windows at train ranks 1, 2, 3
    assert len(rows) == sum(len(v) - 1 for v in train.values()) == 18
    held_out = {(u, it) for u, it, sp, _, _ in splits if sp != "train"}
    sids = dict(tiny_ws.query("SELECT item_id, sid FROM item_sids WHERE sid_version = 1"))
    titles = dict(tiny_ws.query("SELECT item_id, title FROM items"))
    for r in rows:
        items = r["history_item_ids"] + r["target_item_ids"]
        assert not any((r["user_id"], it) in held_out for it in items)
        k = json.loads(r["extra"])["train_rank"]
        seq = train[r["user_id"]]
        assert r["target_item_ids"] == [seq[k][0]] and r["history_item_ids"] == [it for it, _ in seq[max(0, k - 2):k]]
        hist = [(titles[it], sids[it], ts) for it, ts in seq[max(0, k - 2):k]]
        assert r["messages"][:-1] == r3_messages(hist, think=False, history_format="sid", dates=False)
        assert r["messages"][-1]["content"] == f"{NO_THINK_ANSWER}{sids[seq[k][0]]} {titles[seq[k][0]]}"
        assert "(20" not in r["messages"][0]["content"] and "Movie" not in r["messages"][0]["content"]
    assert len({r["sample_id"] for r in rows}) == len(rows)


def test_windows_become_a_dataset_version_sft_trains_on(tiny_ws, tmp_path):
    from trainers.models import scratch_model
    from trainers.sft import SFTTrainConfig, train_sft
    from trainers.windows import write_r3_windows

    dv = write_r3_windows(tiny_ws, "r3_windows", max_history=3, min_history=1, stride=2)
    assert dv.rows == 6 * 2 and dv.manifest["config"]["stride"] == 2   # train ranks 1 and 3
    scratch_model(tiny_ws, tmp_path / "m", layers=1, hidden=32, heads=2)
    res = train_sft(tiny_ws, SFTTrainConfig(model=str(tmp_path / "m"), dataset=dv.ref, max_steps=12,
                                            per_device_train_batch_size=4, learning_rate=1e-2, max_length=128))
    loss = res.metrics["loss"]
    assert loss["last"] < loss["first"]
    lineage = json.loads((res.out_dir / "recot_lineage.json").read_text())
    assert lineage["datasets"] == [dv.ref] and lineage["added_tokens"] == 0
