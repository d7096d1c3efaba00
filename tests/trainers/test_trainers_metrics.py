"""Evaluation metrics on hand-computed cases (numbers worked out in the comments)."""
from __future__ import annotations

import math

import pytest

from curation.scoring import ordered_alignment, rouge_l_f1, set_prf
from storage.sid import format_sid
from trainers.metrics import (
    action_similarity,
    caption_f1,
    per_domain,
    race_merge,
    ranking_metrics,
    selection_prf,
    topic_generation_scores,
)

A, B, C, D, E, F = (format_sid((i, 0, 0)) for i in range(6))


def test_ranking_metrics_single_and_several_targets():
    m = ranking_metrics([[A, B, C], [C, A, B], [D, E, F]], [A, A, A], ks=(1, 3))
    assert m["HR@1"] == pytest.approx(1 / 3)                   # only user 0 has A first
    assert m["HR@3"] == pytest.approx(2 / 3) == m["Recall@3"]  # one target: recall = HR
    assert m["NDCG@3"] == pytest.approx((1 + 1 / math.log2(3)) / 3)   # ranks 1 and 2 → (1 + 0.631) / 3
    two = ranking_metrics([[A, B]], [[A, C]], ks=(2,))
    assert two["HR@2"] == 1.0 and two["Recall@2"] == 0.5       # one of two targets found
    assert two["NDCG@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))  # DCG 1 over ideal 1 + 1/log2(3)
    dup = ranking_metrics([[B, B, A]], [A], ks=(2,))          # a repeated SID does not push A into the top 2
    assert dup["HR@2"] == 0.0


def test_race_merge_think_first_half_each_deduplicated():
    think, no_think = [A, B, C], [B, D, E]
    assert race_merge(think, no_think, 4) == [A, B, D]         # [A, B] + [B, D], the second B dropped
    assert race_merge(think, no_think, 5) == [A, B, C, D]      # ⌈5/2⌉ = 3 think, ⌊5/2⌋ = 2 no-think
    assert race_merge([], no_think, 4) == [B, D]
    m = ranking_metrics([race_merge(think, no_think, 4)], [D], ks=(1, 3))
    assert m["HR@1"] == 0.0 and m["HR@3"] == 1.0 and m["NDCG@3"] == pytest.approx(0.5)   # D at rank 3


def test_per_domain_groups_users_by_target_domain():
    out = per_domain([[A], [B], [C]], [A, A, C], ["movies", "books", "movies"], ks=(1,))
    assert out["movies"]["HR@1"] == 1.0 and out["movies"]["n"] == 2.0
    assert out["books"]["HR@1"] == 0.0 and out["books"]["n"] == 1.0


def test_caption_word_f1_against_title_and_categories():
    # caption words: crime, thriller, heat (a/about: stopwords); reference: heat, 1995, crime, thriller
    f = caption_f1("A crime thriller about Heat", "Heat (1995)", ["Crime", "Thriller"])
    assert f == pytest.approx(2 * 1.0 * 0.75 / 1.75)           # P = 3/3, R = 3/4 → 0.857
    assert caption_f1(f"<think>\nheat heat\n</think>\n\n{A} Comedy", "Heat", ["Crime"]) == 0.0  # think block ignored
    assert caption_f1("", "Heat", []) == 0.0


def test_action_selection_precision_recall_f1():
    m = selection_prf(["1", "2", "3", "3"], ["2", "3", "4", "5"])
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(4 / 7)                     # 2·(2/3)(1/2) / (2/3 + 1/2)
    assert set_prf([], ["x"]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_ordered_alignment_keeps_order():
    total, pairs = ordered_alignment([[0.0, 1.0], [1.0, 0.0]])   # crossing pairs: only one can count
    assert total == 1.0 and len(pairs) == 1
    total, pairs = ordered_alignment([[1.0, 0.0], [0.0, 0.5]])
    assert total == 1.5 and pairs == [(0, 0), (1, 1)]
    assert rouge_l_f1(["a", "b", "c"], ["a", "c"]) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_topic_generation_aligns_events_in_order():
    gold = {"logic_chain": {"name": "u", "events": [
        {"action": "prefers Drama", "logic": "drama dominates"},
        {"action": "shifts from Drama to Comedy", "logic": "comedy rises after march"},
        {"action": "prefers Comedy", "logic": "only comedy lately"}]}}
    pred = [{"action": "prefers comedy", "logic": "only comedy lately"},
            {"action": "Prefers drama.", "logic": "drama dominates"},
            {"action": "shifts from drama to comedy", "logic": "comedy rises"}]
    s = topic_generation_scores(pred, gold)
    # gold 0 ↔ pred 1 and gold 1 ↔ pred 2 align in order (total 2); gold 2 ↔ pred 0 would cross them
    assert s["aligned"] == 2.0 and s["action_f1"] == pytest.approx(2 / 3)
    # logic on aligned pairs: identical (1.0) and "comedy rises" vs "comedy rises after march"
    # (token F1 = ROUGE-L = 2·1·0.5/1.5 = 2/3) → sum 5/3 over 3 events each side → F1 = 5/9
    assert s["logic_f1"] == pytest.approx(5 / 9) and s["logic_token_f1"] == pytest.approx(5 / 9)
    assert topic_generation_scores("not json", gold)["action_f1"] == 0.0
    assert action_similarity("Drama; comedy", "comedy") == pytest.approx(2 / 3)   # 1 of 2 sub-actions
