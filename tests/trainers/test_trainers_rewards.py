"""Reward functions and ranking metrics on hand-computed cases (curation/rewards.py)."""
from __future__ import annotations

import math

import pytest

from curation.rewards import (
    answer_sids,
    bind_rewards,
    exact_hit,
    exact_hit_reward,
    format_reward,
    hit_at_k,
    ndcg_at_k,
    ndcg_rank_reward,
    prefix_match_levels,
    prefix_partial_reward,
    prefix_partial_sid_reward,
    recall_at_k,
    sid_validity_reward,
)
from storage.answer import reasoning_and_answer
from storage.sid import format_sid

T = format_sid((1, 2, 3))          # target
L2 = format_sid((1, 2, 9))         # 2 levels right
L1 = format_sid((1, 7, 3))         # 1 level right (3rd code equal does not count: prefix only)
L0 = format_sid((5, 2, 3))         # first level wrong
T4 = format_sid((1, 2, 3, 1))      # collision sibling with an extra level
BAD = "<|sid_begin|><s_a_1><s_c_2><|sid_end|>"  # skips level b
CATALOG = {T, L2, L1, T4}


def test_prefix_match_levels_counts_leading_equal_codes():
    assert prefix_match_levels(T, T) == 3
    assert prefix_match_levels(L2, T) == 2
    assert prefix_match_levels(L1, T) == 1
    assert prefix_match_levels(L0, T) == 0
    assert prefix_match_levels(T4, T) == 3
    assert prefix_match_levels(BAD, T) == 0
    assert prefix_match_levels(None, T) == 0
    assert prefix_match_levels("  " + T + " ", T) == 3


def test_prefix_partial_reward_schedule_and_validity_bonus():
    assert prefix_partial_reward(T, T) == pytest.approx(1.1)
    assert prefix_partial_reward(L2, T) == pytest.approx(0.6)
    assert prefix_partial_reward(L1, T) == pytest.approx(0.35)
    assert prefix_partial_reward(L0, T) == pytest.approx(0.1)       # valid SID, nothing matched
    assert prefix_partial_reward(BAD, T) == 0.0                     # malformed: nothing at all
    assert prefix_partial_reward("", T) == 0.0
    # 4-level sibling shares 3 codes but is not the item: 2-level credit only
    assert prefix_partial_reward(T4, T, CATALOG) == pytest.approx(0.6)
    # well-formed but not in the catalog: prefix credit, no validity bonus
    assert prefix_partial_reward(L0, T, CATALOG) == 0.0
    assert prefix_partial_reward(format_sid((1, 2, 200)), T, CATALOG) == pytest.approx(0.5)


def test_exact_hit_with_and_without_k():
    assert exact_hit([L2, T], T)
    assert not exact_hit([L2, T], T, k=1)
    assert exact_hit(T, T)
    assert not exact_hit([], T)
    assert not exact_hit([BAD], T)
    assert exact_hit([L2, T], [L0, T], k=2)


def test_ndcg_positions_hand_computed():
    assert ndcg_at_k([T, L1, L2], T, 10) == pytest.approx(1.0)
    assert ndcg_at_k([L1, T, L2], T, 10) == pytest.approx(1 / math.log2(3))   # 0.6309
    assert ndcg_at_k([L1, L2, T], T, 10) == pytest.approx(0.5)
    assert ndcg_at_k([L1, L2, T], T, 2) == 0.0                               # outside the cut-off
    assert ndcg_at_k([L1, L1, T], T, 10) == pytest.approx(0.5)               # duplicates keep their slot
    assert ndcg_at_k([], T, 10) == 0.0
    # two targets at ranks 1 and 3: (1 + 0.5) / (1 + 1/log2(3))
    assert ndcg_at_k([T, L1, L2], [T, L2], 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_hit_and_recall_at_k():
    ranked = [L1, L2, T]
    assert hit_at_k(ranked, T, 1) == 0.0
    assert hit_at_k(ranked, T, 3) == 1.0
    assert recall_at_k(ranked, [T, L0], 3) == 0.5
    assert recall_at_k(ranked, T, 5) == 1.0
    assert recall_at_k([T, T], [T, L2], 2) == 0.5  # a repeated SID is counted once


def test_split_think_and_answer_sids_ignore_sids_in_reasoning():
    text = f"<think>I saw {L1} before</think> I recommend {T} then {L2}"
    reasoning, answer = reasoning_and_answer(text)
    assert L1 in reasoning and L1 not in answer
    assert answer_sids(text) == [T, L2]
    assert reasoning_and_answer(f"<think>never closed {T}") == (f"never closed {T}", "")
    assert answer_sids([{"role": "assistant", "content": text}]) == [T, L2]


def test_trl_reward_functions_on_strings_and_chat_completions():
    comps = [
        f"<think>because</think>{T}",                       # exact
        [{"role": "assistant", "content": f"<think>x</think>{L2}"}],  # chat format, 2 levels
        f"<think>x</think>{BAD}",                           # malformed
        f"{L1}",                                            # no think block
        "<think>unfinished",                                # no answer
    ]
    targets = [T] * len(comps)
    assert exact_hit_reward(None, comps, target_sid=targets) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert prefix_partial_sid_reward(None, comps, target_sid=targets) == pytest.approx([1.1, 0.6, 0.0, 0.35, 0.0])
    assert format_reward(None, comps) == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert format_reward(None, comps, think=[True] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert format_reward(None, [f"<think></think>{T}", f"<think>r</think>{T}"], think=[False, False]) == [1.0, 0.0]
    assert sid_validity_reward(None, comps) == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert sid_validity_reward(None, comps, valid_sids={T}) == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_ndcg_rank_reward_uses_the_answer_list_and_target_sids_column():
    comps = [f"{T} {L1}", f"{L1} {T}", f"{L1} {L2}"]
    got = ndcg_rank_reward(None, comps, target_sids=[[T], [T], [T]], miss_penalty=0.2)
    assert got == pytest.approx([1.0, 1 / math.log2(3), -0.2])


def test_bind_rewards_keeps_names_and_binds_catalog():
    funcs = bind_rewards(["sid_validity", "prefix_partial"], valid_sids={T})
    assert [f.__name__ for f in funcs] == ["sid_validity_reward", "prefix_partial_sid_reward"]
    # TRL passes extra kwargs (trainer_state, completion_ids, ...) — they must be absorbed.
    assert funcs[1](["p"], [L2], target_sid=[T], trainer_state=None, completion_ids=[[1]]) == pytest.approx([0.5])
    assert funcs[0](["p"], [T]) == [1.0]
    with pytest.raises(KeyError, match="unknown reward"):
        bind_rewards(["nope"])


def test_reference_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 reference values for 1 completions"):
        exact_hit_reward(None, [T], target_sid=[T, T])


def test_minionerec_rank_is_zero_for_hitless_groups_and_beam_rank_otherwise():
    """MiniOneRec's ranking reward (rule + ndcg_rule): group 1 has a hit at beam 2 → 1.0 there, rank penalties
    for the misses (-(1/log2(r+2)) / Σ); group 2 has no hit → all 0 (beam_rank would still penalise it)."""
    from curation.rewards import REWARD_FUNCS

    t, w = format_sid((1, 2, 3)), format_sid((0, 0, 0))
    comps = [f"<think>\n\n</think>\n\n{s}" for s in (w, t, w, w, w, w, w)]
    targets = [t] * 7
    norm = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    got = REWARD_FUNCS["minionerec_rank"](None, comps[:6], target_sid=targets[:6], num_generations=3)
    assert got[:3] == pytest.approx([-1 / norm, 1.0, -(1 / math.log2(4)) / norm])
    assert got[3:] == [0.0, 0.0, 0.0]
    beam = REWARD_FUNCS["beam_rank"](None, comps[:6], target_sid=targets[:6], num_generations=3)
    assert beam[:3] == pytest.approx(got[:3]) and all(x < 0 for x in beam[3:])
    with pytest.raises(ValueError, match="num_generations"):
        REWARD_FUNCS["minionerec_rank"](None, comps[:3], target_sid=targets[:3])


def test_rank_rewards_need_beam_rollouts():
    from trainers.rl import RLConfig

    with pytest.raises(ValueError, match="minionerec_rank scores beam positions"):
        RLConfig(rewards=["minionerec_rank"])
    assert RLConfig(rollout="beam", rewards=["minionerec_rank"]).rewards == ["minionerec_rank"]
