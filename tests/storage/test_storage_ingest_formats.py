"""Each ingest path on small real-format fixture files: Amazon 2014 (gz, Python-literal meta), 2023 JSONL (ms),
generic CSV + JSONL/Parquet with a column mapping, GroupLens 1M (.dat, latin-1) and 20M (.csv) folders."""
from __future__ import annotations

import json

from storage.ingest.amazon import ingest_amazon
from storage.ingest.catalog import IngestOptions
from storage.ingest.generic import ingest_generic
from storage.ingest.movielens import ingest_movielens

MAP = "user=uid,item=iid,ts=time,title=name,categories=genre,rating=stars"


def _split_of(ws, user):
    return ws.query("SELECT item_id, split FROM splits WHERE user_id = ? ORDER BY position", [user])


def test_amazon_2014_gz_with_python_literal_meta(tmp_ws, amazon2014):
    reviews, meta = amazon2014
    rep = ingest_amazon(tmp_ws, reviews, meta, opts=IngestOptions(domain="beauty"))
    assert (rep.users, rep.items, rep.interactions) == (4, 4, 10)
    assert rep.splits == {"train": 3, "valid": 3, "test": 4}
    title, desc, cats, brand = tmp_ws.query(
        "SELECT title, description, categories, json_extract_string(attributes, '$.brand') FROM items "
        "WHERE item_id = 'B001'")[0]
    assert (title, desc, cats, brand) == ("Red lipstick", "Red lipstick, a fine product",
                                          ["Beauty", "Makeup", "Skin Care"], "Acme")
    assert _split_of(tmp_ws, "u1") == [("B001", "train"), ("B002", "train"), ("B003", "valid"), ("B004", "test")]
    # u3's two reviews share a timestamp: the tie is broken by item id, deterministically
    assert _split_of(tmp_ws, "u3") == [("B001", "valid"), ("B004", "test")]
    assert tmp_ws.query("SELECT DISTINCT domain FROM interactions") == [("beauty",)]


def test_amazon_2023_jsonl_ms_timestamps(tmp_ws, amazon2023):
    reviews, meta = amazon2023
    rep = ingest_amazon(tmp_ws, reviews, meta)
    assert (rep.users, rep.items, rep.interactions) == (4, 4, 10)
    ts = tmp_ws.query("SELECT epoch(ts)::BIGINT FROM interactions WHERE user_id = 'u1' AND item_id = 'B001'")[0][0]
    assert ts == 1_300_000_000  # milliseconds recognised
    desc, details = tmp_ws.query("SELECT description, json_extract_string(attributes, '$.details.Color') "
                                 "FROM items WHERE item_id = 'B002'")[0]
    assert desc == "Face cream.\nGreat." and details == "Red"


def test_amazon_reviews_only_derives_items(tmp_ws, amazon2014):
    rep = ingest_amazon(tmp_ws, amazon2014[0], None)
    assert rep.items == 4 and rep.interactions == 10
    assert tmp_ws.query("SELECT count(*) FROM items WHERE title IS NULL")[0][0] == 4


def test_generic_csv_items_jsonl_and_parquet_interactions(tmp_ws, generic_files):
    rep = ingest_generic(tmp_ws, items=generic_files["items"], interactions=generic_files["jsonl"], mapping=MAP,
                         opts=IngestOptions(domain="shop"))
    assert (rep.users, rep.items, rep.interactions) == (4, 4, 10)
    row = tmp_ws.query("SELECT title, categories, json_extract_string(attributes, '$.price') FROM items "
                       "WHERE item_id = 'B002'")[0]
    assert row == ("Face cream", ["Beauty", "Makeup"], "2.5")
    iso = tmp_ws.query("SELECT epoch(ts)::BIGINT, rating FROM interactions WHERE user_id='u2' AND item_id='B002'")[0]
    assert iso == (1_300_000_250, 1.0)
    jsonl_rows = tmp_ws.query("SELECT user_id, item_id, ts, rating FROM interactions ORDER BY ALL")
    # same data as Parquet with epoch milliseconds: identical catalog rows, domain replaced not duplicated
    ingest_generic(tmp_ws, items=generic_files["items"], interactions=generic_files["parquet"], mapping=MAP,
                   opts=IngestOptions(domain="shop"))
    assert tmp_ws.query("SELECT user_id, item_id, ts, rating FROM interactions ORDER BY ALL") == jsonl_rows


def test_generic_kcore_and_min_history(tmp_ws, generic_files):
    rep = ingest_generic(tmp_ws, items=generic_files["items"], interactions=generic_files["jsonl"], mapping=MAP,
                         opts=IngestOptions(kcore=2))
    # u4 has one interaction -> dropped; then every remaining user and item has >= 2
    assert tmp_ws.query("SELECT min(c) FROM (SELECT count(*) c FROM interactions GROUP BY user_id)")[0][0] >= 2
    assert tmp_ws.query("SELECT min(c) FROM (SELECT count(*) c FROM interactions GROUP BY item_id)")[0][0] >= 2
    assert "u4" not in {u for (u,) in tmp_ws.query("SELECT user_id FROM users")}
    assert rep.filtered_interactions == 10 - rep.interactions > 0
    rep = ingest_generic(tmp_ws, items=generic_files["items"], interactions=generic_files["jsonl"], mapping=MAP,
                         opts=IngestOptions(min_history=4))
    assert rep.users == 1 and rep.interactions == 4


def test_movielens_1m_dat_folder(tmp_ws, ml1m_folder):
    rep = ingest_movielens(tmp_ws, ml1m_folder)
    assert (rep.users, rep.items, rep.interactions) == (2, 3, 5)
    assert tmp_ws.query("SELECT title FROM items WHERE item_id = '2'")[0][0] == "Cité des enfants perdus, La (1995)"
    attrs = json.loads(tmp_ws.query("SELECT attributes FROM users WHERE user_id = '2'")[0][0])
    assert attrs["zip"] == "70072" and attrs["gender"] == "M"
    assert _split_of(tmp_ws, "1") == [("1", "train"), ("3", "valid"), ("2", "test")]


def test_movielens_20m_csv_folder(tmp_ws, ml20m_folder):
    rep = ingest_movielens(tmp_ws, ml20m_folder)
    assert (rep.users, rep.items, rep.interactions) == (2, 3, 5)
    assert tmp_ws.query("SELECT title, categories FROM items WHERE item_id = '2'")[0] == (
        "American President, The (1995)", ["Comedy", "Drama", "Romance"])
    assert tmp_ws.query("SELECT categories FROM items WHERE item_id = '3'")[0][0] == []
    assert tmp_ws.query("SELECT rating FROM interactions WHERE user_id='2' AND item_id='3'")[0][0] == 0.5


def test_amazon_2018_json_meta_and_generic_users_file(tmp_ws, tmp_path):
    from ingest_fixtures import REVIEWS, write_lines

    reviews = write_lines(tmp_path / "Beauty_5.json.gz", [json.dumps(
        {"overall": r, "verified": True, "reviewTime": "x", "reviewerID": u, "asin": a, "unixReviewTime": t})
        for u, a, r, t in REVIEWS])
    meta = write_lines(tmp_path / "meta_Beauty.json.gz", [json.dumps(
        {"asin": a, "title": f"T{a}", "description": ["line one", "line two"], "category": ["Beauty", "Skin"],
         "brand": "B", "main_cat": "Beauty", "also_buy": ["x"]}) for a in ("B001", "B002", "B003", "B004")])
    rep = ingest_amazon(tmp_ws, reviews, meta, version="2018")
    assert (rep.items, rep.interactions) == (4, 10)
    row = tmp_ws.query("SELECT description, categories, json_extract_string(attributes, '$.main_category'), "
                       "json_extract(attributes, '$.also_buy') FROM items WHERE item_id = 'B003'")[0]
    assert row == ("line one\nline two", ["Beauty", "Skin"], "Beauty", None)

    items = tmp_path / "items.jsonl"
    write_lines(items, [json.dumps({"item_id": a, "title": f"T{a}", "categories": ["x", "y"], "color": "red"})
                        for a in ("B001", "B002", "B003", "B004")])
    users = tmp_path / "users.csv"
    users.write_text("user_id,age\nu1,30\nu2,40\n")
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{a},{t}\n" for u, a, _, t in REVIEWS))
    rep = ingest_generic(tmp_ws, items=items, interactions=inter, users=users,
                         opts=IngestOptions(domain="g", item_prefix="g:"))
    assert (rep.users, rep.items, rep.interactions) == (4, 4, 10)
    assert tmp_ws.query("SELECT categories, json_extract_string(attributes, '$.color') FROM items "
                        "WHERE item_id = 'g:B001'")[0] == (["x", "y"], "red")
    # users are shared across domains: the users file adds attributes to the users the Amazon ingest created
    ages = tmp_ws.query("SELECT user_id, json_extract_string(attributes, '$.age'), domain FROM users ORDER BY 1")
    assert ages == [("u1", "30", "amazon"), ("u2", "40", "amazon"), ("u3", None, "amazon"), ("u4", None, "amazon")]
    assert tmp_ws.query("SELECT rating FROM interactions WHERE domain = 'g' LIMIT 1")[0][0] is None
