"""Set-level dedup partitioned by key (exact: text hash; near: LSH bucket) gives exactly the in-process
clusters and verdicts — partitioned in-process, and on a local multi-worker Ray."""
import random

import numpy as np
import pyarrow as pa
import pytest

from curation.base import FilterContext
from curation.filters.dedup import (
    ExactDedupFilter,
    ExactDedupParams,
    NearDedupFilter,
    NearDedupParams,
    near_duplicate_clusters,
    near_duplicate_clusters_partitioned,
)

WORDS = [f"w{i}" for i in range(400)]


def _texts(n: int = 600, seed: int = 3) -> list[str]:
    """Random texts with planted exact duplicates (case / punctuation changed) and near duplicates."""
    rng = random.Random(seed)
    base = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n)]
    out = list(base)
    for i in range(0, n, 5):                              # a near duplicate: one word changed
        w = base[i].split()
        w[rng.randrange(len(w))] = "changed"
        out.append(" ".join(w))
    for i in range(0, n, 7):                              # an exact one (normalization hides the difference)
        out.append(base[i].upper() + " !")
    out += base[:20]                                      # byte-identical copies
    out += ["short answer"] * 4 + [""]                    # too short for near dedup; exact dupes
    rng.shuffle(out)
    return out


def _table(texts: list[str]) -> pa.Table:
    n = len(texts)
    return pa.table({"sample_id": [f"s{i:04d}" for i in range(n)], "prompt_id": [f"p{i % 9}" for i in range(n)],
                     "_completion": texts})


def _verdicts(f, table):
    ctx = FilterContext(ws=None, rank_score=np.arange(table.num_rows, dtype=float) % 3)
    v = f.apply(table, ctx)
    return v.keep.tolist(), v.reason


def _same_clusters(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal partitions of the rows (cluster numbers may differ)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist())) and np.array_equal(a < 0, b < 0)


@pytest.mark.parametrize("partitions", [1, 7])
def test_partitioned_near_dedup_equals_in_process(partitions):
    texts = pa.array(_texts())
    p = NearDedupParams()
    labels, sims = near_duplicate_clusters(texts, p)
    labels2, sims2 = near_duplicate_clusters_partitioned(texts, p, partitions=partitions)
    assert (labels >= 0).sum() > 150                      # the planted near duplicates were found
    assert _same_clusters(labels, labels2) and sims2 == sims


@pytest.fixture
def fresh_ray():
    """A local Ray for this test only: shut down afterwards so later tests start their own."""
    ray = pytest.importorskip("ray")
    yield
    ray.shutdown()


def test_distributed_dedup_on_ray_equals_in_process(monkeypatch, fresh_ray):
    monkeypatch.setenv("RECOT_RAY_CPUS", "2")
    monkeypatch.setattr("curation.filters.dedup.EXECUTOR_BATCH_ROWS", 128)   # several map batches
    table = _table(_texts())
    for f in (ExactDedupFilter(), ExactDedupFilter(ExactDedupParams(per_prompt=True)),
              ExactDedupFilter(ExactDedupParams(normalize=False)), NearDedupFilter()):
        local = _verdicts(f, table)
        remote = _verdicts(f.on_executor("ray", partitions=5), table)
        assert remote == local, f
        assert local[0].count(False) >= 3                 # something was dropped, for real


def test_dedup_prepared_batch_by_batch_equals_in_process(monkeypatch):
    """In a chain run, exact and near dedup keep per row only a key / band keys (`prepare`, batch by batch) and
    near dedup reads the text of candidate rows again: the verdicts are those of the in-process filters over the
    whole table."""
    import curation.chain as chain_mod
    from storage.records import SAMPLE_SCHEMA

    monkeypatch.setattr(chain_mod, "BATCH_ROWS", 64)       # ~12 batches
    monkeypatch.setattr("curation.filters.dedup.EXECUTOR_BATCH_ROWS", 50)   # candidates' shingles in slices
    texts = _texts()
    n = len(texts)
    for f in (ExactDedupFilter(), ExactDedupFilter(ExactDedupParams(per_prompt=True)),
              ExactDedupFilter(ExactDedupParams(normalize=False)), NearDedupFilter()):
        table = _table(texts)
        whole = f.apply(table, FilterContext(ws=None, rank_score=np.zeros(n)))
        cols = {c.name: pa.nulls(n, c.type) for c in SAMPLE_SCHEMA}
        cols.update(sample_id=table.column("sample_id"), prompt_id=table.column("prompt_id"),
                    messages=pa.array([[{"role": "assistant", "content": t}] for t in texts],
                                      SAMPLE_SCHEMA.field("messages").type))
        samples = pa.table(cols, schema=SAMPLE_SCHEMA)
        _, verdicts, _ = chain_mod.run_filters(samples, [f])
        assert verdicts.column("keep").to_pylist() == whole.keep.tolist(), f
        assert verdicts.column("reason").to_pylist() == whole.reason, f
        assert whole.keep.tolist().count(False) >= 3
