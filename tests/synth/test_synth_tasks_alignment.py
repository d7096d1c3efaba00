"""Deterministic alignment and R0 tasks on MovieLens-100k: the documented counts, SID <-> title pairs checked
against the catalog, TRAIN-only user windows (no valid/test item anywhere), stable ids on re-run."""
from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict

import duckdb
import pytest

from storage.datasets import read_dv
from storage.sid_catalog import SidCatalog
from synth.tasks.run import run_task


@pytest.fixture(scope="module")
def ml(_ml100k_sids_template, tmp_path_factory):
    """One private copy for the whole module (every task writes a new version; none mutates the catalog)."""
    import shutil

    from storage.workspace import Workspace

    dst = tmp_path_factory.mktemp("synth_align") / "ws"
    shutil.copytree(_ml100k_sids_template, dst, ignore=shutil.ignore_patterns(".lock"))
    return Workspace.open(dst)


@pytest.fixture(scope="module")
def cat(ml):
    return SidCatalog.load(ml)


def q(dv, sql: str):
    con = duckdb.connect()
    try:
        return con.execute(sql.replace("DV", f"read_parquet('{dv.glob}')")).fetchall()
    finally:
        con.close()


def by_variant(dv) -> dict[str, int]:
    return dict(q(dv, "SELECT json_extract_string(extra, '$.variant'), count(*) FROM DV GROUP BY 1"))


def test_align_item_counts_and_sid_title_pairs(ml, cat):
    dv = run_task(ml, "align_item")
    items = ml.query("SELECT i.item_id, i.title, i.description, i.categories FROM items i JOIN item_sids s "
                     "USING (item_id) WHERE s.sid_version = ?", [cat.version])
    about = {r[0]: (r[2] or ("Categories: " + ", ".join(r[3]) + "." if r[3] else None)) for r in items}
    about_counts = Counter(a for a in about.values() if a)
    expected = {"sid2title": sum(1 for r in items if r[1] is not None),
                "title2sid": sum(1 for r in items if r[1] is not None),
                "sid2desc": sum(1 for r in items if about[r[0]] and r[1] is not None),
                "desc2sid": sum(1 for a in about.values() if a and about_counts[a] == 1)}
    assert by_variant(dv) == expected and expected["sid2title"] == 1682
    rows = read_dv(dv).to_pylist()
    rng = random.Random(0)
    s2t = rng.sample([r for r in rows if json.loads(r["extra"])["variant"] == "sid2title"], 50)
    for r in s2t:
        (sid,) = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", r["messages"][0]["content"])
        assert cat.title_of_sid(sid) == r["messages"][1]["content"] == cat.titles[r["target_item_ids"][0]]
    t2s = rng.sample([r for r in rows if json.loads(r["extra"])["variant"] == "title2sid"], 50)
    for r in t2s:
        item = cat.item_of(r["answer_sids"][0])
        # the title, with the item id when another item has the same title (MovieLens lists 18 twice)
        shared = sum(t == cat.titles[item] for t in cat.titles.values()) > 1
        quoted = f'"{cat.titles[item]} [item {item}]"' if shared else f'"{cat.titles[item]}"'
        assert quoted in r["messages"][0]["content"] and r["target_item_ids"] == [item]
    all_t2s = [r for r in rows if json.loads(r["extra"])["variant"] == "title2sid"]
    assert len({r["messages"][0]["content"] for r in all_t2s}) == len(all_t2s)   # no prompt with two answers
    assert all(r["teacher"] == "catalog" and r["template_version"] == "align_item@v1" and r["error"] is None
               for r in rows)
    again = run_task(ml, "align_item")
    assert sorted(q(again, "SELECT sample_id FROM DV")) == sorted(q(dv, "SELECT sample_id FROM DV"))
    assert len({r["sample_id"] for r in rows}) == len(rows)


def test_align_user_windows_are_train_only(ml, cat):
    dv = run_task(ml, "align_user")
    train = defaultdict(list)
    heldout = defaultdict(set)
    for u, i, split in ml.query("SELECT user_id, item_id, split FROM splits ORDER BY user_id, position"):
        (train[u].append(i) if split == "train" else heldout[u].add(i))
    per_variant = sum(max(0, len(v) - 3) for v in train.values())
    assert by_variant(dv) == {"sid2sid": per_variant, "sid2title": per_variant, "title2sid": per_variant}
    leaks = q(dv, """SELECT count(*) FROM DV d, splits_v s
                     WHERE s.user_id = d.user_id AND s.split <> 'train'
                       AND (list_contains(d.target_item_ids, s.item_id)
                            OR list_contains(d.history_item_ids, s.item_id))"""
              .replace("splits_v", f"read_parquet('{_splits_parquet(ml)}')"))
    assert leaks == [(0,)]
    rows = read_dv(dv, columns=["user_id", "history_item_ids", "target_item_ids", "messages", "extra"]).to_pylist()
    for r in random.Random(1).sample(rows, 40):
        seq = train[r["user_id"]]
        k = json.loads(r["extra"])["train_rank"]
        assert r["target_item_ids"] == [seq[k]] and r["history_item_ids"] == seq[max(0, k - 10):k]
        v = json.loads(r["extra"])["variant"]
        if v != "sid2title":
            assert r["messages"][1]["content"] == cat.sid_of(seq[k])
        else:
            assert r["messages"][1]["content"] == cat.titles[seq[k]]


def _splits_parquet(ws) -> str:
    path = ws.tmp_dir / "splits_for_test.parquet"
    if not path.exists():
        with ws.reader() as con:
            con.execute(f"COPY splits TO '{path}' (FORMAT PARQUET)")
    return str(path)


def test_align_token_one_sample_per_prefix(ml, cat):
    dv = run_task(ml, "align_token")
    cats = dict(ml.query("SELECT item_id, categories FROM items"))
    groups = defaultdict(list)
    for item, codes in cat.codes.items():
        if cats[item]:
            groups[(1, codes[:1])].append(item)
            groups[(2, codes[:2])].append(item)
    eligible = {k: v for k, v in groups.items() if len(v) >= 2}
    assert by_variant(dv) == {"level1": sum(1 for k in eligible if k[0] == 1),
                              "level2": sum(1 for k in eligible if k[0] == 2)}
    for r in read_dv(dv).to_pylist()[:30]:
        e = json.loads(r["extra"])
        codes = tuple(int(x) for x in re.findall(r"_(\d+)>", e["prefix"]))
        members = eligible[(e["level"], codes)]
        top = Counter(c for i in members for c in cats[i]).most_common()
        assert e["n_items"] == len(members)
        assert top[0][1] == Counter(c for i in members for c in cats[i])[e["categories"][0]]


def test_align_relational_pairs_follow_train_sequences(ml, cat):
    dv = run_task(ml, "align_relational", options={"max_pairs": 300})
    counts = by_variant(dv)
    assert set(counts) == {"co_interacted", "complementary", "substitute"}
    assert all(0 < n <= 300 for n in counts.values())
    nxt = Counter()
    prev = {}
    for u, i in ml.query("SELECT user_id, item_id FROM splits WHERE split = 'train' ORDER BY user_id, position"):
        if u in prev:
            nxt[tuple(sorted((prev[u], i)))] += 1
        prev[u] = i
    cats = dict(ml.query("SELECT item_id, categories FROM items"))
    for r in read_dv(dv).to_pylist():
        e = json.loads(r["extra"])
        a, b = e["item_ids"]
        assert r["answer_sids"] == [cat.sid_of(a), cat.sid_of(b)]
        assert cat.titles[a] in r["answer"] and e["relation"].replace("_", "-") in r["answer"]
        if e["relation"] == "substitute":
            assert sorted(cats[a]) == sorted(cats[b])
        else:
            assert nxt[tuple(sorted((a, b)))] >= 2 and e["support"] >= 2
            assert (e["relation"] == "complementary") == (not set(cats[a]) & set(cats[b]))


def test_item_qa_answers_from_the_catalog(ml, cat):
    dv = run_task(ml, "r0_item_qa")
    counts = dict(q(dv, "SELECT json_extract_string(extra, '$.question'), count(*) FROM DV GROUP BY 1"))
    n_cat = ml.query("SELECT count(*) FROM items WHERE len(categories) > 0")[0][0]
    n_year = ml.query("SELECT count(*) FROM items WHERE attributes->>'year' IS NOT NULL")[0][0]
    n_rel = ml.query("SELECT count(*) FROM items WHERE coalesce(attributes->>'release_date', '') <> ''")[0][0]
    assert counts == {"categories": n_cat, "attribute": n_year + n_rel}          # imdb_url is skipped
    cats = dict(ml.query("SELECT item_id, categories FROM items"))
    for r in read_dv(dv).to_pylist()[:200]:
        e = json.loads(r["extra"])
        if e["question"] == "categories":
            assert r["answer"].endswith(": " + ", ".join(cats[r["target_item_ids"][0]]) + ".")
        assert r["level"] == "R0" and r["answer_sids"] == r["target_sids"]
