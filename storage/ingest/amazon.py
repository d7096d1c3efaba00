"""Amazon review dumps, streamed line by line (a 2018 category file can be tens of GB):

- 2014 (McAuley): `reviews_<Cat>[_5].json.gz` (reviewerID, asin, overall, unixReviewTime) and
  `meta_<Cat>.json.gz` written as *Python literals* (single quotes) with asin, title, description (str),
  categories (list of lists), brand, price, salesRank;
- 2018 (Ni): `<Cat>[_5].json.gz` with the same review fields, `meta_<Cat>.json.gz` in JSON with
  asin, title, description (list), category (list), brand, price, main_cat;
- 2023 (Hou): `<Cat>.jsonl(.gz)` reviews with user_id, parent_asin (asin), rating, timestamp (ms) and
  `meta_<Cat>.jsonl(.gz)` with parent_asin, title, description (list), categories, details, store, features.

Items come from the metadata file when given; without one, items are the distinct asins with no title. Real
dumps differ from clean test files in ways the ingest absorbs, each counted in the report:
- reviews of items missing from the metadata file are skipped and written to the rejects file (always: every
  real dump has them; `IngestOptions(unknown_items="raise")` makes them an error instead);
- exact duplicate reviews (same reviewer, item, time, rating) are dropped, the first kept;
- HTML in titles and descriptions (`&amp;`, `<b>…</b>`, `<br>`) is decoded to plain text;
- titles are cut to 1,000 characters (storage.ingest.catalog.TITLE_MAX_CHARS); an item without a title keeps
  none (tasks that need a title skip it).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage.errors import InputError
from storage.ingest.catalog import IngestOptions, IngestReport, IngestSession, Rejects, rows_to_table
from storage.ingest.readers import clean_html, json_records, scalar_str
from storage.workspace import Workspace

log = logging.getLogger(__name__)

INTER_COLS = ["user", "item", "ts", "rating", "_file", "_line", "_raw"]
ITEM_COLS = ["item", "title", "description", "categories", "attributes", "_file", "_line", "_raw"]

# per dump version: review field names (user, item, rating, ts)
REVIEW_FIELDS = {
    "2014": ("reviewerID", "asin", "overall", "unixReviewTime"),
    "2018": ("reviewerID", "asin", "overall", "unixReviewTime"),
    "2023": ("user_id", "parent_asin", "rating", "timestamp"),
}


def looks_like_meta(record: dict[str, Any]) -> bool:
    """A metadata record (an item: asin/parent_asin with title, categories, …) rather than a review."""
    return (("asin" in record or "parent_asin" in record) and "reviewerID" not in record and "user_id" not in record
            and bool({"title", "categories", "category", "description", "main_cat", "main_category"} & set(record)))


def looks_like_review(record: dict[str, Any]) -> bool:
    return "reviewerID" in record or ("user_id" in record and ("rating" in record or "timestamp" in record))


SWAPPED_HINT = ("it looks like the reviews and metadata files were swapped: pass the reviews file first and "
                "the metadata file with --meta")


def detect_version(record: dict[str, Any]) -> str:
    """'2014'/'2018' (same review fields) or '2023', from the keys of the first review."""
    if "reviewerID" in record:  # 2018 added 'verified' / 'vote'; 2014 has 'helpful'
        return "2018" if ("verified" in record or "vote" in record) else "2014"
    if "user_id" in record and ("parent_asin" in record or "asin" in record):
        return "2023"
    if looks_like_meta(record):
        raise InputError(f"this is a metadata line, not a review; {SWAPPED_HINT}", line=1)
    raise InputError("not an Amazon review line: expected reviewerID/asin/overall/unixReviewTime (2014/2018) or "
                     f"user_id/parent_asin/rating/timestamp (2023); found keys {', '.join(sorted(record))}",
                     line=1)


def _flatten_categories(v: Any) -> list[str]:
    """2014: [["Beauty", "Makeup", "Face"], ["Beauty", "Skin"]] → unique in order; 2018/2023: flat list."""
    out: list[str] = []
    stack = [v] if isinstance(v, str) else list(v or [])
    for x in stack:
        if isinstance(x, (list, tuple)):
            for y in x:
                if isinstance(y, str) and y and y not in out:
                    out.append(y)
        elif isinstance(x, str) and x and x not in out:
            out.append(x)
    return out


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        parts = [str(x).strip() for x in v if x is not None and str(x).strip()]
        return "\n".join(parts) or None
    return str(v).strip() or None


_META_SKIP = {"asin", "parent_asin", "title", "description", "categories", "category", "related", "also_buy",
              "also_view", "similar_item", "imageURL", "imageURLHighRes", "images", "videos", "imUrl",
              "bought_together"}


def meta_row(obj: dict[str, Any], line: int, file: str, raw: str) -> dict[str, Any]:
    """One metadata record (any of the three versions) → raw item row."""
    item = obj.get("parent_asin") or obj.get("asin")
    cats = obj.get("categories") if obj.get("categories") is not None else obj.get("category")
    attrs = {k: v for k, v in obj.items() if k not in _META_SKIP and v not in (None, "", [], {})}
    if "main_cat" in attrs and "main_category" not in attrs:
        attrs["main_category"] = attrs.pop("main_cat")
    return {"item": scalar_str(item), "title": clean_html(_text(obj.get("title"))),
            "description": clean_html(_text(obj.get("description"))),
            "categories": _flatten_categories(cats), "attributes": json.dumps(attrs, ensure_ascii=False, default=str),
            "_file": file, "_line": line, "_raw": raw}


def _review_rows(path: Path, rejects: Rejects, opts: IngestOptions, fields: tuple[str, str, str, str]
                 ) -> Iterator[dict[str, Any]]:
    u, i, r, t = fields
    for line, obj, raw in json_records(path, rejects=rejects, progress=opts.progress):
        item = obj.get(i)
        if item is None and i == "parent_asin":
            item = obj.get("asin")
        yield {"user": scalar_str(obj.get(u)), "item": scalar_str(item), "rating": scalar_str(obj.get(r)),
               "ts": scalar_str(obj.get(t)), "_file": str(path), "_line": line, "_raw": raw}


def _peek_version(reviews: Path) -> str:
    """The dump version from the first parseable review line (reads only that line)."""
    class _Raise:
        on_error = "raise"

        def reject(self, reason: str, *, file: str | None, line: int | None, field: str | None,
                   raw: Any = None) -> None:
            raise InputError(reason, file=file, line=line, field=field)

    try:
        for _line, obj, _raw in json_records(reviews, rejects=_Raise()):
            try:
                return detect_version(obj)
            except InputError as e:
                raise InputError(e.detail, file=str(reviews), line=_line) from None
    except InputError as e:
        if e.detail.startswith("broken JSON") and _python_literal_meta(reviews):  # 2014 meta is Python literals
            raise InputError(f"{e.detail}; this is a 2014 metadata file (Python literals), not reviews: "
                             f"{SWAPPED_HINT}", file=e.file, line=e.line) from None
        raise
    raise InputError("file is empty", file=str(reviews), line=0)


def _python_literal_meta(path: Path) -> bool:
    """True when the first line of `path` is a Python-literal metadata record (2014 meta)."""
    import ast

    from storage.ingest.readers import text_lines

    try:
        for _line, text in text_lines(path):
            obj = ast.literal_eval(text)
            return isinstance(obj, dict) and looks_like_meta(obj)
    except (InputError, ValueError, SyntaxError, MemoryError, RecursionError):
        return False
    return False


def _check_meta_is_meta(meta: Path, obj: dict[str, Any], line: int) -> None:
    if looks_like_review(obj) and not looks_like_meta(obj):
        raise InputError(f"this is a review line, not item metadata; {SWAPPED_HINT}", file=str(meta), line=line)


def ingest_amazon(ws: Workspace, reviews: str | Path, meta: str | Path | None = None, *,
                  opts: IngestOptions | None = None, version: str = "auto") -> IngestReport:
    """Ingest one Amazon category (reviews + optional metadata), streaming both files in batches."""
    reviews = Path(reviews)
    meta = Path(meta) if meta else None
    opts = opts or IngestOptions(domain="amazon")
    if opts.unknown_items is None or not opts.drop_duplicates:  # real dumps: see the module doc
        from dataclasses import replace

        opts = replace(opts, unknown_items=opts.unknown_items or "skip", drop_duplicates=True)
    if version not in ("auto", "2014", "2018", "2023"):
        raise InputError(f"unknown Amazon dump version {version!r}: use auto, 2014, 2018 or 2023")
    if version == "auto":
        version = _peek_version(reviews)
    fields = REVIEW_FIELDS[version]
    files = [p for p in (meta, reviews) if p is not None]
    names = dict(zip(("user", "item", "rating", "ts"), fields))  # errors name the file's own fields
    with IngestSession(ws, f"amazon-{version}", opts, files=files, spill=True, names=names,
                       config={"version": version}) as s:
        if meta is not None:
            rows: list[dict[str, Any]] = []
            for line, obj, raw in json_records(meta, rejects=s.rejects, progress=opts.progress, python_literals=True):
                if s.items.rows == 0 and not rows:
                    _check_meta_is_meta(meta, obj, line)
                if obj.get("parent_asin") is None and obj.get("asin") is None:
                    s.rejects.reject("missing item id: expected 'asin' (2014/2018) or 'parent_asin' (2023)",
                                     file=str(meta), line=line, field="asin", raw=raw)
                    continue
                rows.append(meta_row(obj, line, str(meta), raw))
                if len(rows) >= opts.batch_rows:
                    s.add_items(rows_to_table(rows, ITEM_COLS))
                    rows = []
            if rows:
                s.add_items(rows_to_table(rows, ITEM_COLS))
            if s.items.rows == 0:
                raise InputError("no items were read (empty file?)", file=str(meta), line=0)
        seen_items: dict[str, tuple[int]] = {}
        rows = []
        for row in _review_rows(reviews, s.rejects, opts, fields):
            if meta is None and row["item"] is not None and row["item"] not in seen_items:
                seen_items[row["item"]] = (row["_line"],)
            rows.append(row)
            if len(rows) >= opts.batch_rows:
                s.add_interactions(rows_to_table(rows, INTER_COLS))
                rows = []
        if rows:
            s.add_interactions(rows_to_table(rows, INTER_COLS))
        if meta is None:  # items are just the asins seen in the reviews
            ids = list(seen_items)
            s.add_items(rows_to_table([{"item": a, "attributes": None, "_file": str(reviews), "_line": seen_items[a][0]}
                                       for a in ids], ["item", "attributes", "_file", "_line"]))
    return s.result
