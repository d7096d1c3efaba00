"""Baselines on a hand-built interaction table.

train: u1 {i1, i2}, u2 {i1, i2, i3}, u3 {i3, i4}, u4 {i1}; i5 never interacted with.
popularity: i1 3, i2 2, i3 2, i4 1, i5 0.
cosine (binary user vectors): i1·i2 = 2/√(3·2) = 0.816, i1·i3 = 1/√6 = 0.408, i2·i3 = 1/√4 = 0.5,
i3·i4 = 1/√2 = 0.707, every other pair 0.
"""
from __future__ import annotations

import math

import pytest

from trainers.baselines import ItemKNN, popularity, recommend

TRAIN = [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u2", "i3"), ("u3", "i3"), ("u3", "i4"),
         ("u4", "i1")]
ITEMS = ["i1", "i2", "i3", "i4", "i5"]


def test_most_popular_counts_train_interactions_ties_in_item_order():
    assert popularity(TRAIN) == {"i1": 3, "i2": 2, "i3": 2, "i4": 1}
    got = recommend("popular", TRAIN, ITEMS, [set(), {"i1", "i3"}], 4)
    assert got[0] == ["i1", "i2", "i3", "i4"] == got[1]        # same list for everyone …
    got = recommend("popular", TRAIN, ITEMS, [set(), {"i1", "i3"}], 4, exclude_seen=True)
    assert got[1] == ["i2", "i4", "i5"]                         # … unless seen items are excluded


def test_item_knn_neighbours_and_scores():
    knn = ItemKNN().fit(TRAIN, ITEMS)
    s = knn.scores([{"i3"}, {"i1", "i4"}])
    assert s[0].tolist() == pytest.approx([1 / math.sqrt(6), 0.5, 0.0, 1 / math.sqrt(2), 0.0], abs=1e-6)
    assert s[1][1] == pytest.approx(2 / math.sqrt(6), abs=1e-6)          # i2 via i1
    assert s[1][2] == pytest.approx(1 / math.sqrt(6) + 1 / math.sqrt(2), abs=1e-6)   # i3 via i1 and i4
    # history {i3}: i4 (.707), i2 (.5), i1 (.408), then the zero-score ties by popularity: i3, i5
    assert recommend("item_knn", TRAIN, ITEMS, [{"i3"}], 5)[0] == ["i4", "i2", "i1", "i3", "i5"]
    assert recommend("item_knn", TRAIN, ITEMS, [{"i3"}], 5, exclude_seen=True)[0] == ["i4", "i2", "i1", "i5"]
    # one neighbour per item: i1 keeps only i2, so a history {i1} scores i3 at 0
    one = ItemKNN(neighbours=1).fit(TRAIN, ITEMS).scores([{"i1"}])[0]
    assert one[1] > 0 and one[2] == 0.0


def test_random_is_seeded_distinct_and_respects_exclusion():
    a = recommend("random", TRAIN, ITEMS, [set(), {"i1"}], 5, seed=3)
    b = recommend("random", TRAIN, ITEMS, [set(), {"i1"}], 5, seed=3)
    assert a == b and sorted(a[0]) == ITEMS
    ex = recommend("random", TRAIN, ITEMS, [{"i1", "i2"}], 5, seed=3, exclude_seen=True)[0]
    assert sorted(ex) == ["i3", "i4", "i5"]
    with pytest.raises(ValueError, match="unknown baseline"):
        recommend("bpr", TRAIN, ITEMS, [set()], 5)


def test_eval_harness_scores_model_rows_and_baselines_on_the_same_users(tiny_ws, tmp_path, monkeypatch):
    """evaluate_model with a stubbed decoder: the think / no-think / race rows and the baselines share users,
    targets and the seen-item protocol, and land in one stored evals row."""
    import json

    import trainers.decoding as decoding
    import trainers.evaluate as ev
    from trainers.decoding import Decoded

    cases = ev.test_cases(tiny_ws, 1)
    seen_seen: list = []

    def fake_ranked(model, tok, trie, prompts, *, think, num_beams, exclude=None, **kw):
        seen_seen.append(exclude)
        return [[c["target_sid"]] for c in cases]                  # no-think: always right at rank 1

    def fake_decode(model, tok, trie, prompts, *, think, num_beams, exclude=None, **kw):
        other = [c["seen_sids"][0] for c in cases]                  # think: always a seen item
        return [Decoded("because", True, [o]) for o in other]

    monkeypatch.setattr(ev, "load_for_eval", lambda *a, **k: (None, None))
    monkeypatch.setattr(decoding, "generate_ranked", fake_ranked)
    monkeypatch.setattr(decoding, "decode", fake_decode)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    res = ev.evaluate_model(tiny_ws, model_dir, ks=(1, 2), modes=("no_think", "think", "race"), sid_version=1,
                            baselines=True, exclude_seen=True)
    assert list(res.metrics) == ["random", "popular", "item_knn", "no_think", "think", "race"]
    assert res.metrics["no_think"]["HR@1"] == 1.0 and res.metrics["think"]["HR@2"] == 0.0
    # race with N = 2: the think SID first, then the no-think one → the target at rank 2
    assert res.metrics["race"]["HR@1"] == 0.0 and res.metrics["race"]["HR@2"] == 1.0
    assert res.metrics["think"]["closed_think"] == 1.0
    assert seen_seen == [[c["seen_sids"] for c in cases]]          # the model got each user's seen SIDs
    for row in ("random", "popular", "item_knn"):                  # baselines obey the same exclusion
        for c, ranked in zip(cases, res.predictions[row]):
            assert len(ranked) == 2 and not set(ranked) & set(c["seen_sids"])
    stored = tiny_ws.query("SELECT config, metrics FROM evals WHERE eval_id = ?", [res.eval_id])[0]
    config, metrics = json.loads(stored[0]), json.loads(stored[1])
    assert config["protocol"]["exclude_seen"] is True and config["rows"] == list(res.metrics)
    assert metrics["race"]["HR@2"] == 1.0 and metrics["popular"] == res.metrics["popular"]


def test_eval_cli_scores_baselines_without_a_model(tiny_ws):
    from typer.testing import CliRunner

    from ui.cli import app

    r = CliRunner().invoke(app, ["eval", "--k", "1,3", "--exclude-seen", "-w", str(tiny_ws.root)])
    assert r.exit_code == 0, r.output
    assert "item_knn" in r.output and "popular" in r.output and "seen items excluded" in r.output
    bad = CliRunner().invoke(app, ["eval", "--no-baselines", "-w", str(tiny_ws.root)])
    assert bad.exit_code != 0 and "--model is required" in str(bad.exception)
