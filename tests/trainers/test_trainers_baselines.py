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
