"""Fixture files for the ingest/export tests: tiny but real-format Amazon dumps, GroupLens folders and
generic CSV/JSONL/Parquet files, written by the tests themselves (no network, no checked-in data)."""
from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_fixtures import ITEMS, REVIEWS, write_lines  # noqa: E402,F401


@pytest.fixture
def amazon2014(tmp_path) -> tuple[Path, Path]:
    """2014 layout: reviews JSON lines + meta written as Python literals (single quotes), both gzipped."""
    reviews = write_lines(tmp_path / "reviews_Beauty_5.json.gz", [json.dumps(
        {"reviewerID": u, "asin": a, "reviewerName": "x", "helpful": [0, 0], "reviewText": "ok", "overall": r,
         "summary": "s", "unixReviewTime": t, "reviewTime": "03 13, 2011"}) for u, a, r, t in REVIEWS])
    meta = write_lines(tmp_path / "meta_Beauty.json.gz", [repr(
        {"asin": a, "title": t, "description": f"{t}, a fine product", "price": 9.99, "brand": "Acme",
         "categories": [["Beauty", "Makeup"], ["Beauty", "Skin Care"]], "salesRank": {"Beauty": 10}})
        for a, t in ITEMS.items()])
    return reviews, meta


@pytest.fixture
def amazon2023(tmp_path) -> tuple[Path, Path]:
    """2023 layout: JSONL (not gzipped), timestamps in milliseconds, parent_asin, list descriptions."""
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", [json.dumps(
        {"rating": r, "title": "t", "text": "x", "images": [], "asin": a + "X", "parent_asin": a, "user_id": u,
         "timestamp": t * 1000, "helpful_vote": 0, "verified_purchase": True}) for u, a, r, t in REVIEWS])
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", [json.dumps(
        {"main_category": "All Beauty", "title": t, "average_rating": 4.1, "rating_number": 3,
         "features": ["a"], "description": [f"{t}.", "Great."], "price": None, "images": [], "videos": [],
         "store": "Acme", "categories": ["Beauty", "Makeup"], "details": {"Color": "Red"}, "parent_asin": a,
         "bought_together": None}) for a, t in ITEMS.items()])
    return reviews, meta


@pytest.fixture
def generic_files(tmp_path) -> dict[str, Path]:
    """Items as CSV with odd column names, interactions as JSONL (ISO timestamps) and as Parquet (ms)."""
    items = tmp_path / "items.csv"
    items.write_text("iid,name,genre,price\n" + "".join(
        f"{a},{t},Beauty|Makeup,{i + 1}.5\n" for i, (a, t) in enumerate(ITEMS.items())))
    jsonl = write_lines(tmp_path / "events.jsonl", [json.dumps(
        {"uid": u, "iid": a, "stars": r, "time": _iso(t)}) for u, a, r, t in REVIEWS])
    parquet = tmp_path / "events.parquet"
    pq.write_table(pa.table({"uid": [u for u, *_ in REVIEWS], "iid": [a for _, a, *_ in REVIEWS],
                             "stars": [r for *_, r, _ in REVIEWS], "time": [t * 1000 for *_, t in REVIEWS]}), parquet)
    return {"items": items, "jsonl": jsonl, "parquet": parquet}


def _iso(t: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture
def ml1m_folder(tmp_path) -> Path:
    """A tiny ML-1M folder: '::'-separated, movies.dat in latin-1 with an accented title."""
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's|Comedy\n"
                                   "2::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
                                   "3::Heat (1995)::Action|Crime|Thriller\n".encode("latin-1"))
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (d / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n1::3::4::978301968\n"
                                   "2::1::4::978298413\n2::3::2::978299000\n")
    return d


@pytest.fixture
def ml20m_folder(tmp_path) -> Path:
    d = tmp_path / "ml-20m"
    d.mkdir()
    (d / "movies.csv").write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                  '2,"American President, The (1995)",Comedy|Drama|Romance\n'
                                  '3,Unknown Film (2001),(no genres listed)\n')
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,3.5,1112486027\n1,2,4.0,1112484676\n"
                                   "2,3,0.5,1112484819\n2,1,5.0,1112484900\n2,2,2.5,1112484950\n")
    return d
