"""Semantic-ID building: determinism, collision level, report numbers, user vectors, catalog, CLI."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage.errors import InputError, NotFound
from storage.sid import parse_sid
from storage.sid_catalog import SidCatalog, latest_sid_version
from synth.sids.build import SidConfig, build_sids, quantize_items
from synth.sids.quantize import collision_level, residual_kmeans
from synth.sids.report import collision_rate


# ---------------------------------------------------------------------------------------------- helpers
def _add_items(ws, n: int, *, prefix: str = "it"):
    with ws.transaction() as con:
        for i in range(n):
            con.execute("INSERT INTO items (item_id, title, categories, description) VALUES (?, ?, ?, ?)",
                        [f"{prefix}{i:04d}", f"Title {i}", ["Drama" if i % 2 else "Comedy"], None])
    return [f"{prefix}{i:04d}" for i in range(n)]


def _clustered(n: int, d: int = 16, centers: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)).astype(np.float32) * 3
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


def _write_vectors(path, ids, vectors, *, vector_type=None):
    vec = pa.array([list(map(float, v)) if v is not None else None for v in vectors],
                   vector_type or pa.list_(pa.float32()))
    pq.write_table(pa.table({"item_id": pa.array(ids, pa.string()), "vector": vec}), path)
    return path


@pytest.fixture
def vec_ws(tmp_ws, tmp_path):
    """120 items with clustered user vectors written to Parquet (no embedding model involved)."""
    ids = _add_items(tmp_ws, 120)
    path = _write_vectors(tmp_path / "vectors.parquet", ids, _clustered(120))
    return tmp_ws, ids, path


# ---------------------------------------------------------------------------------------------- quantization
def test_same_seed_same_codes_different_seed_differs(vec_ws):
    ws, ids, path = vec_ws
    cfg = SidConfig(codebook_size=8, seed=3, vectors_path=str(path))
    a = build_sids(ws, cfg)
    b = build_sids(ws, cfg)
    assert (a.sid_version, b.sid_version) == (1, 2)
    assert a.codes == b.codes and a.sids == b.sids
    stored = dict(ws.query("SELECT item_id, sid FROM item_sids WHERE sid_version = 2"))
    assert stored == dict(zip(a.item_ids, a.sids))
    c = build_sids(ws, cfg.model_copy(update={"seed": 4}))
    assert c.codes != a.codes


def test_collision_level_makes_every_sid_unique():
    # 30 items but only 3 distinct vectors: every L-code tuple is shared by 10 items.
    base = np.eye(4, dtype=np.float32)[:3]
    x = np.repeat(base, 10, axis=0)
    ids = [f"x{i:02d}" for i in range(30)][::-1]  # reversed: the extra code must follow item_id order
    q = quantize_items(ids, x, SidConfig(levels=2, codebook_size=256, collision_aware=False))
    assert len(set(q.sids)) == 30
    assert all(len(c) == 3 for c in q.codes)
    assert q.report["collision_rate_before"] == 1.0
    assert q.report["collision_rate_after"] == 0.0
    assert q.report["collision_groups"] == 3 and q.report["max_group_size"] == 10
    assert q.report["extra_level_size"] == 10
    # Within a group, extra codes 0..9 in item_id order.
    by_id = dict(zip(ids, q.codes))
    group = sorted(i for i in ids if by_id[i][:2] == by_id["x00"][:2])
    assert [by_id[i][2] for i in group] == list(range(10))
    for s in q.sids:
        assert parse_sid(s)[2] < 10


def test_items_without_collision_get_no_extra_level():
    x = np.array([[0, 0], [0, 0], [5, 5], [9, 0]], dtype=np.float32)
    q = quantize_items(["a", "b", "c", "d"], x, SidConfig(levels=1, codebook_size=3, collision_aware=False))
    lens = dict(zip("abcd", (len(c) for c in q.codes)))
    assert lens == {"a": 2, "b": 2, "c": 1, "d": 1}
    assert q.report["collision_rate_before"] == 0.5
    assert q.report["items_with_extra_level"] == 2


def test_spread_last_level_moves_colliders_to_free_codes_within_budget():
    from synth.sids.quantize import spread_last_level

    prefix = np.array([[0], [0], [0], [1], [2], [2]], dtype=np.int32)
    last = np.array([0, 0, 0, 0, 2, 2], dtype=np.int32)
    residual = np.array([[1, 0], [1, 0.1], [1, 0], [1, 0], [0, 0], [0, 0]], dtype=np.float32)
    cents = np.array([[1, 0], [1, 0.2], [0.5, 0], [-1, 0]], dtype=np.float32)
    out, moved = spread_last_level(prefix, last, residual, cents, np.arange(6))
    # Items 0-2 share (0, 0): item 0 (closest, lowest rank) keeps code 0; item 2 (distance 0) moves first
    # to its nearest free code 1; item 1 then gets code 2. Item 3 (other prefix) is untouched. Items 4/5
    # have a zero residual: any other code would explain less than no code at all, so they stay (and
    # will get the extra level).
    assert out.tolist() == [0, 2, 1, 0, 2, 2]
    assert moved == 2


def test_collision_aware_last_level_on_clustered_data():
    x = _clustered(600, d=16, centers=4, seed=2)
    ids = [f"q{i:03d}" for i in range(600)]
    cfg = SidConfig(levels=2, codebook_size=16)
    plain = quantize_items(ids, x, cfg.model_copy(update={"collision_aware": False}))
    aware = quantize_items(ids, x, cfg)
    r = aware.report
    assert r["collision_rate_nearest"] == plain.report["collision_rate_before"] > 0
    assert r["collision_rate_before"] < r["collision_rate_nearest"]
    assert r["reassigned_last_level"] > 0 and r["collision_rate_after"] == 0 and len(set(aware.sids)) == 600
    # Level 1 untouched; only items that collided under nearest assignment changed their last code.
    plain_tuples = [c[:2] for c in plain.codes]
    for p, a in zip(plain.codes, aware.codes):
        assert p[0] == a[0]
        if plain_tuples.count(p[:2]) == 1:
            assert p[:2] == a[:2]
    # Moves are bounded: reconstruction stays better than with level 1 alone.
    one = quantize_items(ids, x, SidConfig(levels=1, codebook_size=16, collision_aware=False))
    assert r["reconstruction"]["mse"] < one.report["reconstruction"]["mse"]
    assert r["reconstruction"]["mse"] >= plain.report["reconstruction"]["mse"] - 1e-9
    assert quantize_items(ids, x, cfg).codes == aware.codes


def test_codebook_larger_than_distinct_points_works():
    x = _clustered(10, d=8)
    q = residual_kmeans(x, 3, 256, seed=0)
    assert q.codes.shape == (10, 3)
    assert all(k <= 10 for k in q.k_per_level)
    # With ≤ K distinct points level 1 is exact: nothing left to explain.
    assert float(np.abs(q.residual).max()) < 1e-5


def test_collision_level_function_directly():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]], dtype=np.int32)
    extra, stats = collision_level(codes, ["b", "c", "z", "a"])
    assert extra.tolist() == [1, 2, -1, 0]
    assert stats == {"groups": 1, "items": 3, "max_group": 3, "distinct_tuples": 2}


def test_report_numbers_are_consistent(vec_ws):
    ws, ids, path = vec_ws
    res = build_sids(ws, SidConfig(codebook_size=8, vectors_path=str(path)))
    r = res.report
    codes = np.array([c[:3] for c in res.codes])
    assert r["n_items"] == 120 and r["unique_sids"] == 120
    assert r["collision_rate_after"] == 0.0
    assert r["collision_rate_before"] == pytest.approx(collision_rate(codes), abs=1e-6)
    assert r["collision_rate_before"] == pytest.approx(r["colliding_items"] / 120, abs=1e-6)
    assert r["items_with_extra_level"] == r["colliding_items"]
    for lv, p in enumerate(r["per_level"]):
        used = len(set(codes[:, lv].tolist()))
        assert p["codes_used"] == used
        assert p["utilisation"] == pytest.approx(used / 8)
        assert p["items_per_code"]["mean"] == pytest.approx(120 / used, abs=1e-3)
        assert 0 < p["entropy_bits"] <= np.log2(used) + 1e-9
        assert p["entropy_normalised"] == pytest.approx(p["entropy_bits"] / 3, abs=1e-5)
    x = _clustered(120)
    assert 0 < r["reconstruction"]["relative"] < 1
    assert r["reconstruction"]["mse"] == pytest.approx(r["reconstruction"]["relative"] * float((x ** 2).sum(1).mean()),
                                                       rel=1e-3)
    stored = json.loads(ws.query("SELECT report FROM sid_versions WHERE sid_version = ?", [res.sid_version])[0][0])
    assert stored["collision_rate_before"] == r["collision_rate_before"]
    run = ws.query("SELECT kind, status FROM runs WHERE run_id = ?", [res.run_id])[0]
    assert run == ("sids", "done")


def test_balanced_assignment_respects_capacity():
    # Skewed data: 90% of points in one blob.
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((180, 8)) * 0.1, rng.standard_normal((20, 8)) + 5]).astype(np.float32)
    ids = [f"p{i}" for i in range(200)]
    plain = quantize_items(ids, x, SidConfig(levels=1, codebook_size=10))
    bal = quantize_items(ids, x, SidConfig(levels=1, codebook_size=10, balanced=True))
    assert bal.report["per_level"][0]["items_per_code"]["max"] <= 20  # ceil(200 / 10)
    assert bal.report["per_level"][0]["entropy_bits"] >= plain.report["per_level"][0]["entropy_bits"] - 1e-9
    assert len(set(bal.sids)) == 200


def test_config_rejects_unknown_text_field():
    from storage.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown text field"):
        SidConfig(text_fields=("title", "plot"))


# ---------------------------------------------------------------------------------------------- user vectors
def test_user_vectors_wrong_dimensions_names_row_and_item(tmp_ws, tmp_path):
    ids = _add_items(tmp_ws, 5)
    vecs = [[0.1] * 4] * 5
    vecs[3] = [0.1] * 3
    path = _write_vectors(tmp_path / "v.parquet", ids, vecs)
    with pytest.raises(InputError) as ei:
        build_sids(tmp_ws, SidConfig(codebook_size=2, vectors_path=str(path)))
    msg = str(ei.value)
    assert "v.parquet" in msg and "row 4" in msg and "it0003" in msg and "3 dimensions, expected 4" in msg
    assert ei.value.field == "vector" and ei.value.line == 4
    # Nothing written; the run is marked failed.
    assert latest_sid_version(tmp_ws) is None
    assert tmp_ws.query("SELECT status FROM runs WHERE kind = 'sids'") == [("failed",)]


def test_user_vectors_missing_items_are_named(tmp_ws, tmp_path):
    ids = _add_items(tmp_ws, 8)
    path = _write_vectors(tmp_path / "v.parquet", ids[:5], [[1.0, 0.0]] * 5)
    with pytest.raises(InputError) as ei:
        build_sids(tmp_ws, SidConfig(codebook_size=2, vectors_path=str(path)))
    msg = str(ei.value)
    assert "3 catalog item(s) have no vector" in msg and "it0005" in msg and "it0007" in msg
    assert ei.value.field == "item_id"


def test_user_vectors_nan_and_non_numeric(tmp_ws, tmp_path):
    ids = _add_items(tmp_ws, 4)
    vecs = [[1.0, 2.0], [1.0, float("nan")], [0.0, 1.0], [2.0, 2.0]]
    path = _write_vectors(tmp_path / "nan.parquet", ids, vecs)
    with pytest.raises(InputError, match=r"nan\.parquet.*row 2 \(item 'it0001'\): vector contains NaN"):
        build_sids(tmp_ws, SidConfig(codebook_size=2, vectors_path=str(path)))
    bad = tmp_path / "str.parquet"
    pq.write_table(pa.table({"item_id": ids, "vector": [["a", "b"]] * 4}), bad)
    with pytest.raises(InputError, match=r"str\.parquet.*field 'vector'.*expected numbers"):
        build_sids(tmp_ws, SidConfig(codebook_size=2, vectors_path=str(bad)))
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"id": ids, "vector": [[1.0]] * 4}), nocol)
    with pytest.raises(InputError, match=r"missing column 'item_id'"):
        build_sids(tmp_ws, SidConfig(codebook_size=2, vectors_path=str(nocol)))
    with pytest.raises(InputError, match="file not found"):
        build_sids(tmp_ws, SidConfig(codebook_size=2, vectors_path=str(tmp_path / "nope.parquet")))


# ---------------------------------------------------------------------------------------------- catalog
def test_catalog_load_and_lookups(vec_ws):
    ws, ids, path = vec_ws
    with pytest.raises(NotFound, match="recot sids build"):
        SidCatalog.load(ws)
    assert latest_sid_version(ws) is None
    r1 = build_sids(ws, SidConfig(codebook_size=8, vectors_path=str(path)))
    r2 = build_sids(ws, SidConfig(codebook_size=4, levels=2, vectors_path=str(path)))
    cat = SidCatalog.load(ws)
    assert cat.version == r2.sid_version == latest_sid_version(ws)
    assert (cat.levels, cat.codebook_size) == (2, 4)
    old = SidCatalog.load(ws, r1.sid_version)
    assert old.codebook_size == 8 and old.item_to_sid == dict(zip(r1.item_ids, r1.sids))
    sid = cat.sid_of("it0007")
    assert cat.item_of(sid) == "it0007" and cat.title_of_sid(sid) == "Title 7"
    assert len(cat.all_sids()) == 120 == len(cat.trie)
    assert cat.trie.contains(sid)
    first = cat.trie.allowed(["<|sid_begin|>"])
    assert set(first) == {f"<s_a_{c[0]}>" for c in cat.codes.values()}
    with pytest.raises(NotFound):
        cat.item_of("<|sid_begin|><s_a_99><s_b_0><|sid_end|>")
    with pytest.raises(NotFound, match="known"):
        SidCatalog.load(ws, 99)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_build_and_show(vec_ws):
    from typer.testing import CliRunner

    from ui.cli import app

    ws, ids, path = vec_ws
    runner = CliRunner()
    res = runner.invoke(app, ["sids", "build", "-w", str(ws.root), "-k", "8", "--vectors", str(path),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "collision rate before" in res.output and "unique SIDs" in res.output and "120" in res.output
    cat = SidCatalog.load(ws)
    res = runner.invoke(app, ["sids", "show", "-w", str(ws.root), "--item", "it0002"])
    assert res.exit_code == 0 and cat.sid_of("it0002") in res.output.replace("\n", "")
    res = runner.invoke(app, ["sids", "show", "-w", str(ws.root), "--sid", cat.sid_of("it0002")])
    assert res.exit_code == 0 and "Title 2" in res.output
    res = runner.invoke(app, ["sids", "show", "-w", str(ws.root)])
    assert res.exit_code == 0 and "per level" in res.output


# ---------------------------------------------------------------------------------------------- embeddings
@pytest.mark.slow
def test_text_embeddings_are_cached_by_text_hash(tmp_ws, tmp_path, monkeypatch):
    from synth.sids.embed import SHARED_CACHE_ENV, EmbeddingCache, item_text

    monkeypatch.delenv(SHARED_CACHE_ENV, raising=False)

    _add_items(tmp_ws, 24)
    cfg = SidConfig(codebook_size=4, levels=2)
    a = build_sids(tmp_ws, cfg)
    emb = a.report["embedding"]
    assert emb["dims"] == 384 and "MiniLM" in emb["model"]
    assert emb["embedded"] == 24 and emb["reused"] == 0
    shards = list((tmp_ws.cache_dir / "embeddings" / "minilm").glob("*.parquet"))
    assert len(shards) == 1 and not list(shards[0].parent.glob(".*tmp"))
    vecs = EmbeddingCache(tmp_ws.cache_dir, "minilm").load()
    assert len(vecs) == 24
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vecs.values())
    # Rebuild: nothing re-embedded, identical codes.
    b = build_sids(tmp_ws, cfg)
    assert b.report["embedding"]["embedded"] == 0 and b.codes == a.codes
    # One changed text → exactly one new embedding.
    with tmp_ws.transaction() as con:
        con.execute("UPDATE items SET title = 'A completely different film' WHERE item_id = 'it0003'")
    c = build_sids(tmp_ws, cfg)
    assert c.report["embedding"]["embedded"] == 1
    # A shared cache (RECOT_EMBEDDING_CACHE) is filled by one workspace and read by another.
    monkeypatch.setenv(SHARED_CACHE_ENV, str(tmp_path / "shared"))
    from storage.workspace import Workspace

    other = Workspace.open(tmp_path / "other")
    _add_items(other, 24)
    assert build_sids(other, cfg).report["embedding"]["embedded"] == 24
    third = Workspace.open(tmp_path / "third")
    _add_items(third, 24)
    t = build_sids(third, cfg)
    assert t.report["embedding"]["embedded"] == 0 and t.codes == a.codes
    assert len(EmbeddingCache(third.cache_dir, "minilm").load()) == 24
    assert item_text("T", ["a", "b"], None) == "T. Categories: a, b"


@pytest.mark.slow
def test_movielens_100k_gets_1682_unique_sids(request):
    pytest.importorskip("storage.ingest.movielens")
    ws = request.getfixturevalue("ml100k_sids_ws")
    cat = SidCatalog.load(ws)
    assert len(cat) == 1682 and len(set(cat.all_sids())) == 1682
    r = cat.report
    assert r["n_items"] == 1682 and r["unique_sids"] == 1682
    assert r["collision_rate_after"] == 0.0
    assert 0 <= r["collision_rate_before"] < 0.5
    assert r["items_with_extra_level"] == r["colliding_items"]
    assert cat.max_levels == (4 if r["colliding_items"] else 3)
    # Rebuild with the same config: embeddings come from the cache and the codes are identical.
    again = build_sids(ws, SidConfig())
    assert again.report["embedding"]["embedded"] == 0
    assert dict(zip(again.item_ids, again.sids)) == cat.item_to_sid
