"""`rollout: beam` (MiniOneRec): GRPO's completions for a prompt are the distinct catalog SIDs of one
trie-constrained beam search, in beam order, scored by the rank reward — an untrained model gets rewards.

Beam order, trie validity and the rank reward do not depend on what a pretrained LM knows, so the model is
`tiny_model` (conftest.py: a from-scratch 1-layer model with SmolLM2's tokenizer and the SID tokens)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"


def test_beam_rollout_defaults_to_the_rank_reward_and_refuses_mismatches():
    from trainers.rl import BEAM_REWARDS, RLConfig

    assert RLConfig(rollout="beam").rewards == BEAM_REWARDS == ["beam_rank", "prefix_partial"]
    assert RLConfig(rollout="beam", rewards=["exact_hit"]).rewards == ["exact_hit"]   # explicit rewards win
    assert "beam_rank" not in RLConfig().rewards
    with pytest.raises(ValueError, match="set `rollout: beam`"):
        RLConfig(rewards=["beam_rank"])
    with pytest.raises(ValueError, match="use_vllm: false"):
        RLConfig(rollout="beam", use_vllm=True)


@pytest.mark.slow
def test_beam_rollouts_are_distinct_catalog_sids_with_nonzero_rank_rewards(tiny_ws, tiny_model, monkeypatch):
    from test_trainers_core import _recording

    import trainers.rl as rl
    from storage.sid import extract_sids
    from storage.sid_catalog import SidCatalog
    from trainers.config import load_config

    recording, calls = _recording(rl.build_rewards)
    monkeypatch.setattr(rl, "build_rewards", recording)
    g = 4
    cfg = load_config(rl.RLConfig, CONFIGS / "rl.cpu.yaml",
                      ["max_steps=1", "rollout=beam", "rewards=[beam_rank,prefix_partial]", f"num_generations={g}",
                       f"per_device_train_batch_size={g}", "max_samples=3"], dataset="r3_curated@v1",
                      model=str(tiny_model))
    res = rl.train_rl(tiny_ws, cfg)
    assert math.isfinite(res.metrics["loss"]["last"])
    assert [c[0] for c in calls] == ["beam_rank_reward", "prefix_partial_sid_reward"]
    catalog = set(SidCatalog.load(tiny_ws, 1).all_sids())
    _, comps, kw, rank = calls[0]
    texts = [c[0]["content"] if isinstance(c, list) else c for c in comps]
    assert len(texts) == g                                            # one prompt × g beams per step
    answers = [extract_sids(t.split("</think>")[-1]) for t in texts]
    assert all(len(a) == 1 and a[0] in catalog for a in answers), texts
    sids = [a[0] for a in answers]
    assert len(set(sids)) == g, sids                                  # distinct items, one per beam
    target = kw["target_sid"][0]
    # the rank reward is the rule for beam order: a hit earns 1, a miss at rank r a penalty shrinking with r
    norm = sum(1 / math.log2(j + 2) for j in range(g))
    want = [1.0 if s == target else -(1 / math.log2(r + 2)) / norm for r, s in enumerate(sids)]
    assert rank == pytest.approx(want)
    partial = calls[1][3]
    assert any(x != 0 for x in rank) and all(x >= 0.1 for x in partial)  # every beam is valid: bonus at least
    assert res.metrics["rewards/beam_rank_reward/mean"]["first"] == pytest.approx(sum(rank) / g, abs=1e-5)


@pytest.mark.slow
def test_beam_rollout_think_prompts_reason_once_then_beam(tiny_ws, tiny_model, monkeypatch):
    """TRL's side of the contract: a batch with each prompt `num_generations` times in a row (a think and a
    no-think prompt here) → per row the prompt's ids and `<think>…</think>` + one of g distinct SIDs + EOS.

    The reasoning is the model's own (stage 1 of `decode` runs for real), tagged with its call number: an untrained
    model with tied embeddings greedily repeats the prompt's last token ("\n" after `<think>`), so its reasoning
    strips to empty and a think row would look like a no-think one. The tag makes visible which group reasoned,
    how often, and that each of the group's completions carries that reasoning."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    import trainers.decoding as decoding
    from storage.sid import extract_sids
    from trainers.common import load_model_and_tokenizer
    from trainers.export import to_grpo_dataset
    from trainers.rl import RLConfig, beam_rollout

    real = decoding.generate_reasoning
    reasoned: list[tuple[list[str], list[tuple[str, bool]]]] = []

    def tagged(model, tokenizer, texts, **kw):
        got = [(f"{r} reasoning-{len(reasoned) + 1}".strip(), c) for r, c in real(model, tokenizer, texts, **kw)]
        reasoned.append((list(texts), got))
        return got

    monkeypatch.setattr(decoding, "generate_reasoning", tagged)
    g = 3
    cfg = RLConfig(rollout="beam", num_generations=g, max_completion_length=12)
    _, ds = to_grpo_dataset(tiny_ws, "r3_curated@v1")
    rows = [next(r for r in ds if r["think"]), next(r for r in ds if not r["think"])]
    model, tok, _ = load_model_and_tokenizer(str(tiny_model), ws=tiny_ws, sid_version=1)
    model.train()
    trainer = SimpleNamespace(model=model, model_wrapped=model, accelerator=Accelerator(cpu=True),
                              args=SimpleNamespace(ds3_gather_for_generation=True, gradient_checkpointing_kwargs=None),
                              num_generations=g, processing_class=tok, eos_token_ids=[tok.eos_token_id])
    out = beam_rollout(tiny_ws, cfg, 1, ds)([r["prompt"] for r in rows for _ in range(g)], trainer)
    assert model.training                                             # generation left the train mode as it was
    assert out["logprobs"] is None and len(out["prompt_ids"]) == len(out["completion_ids"]) == 2 * g
    assert [len(texts) for texts, _ in reasoned] == [1]               # one reasoning: the think group's, not per beam
    reasoning = reasoned[0][1][0][0]
    for k, row in enumerate(rows):
        texts = [tok.decode(c) for c in out["completion_ids"][k * g:(k + 1) * g]]
        assert all(c[-1] == tok.eos_token_id for c in out["completion_ids"][k * g:(k + 1) * g])
        assert len({tuple(p) for p in out["prompt_ids"][k * g:(k + 1) * g]}) == 1
        heads = {t.split("</think>")[0] for t in texts}
        assert len(heads) == 1                                         # one reasoning shared by the group
        assert heads.pop() == (f"<think>\n{reasoning}\n" if row["think"] else "<think>\n\n")   # no-think: empty
        sids = [s for t in texts for s in extract_sids(t.split("</think>")[-1])]
        assert len(sids) == len(set(sids)) == g
    with pytest.raises(RuntimeError, match="in a row"):
        beam_rollout(tiny_ws, cfg, 1, ds)([rows[0]["prompt"], rows[1]["prompt"], rows[0]["prompt"]], trainer)
