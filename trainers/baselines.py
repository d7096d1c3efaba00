"""Non-LLM baselines scored in the same harness as the models: the same test users, the same ranked-SID
metrics (`trainers.metrics`), the same protocol.

Protocol (shared by every row of a results table, recorded with the results):
- leave-last-out: each user's test item is the target; the history is the user's train + valid items;
- candidates: every catalog item with a SID in the evaluated SID version;
- `exclude_seen`: when True, a user's train + valid items are removed from every ranked list (models too:
  `trainers.decoding` drops them from that user's trie). MovieLens never repeats a (user, item) pair, so
  excluding seen items only removes impossible answers.

Baselines:
- `random`: a seeded random permutation of the candidates per user;
- `popular`: items by interaction count in the **train** split (ties: item order), the same list for all;
- `item_knn`: item-item cosine kNN over the train split's user × item matrix (`implicit`'s
  CosineRecommender: co-occurrence counts normalized by item norms, `neighbours` nearest kept per item, an
  item is not its own neighbour); a user's score for an item is the sum of its similarities to the user's
  train + valid items; ties (items no history item co-occurs with) go by popularity.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

BASELINES = ("random", "popular", "item_knn")


def popularity(train: Sequence[tuple[str, str]]) -> Counter[str]:
    """Interactions per item in (user, item) pairs."""
    return Counter(item for _, item in train)


def _interactions(train: Sequence[tuple[str, str]], items: Sequence[str]):
    """Sparse user × item matrix (binary) of the train pairs, restricted to `items`."""
    from scipy.sparse import csr_matrix

    col = {it: j for j, it in enumerate(items)}
    users: dict[str, int] = {}
    rows, cols = [], []
    for u, it in dict.fromkeys((u, it) for u, it in train if it in col):
        rows.append(users.setdefault(u, len(users)))
        cols.append(col[it])
    return csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))


class ItemKNN:
    """Item-item cosine kNN (implicit's CosineRecommender) with popularity tie-breaking."""

    def __init__(self, neighbours: int = 100):
        self.neighbours = neighbours
        self.items: list[str] = []
        self.similarity: Any = None
        self.pop = np.zeros(0)

    def fit(self, train: Sequence[tuple[str, str]], items: Sequence[str]) -> ItemKNN:
        from implicit.nearest_neighbours import CosineRecommender

        self.items = list(items)
        user_items = _interactions(train, self.items)
        model = CosineRecommender(K=self.neighbours + 1)       # +1: the item itself is its first neighbour
        with warnings.catch_warnings():                        # implicit normalizes to COO itself, then warns
            warnings.simplefilter("ignore", category=Warning)
            model.fit(user_items, show_progress=False)
        sim = model.similarity.tocsr().astype(np.float32)
        sim.setdiag(0.0)                                       # an item is not its own neighbour
        sim.eliminate_zeros()
        self.similarity = sim
        pop = popularity(train)
        self.pop = np.array([pop.get(it, 0) for it in self.items], dtype=np.float64)
        return self

    def scores(self, histories: Sequence[Collection[str]]) -> np.ndarray:
        """users × items scores: the sum of each item's similarities to the user's history items."""
        from scipy.sparse import csr_matrix

        col = {it: j for j, it in enumerate(self.items)}
        rows, cols = [], []
        for i, h in enumerate(histories):
            for j in {col[it] for it in h if it in col}:
                rows.append(i)
                cols.append(j)
        hist = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                          shape=(len(histories), len(self.items)))
        return np.asarray((hist @ self.similarity).todense(), dtype=np.float64)


def _top(order: np.ndarray, items: Sequence[str], k: int, exclude: Collection[str]) -> list[str]:
    out: list[str] = []
    for j in order:
        it = items[j]
        if it not in exclude:
            out.append(it)
            if len(out) == k:
                break
    return out


def recommend(name: str, train: Sequence[tuple[str, str]], items: Sequence[str],
              histories: Sequence[Collection[str]], k: int, *, exclude_seen: bool = False, seed: int = 0,
              neighbours: int = 100) -> list[list[str]]:
    """Top-k item ids per user for baseline `name`, candidates `items`, fitted on the `train` (user, item)
    pairs; `histories[i]` is user i's train + valid items (scored by kNN, removed when `exclude_seen`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    items = list(items)
    pop = popularity(train)
    pop_arr = np.array([pop.get(it, 0) for it in items], dtype=np.float64)
    by_pop = np.lexsort((np.arange(len(items)), -pop_arr))        # most interactions first, then item order
    out: list[list[str]] = []
    if name == "random":
        rng = np.random.default_rng(seed)
        for h in histories:
            out.append(_top(rng.permutation(len(items)), items, k, h if exclude_seen else ()))
    elif name == "popular":
        out = [_top(by_pop, items, k, h if exclude_seen else ()) for h in histories]
    else:
        knn = ItemKNN(neighbours).fit(train, items)
        for start in range(0, len(histories), 1024):            # users × items dense, a block at a time
            block = histories[start:start + 1024]
            scores = knn.scores(block)
            for h, row in zip(block, scores):
                order = np.lexsort((np.arange(len(items)), -pop_arr, -row))
                out.append(_top(order, items, k, h if exclude_seen else ()))
    return out


def train_pairs(ws, sid_version: int | None = None) -> list[tuple[str, str]]:
    """(user, item) pairs of the train split (restricted to items with a SID in `sid_version` when given)."""
    if sid_version is None:
        rows = ws.query("SELECT user_id, item_id FROM splits WHERE split = 'train'")
    else:
        rows = ws.query("SELECT sp.user_id, sp.item_id FROM splits sp JOIN item_sids x ON x.item_id = sp.item_id "
                        "AND x.sid_version = ? WHERE sp.split = 'train'", [sid_version])
    return [(str(u), str(i)) for u, i in rows]


def baseline_rankings(ws, cases: Sequence[dict[str, Any]], catalog, k: int, *, exclude_seen: bool = False,
                      seed: int = 0, names: Sequence[str] = BASELINES, neighbours: int = 100
                      ) -> dict[str, list[list[str]]]:
    """Ranked SID lists per baseline for evaluation cases (`trainers.evaluate.test_cases`: each has
    `seen_items`, the user's train + valid item ids). Candidates: the catalog's items."""
    train = train_pairs(ws, catalog.version)
    items = sorted(catalog.item_to_sid)
    histories = [set(c["seen_items"]) for c in cases]
    return {name: [[catalog.item_to_sid[it] for it in ranked]
                   for ranked in recommend(name, train, items, histories, k, exclude_seen=exclude_seen, seed=seed,
                                           neighbours=neighbours)]
            for name in names}
