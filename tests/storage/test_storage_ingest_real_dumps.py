"""What real catalog dumps contain and clean test files do not (issue 18, items 5, 6 and 8): reviews of items
missing from the meta file, duplicate review lines, HTML in titles, untitled items, timestamps beyond INT64 or
far from today, huge titles, gzip files without `.gz`, reviews and meta swapped, and a workspace path with a
quote in it. Each test ran red before the fix."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from ingest_fixtures import ITEMS, REVIEWS, write_lines

from storage.errors import InputError
from storage.ingest.amazon import ingest_amazon
from storage.ingest.catalog import TITLE_MAX_CHARS, IngestOptions
from storage.ingest.generic import ingest_generic
from storage.workspace import Workspace


def _reviews_2018(rows) -> list[str]:
    return [json.dumps({"reviewerID": u, "asin": a, "overall": r, "unixReviewTime": t, "verified": True})
            for u, a, r, t in rows]


def _meta_2018(items: dict[str, str | None], **extra) -> list[str]:
    return [json.dumps({"asin": a, **({"title": t} if t is not None else {}), "category": ["Beauty"],
                        "description": [f"About {a}."], **extra.get(a, {})}) for a, t in items.items()]


def test_amazon_reviews_of_items_missing_from_meta_are_skipped_and_counted(tmp_ws, tmp_path):
    """Before: the first review of an asin absent from meta aborted the whole ingest (exit 2)."""
    rows = [*REVIEWS, ("u1", "GONE1", 5.0, 1_300_000_900), ("u5", "GONE2", 4.0, 1_300_000_950)]
    reviews = write_lines(tmp_path / "Beauty.json.gz", _reviews_2018(rows))
    meta = write_lines(tmp_path / "meta_Beauty.json.gz", _meta_2018(ITEMS))
    r = ingest_amazon(tmp_ws, reviews, meta)                   # default on_error: raise
    assert r.interactions == len(REVIEWS) and r.unknown_item_interactions == 2 and r.skipped == 2
    rejects = [json.loads(x) for x in Path(r.rejects_path).read_text().splitlines()]
    assert sorted(x["raw"]["item_id"] for x in rejects) == ["GONE1", "GONE2"]
    assert all("unknown item id" in x["reason"] and x["field"] == "asin" for x in rejects)
    # asked for, they are still an error
    with pytest.raises(InputError, match="unknown item id 'GONE1'"):
        ingest_amazon(tmp_ws, reviews, meta, opts=IngestOptions(domain="amazon", unknown_items="raise",
                                                                drop_duplicates=True))


def test_amazon_exact_duplicate_review_lines_are_dropped_and_counted(tmp_ws, tmp_path):
    lines = _reviews_2018(REVIEWS)
    reviews = write_lines(tmp_path / "Beauty.json.gz", lines + lines[:3])
    r = ingest_amazon(tmp_ws, reviews, write_lines(tmp_path / "meta.json.gz", _meta_2018(ITEMS)))
    assert r.interactions == len(REVIEWS) and r.duplicates == 3
    assert tmp_ws.query("SELECT count(*) FROM (SELECT DISTINCT user_id, item_id, ts FROM interactions)")[0][0] \
        == len(REVIEWS)


def test_amazon_html_in_titles_and_descriptions_becomes_plain_text(tmp_ws, tmp_path):
    items = {"B001": "Tom &amp; Jerry <b>Deluxe</b> Lipstick", "B002": "Face cream &#39;Soft&#39;",
             "B003": "Nail polish", "B004": "Hair dryer"}
    extra = {"B001": {"description": ["<p>Red &amp; bold.</p><br/>Lasts <i>all</i> day"]}}
    reviews = write_lines(tmp_path / "Beauty.json.gz", _reviews_2018(REVIEWS))
    ingest_amazon(tmp_ws, reviews, write_lines(tmp_path / "meta.json.gz", _meta_2018(items, **extra)))
    got = dict(tmp_ws.query("SELECT item_id, title || ' | ' || description FROM items"))
    assert got["B001"] == "Tom & Jerry Deluxe Lipstick | Red & bold.\nLasts all day"
    assert got["B002"] == "Face cream 'Soft' | About B002."


def test_untitled_items_are_kept_without_a_title_and_align_item_writes_no_dot_answers(tmp_ws, tmp_path):
    """Before: sid2desc answered '. Categories: …' (the template is '${title}. ${about}')."""
    from storage.sid import format_sid
    from synth.tasks.run import run_task

    items = {"B001": "Red lipstick", "B002": None, "B003": "   ", "B004": "Hair dryer"}
    reviews = write_lines(tmp_path / "Beauty.json.gz", _reviews_2018(REVIEWS))
    ingest_amazon(tmp_ws, reviews, write_lines(tmp_path / "meta.json.gz", _meta_2018(items)))
    assert dict(tmp_ws.query("SELECT item_id, title FROM items")) == {
        "B001": "Red lipstick", "B002": None, "B003": None, "B004": "Hair dryer"}
    with tmp_ws.transaction() as con:
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, 4, '{}', '{}')")
        for k, a in enumerate(sorted(items)):
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [a, [0, 0, k], format_sid([0, 0, k])])
    dv = run_task(tmp_ws, "align_item")
    from storage.datasets import read_dv

    answers = [m[1]["content"] for m in read_dv(dv, ["messages"]).column("messages").to_pylist()]
    assert answers and not [a for a in answers if a.startswith(".") or a.startswith(" ") or "None" in a]
    assert sum(a.startswith("Red lipstick. ") or a.startswith("Hair dryer. ") for a in answers) == 2


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_timestamp_beyond_int64_is_a_clean_error_or_reject(tmp_ws, tmp_path, on_error):
    """Before: a DuckDB 'Conversion Error: ... out of range' traceback (exit 1), even with --on-error skip."""
    rows = _reviews_2018(REVIEWS)
    rows[4] = json.dumps({"reviewerID": "u2", "asin": "B001", "overall": 4.0, "unixReviewTime": 10 ** 20,
                          "verified": True})
    reviews = write_lines(tmp_path / "Beauty.json.gz", rows)
    meta = write_lines(tmp_path / "meta.json.gz", _meta_2018(ITEMS))
    opts = IngestOptions(domain="amazon", on_error=on_error)
    if on_error == "raise":
        with pytest.raises(InputError) as e:
            ingest_amazon(tmp_ws, reviews, meta, opts=opts)
        assert (e.value.line, e.value.field) == (5, "unixReviewTime") and "as a timestamp" in str(e.value)
    else:
        r = ingest_amazon(tmp_ws, reviews, meta, opts=opts)
        assert r.skipped == 1 and r.interactions == len(REVIEWS) - 1


def test_timestamps_before_1970_or_far_ahead_are_accepted_with_a_warning(tmp_ws, tmp_path, caplog):
    rows = [(u, a, r, t) for u, a, r, t in REVIEWS]
    rows[0] = ("u1", "B001", 5.0, -86_400)                     # 1969-12-31
    rows[1] = ("u1", "B002", 4.0, 4_102_444_800)               # 2100-01-01
    reviews = write_lines(tmp_path / "Beauty.json.gz", _reviews_2018(rows))
    with caplog.at_level(logging.INFO):
        r = ingest_amazon(tmp_ws, reviews, write_lines(tmp_path / "meta.json.gz", _meta_2018(ITEMS)))
    assert r.interactions == len(REVIEWS)
    assert any("1 interaction(s) dated before 1970" in w and "line 1" in w for w in r.warnings), r.warnings
    assert any("1 interaction(s) dated more than a year in the future" in w and "line 2" in w
               for w in r.warnings), r.warnings


def test_a_huge_title_is_cut_to_the_documented_limit(tmp_ws, tmp_path):
    items = dict(ITEMS)
    items["B001"] = "Lipstick " * 1_200_000                    # ~10 MB
    reviews = write_lines(tmp_path / "Beauty.json.gz", _reviews_2018(REVIEWS))
    r = ingest_amazon(tmp_ws, reviews, write_lines(tmp_path / "meta.json.gz", _meta_2018(items)))
    (n,) = tmp_ws.query("SELECT length(title) FROM items WHERE item_id = 'B001'")[0]
    assert n == TITLE_MAX_CHARS == 1000 and r.truncated_titles == 1
    assert any("1 title(s) longer than 1,000 characters were cut" in w for w in r.warnings)


def test_gzip_without_gz_suffix_is_read_by_its_magic_bytes(tmp_ws, tmp_path):
    """Before: 'not valid UTF-8: byte 0x8b at column 2'."""
    reviews = tmp_path / "Beauty.json"                         # gzipped, but named .json
    reviews.write_bytes(gzip.compress(("\n".join(_reviews_2018(REVIEWS)) + "\n").encode()))
    meta = tmp_path / "meta_Beauty.json"
    meta.write_bytes(gzip.compress(("\n".join(_meta_2018(ITEMS)) + "\n").encode()))
    assert ingest_amazon(tmp_ws, reviews, meta).interactions == len(REVIEWS)
    items_csv = tmp_path / "items.csv"                         # generic CSV too (pyarrow's reader)
    items_csv.write_bytes(gzip.compress(b"item_id,title\n" + b"".join(f"{a},{t}\n".encode() for a, t in ITEMS.items())))
    inter = tmp_path / "inter.csv"
    inter.write_bytes(gzip.compress(b"user_id,item_id,timestamp\n" + b"".join(
        f"{u},{a},{t}\n".encode() for u, a, _, t in REVIEWS)))
    r = ingest_generic(Workspace.open(tmp_path / "ws2"), items=items_csv, interactions=inter,
                       opts=IngestOptions(domain="g"))
    assert r.items == 4 and r.interactions == len(REVIEWS)


def test_reviews_and_meta_swapped_get_a_hint(tmp_ws, tmp_path):
    """Before: 'broken JSON: Expecting property name enclosed in double quotes at column 2' and nothing else."""
    reviews = write_lines(tmp_path / "reviews_Beauty.json.gz", _reviews_2018(REVIEWS))
    meta14 = write_lines(tmp_path / "meta_Beauty.json.gz", [repr({"asin": a, "title": t, "categories": [["B"]]})
                                                           for a, t in ITEMS.items()])
    with pytest.raises(InputError, match="swapped: pass the reviews file first"):
        ingest_amazon(tmp_ws, meta14, reviews)                 # 2014 meta (Python literals) as reviews
    meta18 = write_lines(tmp_path / "meta_B.json.gz", _meta_2018(ITEMS))
    with pytest.raises(InputError, match="metadata line, not a review.*swapped"):
        ingest_amazon(tmp_ws, meta18, reviews)                 # JSON meta as reviews
    with pytest.raises(InputError, match="review line, not item metadata.*swapped"):
        ingest_amazon(tmp_ws, reviews, reviews)                # reviews given as meta


def _cli(args: list[str]) -> tuple[int, str]:
    """`recot ARGS` in-process (ui.cli.main turns a RecotError into one line and an exit code)."""
    import io
    import sys
    from contextlib import redirect_stderr, redirect_stdout

    from ui import cli

    out, old = io.StringIO(), sys.argv
    sys.argv, code = ["recot", *args], 0
    try:
        with redirect_stdout(out), redirect_stderr(out):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    finally:
        sys.argv = old
    return code, out.getvalue()


def test_workspace_path_with_a_quote_ingests_shows_diffs_and_exports(tmp_path):
    """Before: `Parser Error: syntax error at or near "s"` from SQL built with the path inside '…'."""
    import pyarrow as pa

    from storage.datasets import diff_versions, lineage, resolve, write_version

    root = tmp_path / "it's here"
    ws = Workspace.open(root / "ws")
    reviews = write_lines(root / "Beauty.json.gz", _reviews_2018(REVIEWS))
    assert ingest_amazon(ws, reviews, write_lines(root / "meta.json.gz", _meta_2018(ITEMS))).interactions \
        == len(REVIEWS)                                          # staged in a Parquet file under tmp/ (a view)
    items_csv, inter = root / "it's items.csv", root / "it's inter.csv"
    items_csv.write_text("item_id,title\n" + "".join(f"{a},{t}\n" for a, t in ITEMS.items()))
    inter.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{a},{t}\n" for u, a, _, t in REVIEWS))
    assert ingest_generic(ws, items=items_csv, interactions=inter,
                          opts=IngestOptions(domain="g", item_prefix="g:")).interactions == len(REVIEWS)
    write_version(ws, "s", pa.table({"sample_id": ["a", "b"]}), step="test")
    write_version(ws, "s", pa.table({"sample_id": ["b", "c"]}), step="test")
    for args in (["datasets", "show", "s@v1"], ["datasets", "diff", "s@v1", "s@v2"],
                 ["datasets", "export", "s@v2", "--out", str(root / "o'ut"), "--format", "parquet"]):
        code, text = _cli([*args, "-w", str(ws.root)])
        assert code == 0 and "Traceback" not in text, text
    assert diff_versions(ws, resolve(ws, "s@v1"), resolve(ws, "s@v2"))["common"] == 1
    assert [x["dataset"] for x in lineage(ws, "b")] == ["s@v2", "s@v1"]
