"""Export, tokenizer extension, configs and the trainers end to end on the tiny workspace (CPU, few steps)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from storage.errors import ConfigError, InputError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


def _load_and_generate(out_dir: Path) -> str:
    """Load a saved model back and generate one token (proves the folder is a usable model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    enc = tok("Hello", return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=tok.eos_token_id)
    assert gen.shape[1] == enc["input_ids"].shape[1] + 1
    assert "<|sid_begin|>" in tok.get_vocab() and "<s_a_0>" in tok.get_vocab()
    return tok.decode(gen[0, -1:])


def _finite(metrics: dict, key: str) -> None:
    assert key in metrics, metrics
    assert math.isfinite(metrics[key]["first"]) and math.isfinite(metrics[key]["last"])


def test_sft_export_mixes_think_ratio_and_drops_rejected(tiny_ws):
    from trainers.export import to_sft_dataset

    dv, ds = to_sft_dataset(tiny_ws, "r3_curated", think_ratio=None)
    assert dv.ref == "r3_curated@v1" and len(ds) == 10          # 12 rows, user 5's two rejected
    assert ds[0]["completion"][0]["role"] == "assistant"
    assert ds[0]["prompt"][-1]["role"] == "user"
    _, only_think = to_sft_dataset(tiny_ws, "r3_curated", think_ratio=1.0)
    assert len(only_think) == 5 and all(only_think["think"])
    _, mixed = to_sft_dataset(tiny_ws, "r3_curated", think_ratio=0.2)   # 5 non-think rows allow 1 think row
    assert sum(mixed["think"]) == 1 and len(mixed) == 6
    with pytest.raises(InputError, match="think_ratio"):
        to_sft_dataset(tiny_ws, "r3_curated", think_ratio=1.5)


def test_grpo_export_one_prompt_per_prompt_id_without_answers(tiny_ws):
    from trainers.export import to_grpo_dataset

    _, ds = to_grpo_dataset(tiny_ws, "r3_curated")
    assert len(ds) == 12                                   # rejected answers still give usable prompts
    assert all(m["role"] != "assistant" for row in ds["prompt"] for m in row)
    assert all(t.startswith("<|sid_begin|>") for t in ds["target_sid"])


def test_tokenizer_extension_mean_inits_and_keeps_sid_tokens_whole(tiny_ws, local_model_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.tokenizer import add_sid_tokens, sid_tokens

    tok = AutoTokenizer.from_pretrained(local_model_path)
    model = AutoModelForCausalLM.from_pretrained(local_model_path)
    old = model.get_input_embeddings().weight.shape[0]
    mean = model.get_input_embeddings().weight.mean(0).clone()
    toks = sid_tokens(tiny_ws, 1)
    assert toks[:2] == ["<|sid_begin|>", "<|sid_end|>"] and len(toks) == 2 + 2 + 4 + 2
    assert add_sid_tokens(model, tok, toks) == len(toks)
    assert add_sid_tokens(model, tok, toks) == 0                  # idempotent
    w = model.get_input_embeddings().weight
    assert w.shape[0] == old + len(toks)
    assert torch.allclose(w[old:], mean.expand(len(toks), -1), atol=1e-5)
    sid = "<|sid_begin|><s_a_1><s_b_2><s_c_0><|sid_end|>"
    ids = tok(sid, add_special_tokens=False)["input_ids"]
    assert len(ids) == 5 and tok.decode(ids, skip_special_tokens=True) == sid


def test_configs_load_and_trl_keys_exist():
    """Every shipped YAML validates, and every `trl:` key is a real field of the TRL config it feeds."""
    import dataclasses

    from trl import DistillationConfig, GRPOConfig, SFTConfig

    from trainers.config import load_config
    from trainers.registry import TRAINERS, get_trainer

    trl_cls = {"pretrain": SFTConfig, "sft": SFTConfig, "rl": GRPOConfig, "rft": SFTConfig,
               "distill": DistillationConfig}
    for path in sorted(CONFIGS.glob("*.yaml")):
        name = path.name.split(".")[0]
        assert name in TRAINERS, path
        cfg_cls, _ = get_trainer(name)
        cfg = load_config(cfg_cls, path)
        if name in trl_cls:
            fields = {f.name for f in dataclasses.fields(trl_cls[name])}
            assert set(cfg.trl) <= fields, (path, set(cfg.trl) - fields)
    gpu = yaml.safe_load((CONFIGS / "rl.gpu.yaml").read_text())
    assert gpu["use_vllm"] is True and gpu["trl"]["vllm_mode"] == "colocate" and gpu["bf16"] is True


def test_config_errors_name_file_and_field(tmp_path):
    from trainers.config import load_config
    from trainers.sft import SFTTrainConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: lots\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field 'max_steps'"):
        load_config(SFTTrainConfig, bad)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(SFTTrainConfig, None, ["max_steps"])
    cfg = load_config(SFTTrainConfig, CONFIGS / "sft.cpu.yaml", ["max_steps=7", "trl.warmup_steps=1"],
                      dataset="x@v1")
    assert cfg.max_steps == 7 and cfg.trl == {"warmup_steps": 1} and cfg.dataset == "x@v1"
    bad.write_text("model: m\n\nmax_steps: lots\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field 'max_steps' \(line 3\)"):
        load_config(SFTTrainConfig, bad)


def test_trl_key_that_is_also_a_recot_field_is_refused(tmp_path):
    """`max_length` is a recot field that recot passes to SFTConfig itself; also setting `trl.max_length`
    used to crash deep inside TRL with a duplicate-keyword TypeError."""
    from trainers.config import load_config
    from trainers.rl import RLConfig
    from trainers.sft import SFTTrainConfig

    both = tmp_path / "both.yaml"
    both.write_text("max_length: 128\ntrl:\n  warmup_steps: 1\n  max_length: 64\n")
    with pytest.raises(ConfigError, match=r"both.yaml: field 'trl' \(line 2\): trl.max_length is also the recot "
                                          r"field `max_length`; set it once, as top-level `max_length:`"):
        load_config(SFTTrainConfig, both)
    with pytest.raises(ConfigError, match=r"trl.temperature is also the recot field `temperature`.*"
                                          r"also clashing: use_vllm"):
        load_config(RLConfig, CONFIGS / "rl.cpu.yaml", ["trl.use_vllm=true", "trl.temperature=0.5"])
    with pytest.raises(ConfigError, match=r"trl.output_dir is set by recot \(use `out:`\)"):
        load_config(SFTTrainConfig, None, ["trl.output_dir=/tmp/x"])
    both.write_text("max_length: 128\ntrl:\n  warmup_steps: 1\n")   # trl keys recot does not own are fine
    ok = load_config(SFTTrainConfig, both, ["trl.lr_scheduler_type=cosine"])
    assert ok.max_length == 128 and ok.trl == {"warmup_steps": 1, "lr_scheduler_type": "cosine"}


def _loss_decreases(metrics: dict) -> None:
    """Trained on one repeated row, the second step's loss (after one update) is below the first's."""
    loss = metrics["loss"]
    assert loss["n"] >= 2 and math.isfinite(loss["first"]) and math.isfinite(loss["last"]), loss
    assert loss["last"] < loss["first"], loss


@pytest.mark.slow
def test_pretrain_on_catalog_corpus_learns_and_saves_a_loadable_model(tiny_ws):
    """On the embedded SmolLM2 (`model: null`) on purpose: the one trainer test here where the SID tokens are
    added to a pretrained model with tied embeddings, trained and saved (`tiny_model` already has them), so the
    saved vocabulary's SID tokens are the trainer's doing. The other trainers run on `tiny_model`."""
    from storage.runs import get_run
    from trainers.config import load_config
    from trainers.pretrain import PretrainConfig, train_pretrain

    cfg = load_config(PretrainConfig, CONFIGS / "pretrain.cpu.yaml", ["max_steps=2", "max_length=64",
                                                                     "max_samples=1", "learning_rate=1e-4"])
    res = train_pretrain(tiny_ws, cfg)
    _loss_decreases(res.metrics)
    assert res.out_dir.parent == tiny_ws.root / "models"
    run = get_run(tiny_ws, res.run_id)
    assert run["status"] == "done" and run["stats"]["metrics"] == res.metrics
    assert run["stats"]["added_tokens"] == 10                       # 2 markers + 2 + 4 + 2 level tokens
    _load_and_generate(res.out_dir)


def _recording(build):
    """Wrap `build_rewards` so each reward call TRL makes is kept: (name, completions, kwargs, rewards)."""
    import functools

    calls: list[tuple[str, list, dict, list[float]]] = []

    def build_and_record(*args, **kwargs):
        def wrap(f):
            @functools.wraps(f)
            def recorded(prompts, completions, **kw):
                out = f(prompts, completions, **kw)
                calls.append((f.__name__, list(completions), kw, list(out)))
                return out
            return recorded
        return [wrap(f) for f in build(*args, **kwargs)]

    return build_and_record, calls


@pytest.mark.slow
def test_rl_grpo_scores_its_completions_with_the_catalog_rewards(tiny_ws, tiny_model, monkeypatch):
    import statistics

    import trainers.rl as rl
    from storage.sid_catalog import SidCatalog
    from trainers.config import load_config
    from trainers.rl import RLConfig, train_rl

    build = rl.build_rewards
    recorder, calls = _recording(build)
    monkeypatch.setattr(rl, "build_rewards", recorder)
    cfg = load_config(RLConfig, CONFIGS / "rl.cpu.yaml", ["max_steps=2", "max_completion_length=8"],
                      dataset="r3_curated@v1", model=str(tiny_model))
    res = train_rl(tiny_ws, cfg)
    _finite(res.metrics, "loss")
    names = ("format_reward", "sid_validity_reward", "prefix_partial_sid_reward", "ndcg_rank_reward")
    assert [c[0] for c in calls] == list(names) * 2                  # every reward, once per step
    catalog = SidCatalog.load(tiny_ws, 1).sid_to_item
    for _, comps, kw, out in calls:
        # TRL handed each reward the generated completions with each row's own reference SIDs
        assert len(out) == len(comps) == len(kw["target_sid"]) > 0
        assert all(sid in catalog for sid in kw["target_sid"]) and kw["target_sids"][0][0] == kw["target_sid"][0]
        assert all(math.isfinite(x) for x in out)
    for name, _, _, out in calls[:len(names)]:                      # what was logged is what the rewards gave
        assert res.metrics[f"rewards/{name}/mean"]["first"] == pytest.approx(statistics.fmean(out), abs=1e-5)
    # the same catalog-bound rewards score the reference answer above what the untrained model wrote
    funcs = build(tiny_ws, cfg, 1)
    _, comps, kw, _ = calls[0]
    gold = [[{"role": "assistant", "content": ("<think>\nThe user likes this topic.\n</think>\n\n" if th
                                               else "<think>\n\n</think>\n\n") + sid}]
            for th, sid in zip(kw["think"], kw["target_sid"])]

    def total(completions):
        return [sum(v) for v in zip(*(f(None, completions, **kw) for f in funcs))]

    gold_scores, model_scores = total(gold), total(comps)
    assert all(g > m for g, m in zip(gold_scores, model_scores)), (gold_scores, model_scores, comps)
    assert gold_scores[0] == pytest.approx(len(names) + 0.1)          # all four satisfied (+ validity bonus)


def test_failed_training_marks_the_run_failed(tiny_ws):
    from storage.runs import get_run, list_runs
    from trainers.sft import SFTTrainConfig, train_sft

    with pytest.raises(ConfigError, match="no-such-model not found"):
        train_sft(tiny_ws, SFTTrainConfig(dataset="r3_curated@v1", model=str(tiny_ws.root / "no-such-model")))
    runs = list_runs(tiny_ws, "train-sft")
    assert runs and runs[0]["status"] == "failed"
    assert get_run(tiny_ws, runs[0]["run_id"])["error"].startswith("ConfigError: model folder")


def test_save_model_refuses_to_overwrite_a_foreign_folder(tmp_path):
    from storage.errors import RecotError
    from trainers.common import save_model

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RecotError, match="not a recot model folder"):
        save_model(object(), object(), foreign, {})
    assert (foreign / "notes.txt").read_text() == "keep me"
