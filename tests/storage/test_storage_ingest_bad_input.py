"""Bad input: every case names file, line and field; --on-error skip writes rejects; failures leave no trace;
a second writer is told the workspace is busy."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ingest_fixtures import REVIEWS, write_lines

from storage.errors import InputError
from storage.ingest.amazon import ingest_amazon
from storage.ingest.catalog import IngestOptions
from storage.ingest.generic import ingest_generic
from storage.ingest.movielens import ingest_movielens

MAP = "user=uid,item=iid,ts=time,title=name,rating=stars"


def _events(tmp_path, rows, name="events.jsonl"):
    return write_lines(tmp_path / name, [r if isinstance(r, str) else json.dumps(r) for r in rows])


def _good_rows():
    return [{"uid": u, "iid": a, "stars": r, "time": t} for u, a, r, t in REVIEWS]


def _ingest(ws, items, events, **kw):
    return ingest_generic(ws, items=items, interactions=events, mapping=MAP, opts=IngestOptions(**kw))


def test_missing_column_names_expected_and_found(tmp_ws, generic_files, tmp_path):
    bad = tmp_path / "ev.csv"
    bad.write_text("user,iid,stars,time\nu1,B001,5,1300000000\n")
    with pytest.raises(InputError) as e:
        _ingest(tmp_ws, generic_files["items"], bad)
    msg = str(e.value)
    assert e.value.file == str(bad) and e.value.field == "uid"
    assert "missing columns 'uid'" in msg and "expected uid, iid, time" in msg and "found user, iid, stars, time" in msg
    # JSONL: the first line's keys are checked the same way
    with pytest.raises(InputError, match=r"line 1.*missing field\(s\) 'time'.*found uid, iid, stars"):
        _ingest(tmp_ws, generic_files["items"], _events(tmp_path, [{"uid": "u1", "iid": "B001", "stars": 5}]))
    # an explicitly mapped optional column that is absent is an error too, not silently ignored
    with pytest.raises(InputError, match="missing columns 'nope'"):
        ingest_generic(tmp_ws, items=generic_files["items"], interactions=generic_files["jsonl"],
                       mapping=MAP + ",description=nope")
    with pytest.raises(InputError, match=r"movies\.csv.*missing columns 'genres'"):
        d = tmp_path / "ml"
        d.mkdir()
        (d / "movies.csv").write_text("movieId,title\n1,A\n")
        (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,1\n")
        ingest_movielens(tmp_ws, d)


@pytest.mark.parametrize("field,value,expect", [
    ("stars", "five", "cannot read 'five' as a number"),
    ("time", "yesterday", "cannot read 'yesterday' as a timestamp"),
])
def test_wrong_type_names_line_field_value(tmp_ws, generic_files, tmp_path, field, value, expect):
    rows = _good_rows()
    rows[6][field] = value  # line 7
    with pytest.raises(InputError) as e:
        _ingest(tmp_ws, generic_files["items"], _events(tmp_path, rows))
    assert (e.value.line, e.value.field) == (7, field)
    assert expect in str(e.value) and "events.jsonl" in str(e.value)


def test_broken_json_line_number(tmp_ws, generic_files, tmp_path):
    rows = [json.dumps(r) for r in _good_rows()]
    rows[4] = rows[4][:-3]  # truncated object on line 5
    with pytest.raises(InputError, match=r"events\.jsonl, line 5: broken JSON"):
        _ingest(tmp_ws, generic_files["items"], _events(tmp_path, rows))


def test_amazon_broken_meta_line_in_gz(tmp_ws, amazon2014, tmp_path):
    reviews, _ = amazon2014
    meta = write_lines(tmp_path / "meta_bad.json.gz", [repr({"asin": "B001", "title": "x"}), "{'asin': 'B002', 'ti"])
    with pytest.raises(InputError) as e:
        ingest_amazon(tmp_ws, reviews, meta)
    assert e.value.line == 2 and "broken JSON" in str(e.value)


def test_duplicate_item_ids(tmp_ws, generic_files, tmp_path):
    items = tmp_path / "items_dup.csv"
    items.write_text("iid,name\nB001,a\nB002,b\nB003,c\nB004,d\nB002,again\n")
    with pytest.raises(InputError) as e:
        _ingest(tmp_ws, items, generic_files["jsonl"])
    assert (e.value.file, e.value.line, e.value.field) == (str(items), 6, "iid")
    assert "duplicate item id 'B002' (first defined at line 3)" in str(e.value)


def test_unknown_item_reference(tmp_ws, generic_files, tmp_path):
    rows = _good_rows() + [{"uid": "u9", "iid": "NOPE", "stars": 1, "time": 1_300_000_000}]
    with pytest.raises(InputError) as e:
        _ingest(tmp_ws, generic_files["items"], _events(tmp_path, rows))
    assert (e.value.line, e.value.field) == (11, "iid") and "unknown item id 'NOPE'" in str(e.value)


def test_empty_files(tmp_ws, generic_files, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.jsonl.*file is empty"):
        _ingest(tmp_ws, generic_files["items"], empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("iid,name\n")
    with pytest.raises(InputError, match=r"header\.csv.*no rows"):
        _ingest(tmp_ws, header_only, generic_files["jsonl"])
    gz = tmp_path / "reviews_empty.json.gz"
    with gzip.open(gz, "wb"):
        pass
    with pytest.raises(InputError, match="file is empty"):
        ingest_amazon(tmp_ws, gz)


def test_non_utf8_bytes_line_number(tmp_ws, generic_files, tmp_path):
    lines = [json.dumps(r).encode() for r in _good_rows()]
    lines[7] = lines[7].replace(b'"u3"', b'"u\xff3"')
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError) as e:
        _ingest(tmp_ws, generic_files["items"], bad)
    assert e.value.line == 8 and "not valid UTF-8: byte 0xff" in str(e.value)
    csv_items = tmp_path / "items_latin.csv"
    csv_items.write_bytes(b"iid,name\nB001,ok\nB002,caf\xe9\nB003,x\nB004,y\n")
    with pytest.raises(InputError) as e:
        _ingest(tmp_ws, csv_items, generic_files["jsonl"])
    assert (e.value.line, e.value.field) == (3, "name") and "not valid UTF-8" in str(e.value)


def test_on_error_skip_writes_rejects(tmp_ws, generic_files, tmp_path):
    rows = [json.dumps(r) for r in _good_rows()]
    rows[1] = "{not json"                                                              # line 2
    rows[3] = json.dumps({"uid": "u1", "iid": "B004", "stars": "bad", "time": 1})      # line 4
    rows.append(json.dumps({"uid": "u1", "iid": "ZZZ", "stars": 1, "time": 1}))        # line 11
    rep = _ingest(tmp_ws, generic_files["items"], _events(tmp_path, rows), on_error="skip")
    assert rep.skipped == 3 and rep.interactions == 8
    rejects = [json.loads(x) for x in Path(rep.rejects_path).read_text().splitlines()]
    assert Path(rep.rejects_path).parent == tmp_ws.root / "rejects"
    assert [(r["line"], r["field"]) for r in rejects] == [(2, None), (4, "stars"), (11, "iid")]
    assert rejects[0]["raw"] == "{not json" and "broken JSON" in rejects[0]["reason"]
    assert "unknown item id 'ZZZ'" in rejects[2]["reason"]
    run = tmp_ws.query("SELECT json_extract(stats, '$.skipped')::INT FROM runs WHERE run_id = ?", [rep.run_id])
    assert run == [(3,)]


def _snapshot(ws):
    tables = ["items", "users", "interactions", "splits", "dataset_versions", "item_sids"]
    return {t: ws.query(f"SELECT * FROM {t} ORDER BY ALL") for t in tables}


def test_failure_midway_leaves_no_trace(tmp_ws, generic_files, tmp_path):
    _ingest(tmp_ws, generic_files["items"], generic_files["jsonl"])
    before = _snapshot(tmp_ws)
    # a large file (> several batches) whose bad line is near the end
    n = 12_000
    items = tmp_path / "big_items.csv"
    items.write_text("iid,name\n" + "".join(f"I{i},item {i}\n" for i in range(1000)))
    rows = [json.dumps({"uid": f"u{i % 500}", "iid": f"I{i % 1000}", "stars": 3, "time": 1_400_000_000 + i})
            for i in range(n)]
    rows[n - 5] = json.dumps({"uid": "u1", "iid": "I1", "stars": 3, "time": "not-a-time"})
    big = _events(tmp_path, rows, "big.jsonl")
    with pytest.raises(InputError) as e:
        ingest_generic(tmp_ws, items=items, interactions=big, mapping=MAP,
                       opts=IngestOptions(batch_rows=2000))
    assert e.value.line == n - 4
    assert _snapshot(tmp_ws) == before
    # a failure inside the catalog transaction (unknown item found only when all rows are read) rolls back too
    rows[n - 5] = json.dumps({"uid": "u1", "iid": "MISSING", "stars": 3, "time": 1})
    with pytest.raises(InputError, match="unknown item id 'MISSING'"):
        ingest_generic(tmp_ws, items=items, interactions=_events(tmp_path, rows, "big2.jsonl"), mapping=MAP,
                       opts=IngestOptions(batch_rows=2000))
    assert _snapshot(tmp_ws) == before
    assert not [p for p in tmp_ws.tmp_dir.iterdir() if p.name.startswith(".tmp-")]
    assert not (tmp_ws.root / "rejects").exists()
    statuses = tmp_ws.query("SELECT status FROM runs ORDER BY started_at")
    assert statuses == [("done",), ("failed",), ("failed",)]


def test_busy_workspace_via_cli(tmp_ws, generic_files, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from storage.workspace import Workspace
        ws = Workspace.open({str(tmp_ws.root)!r})
        with ws.writer("synth"):
            print("locked", flush=True)
            time.sleep(600)  # killed below; far longer than the CLI's timeout, so waiting could never succeed
        """)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "locked"
        recot = Path(sys.executable).parent / "recot"
        out = subprocess.run([str(recot), "ingest", "generic", "-w", str(tmp_ws.root), "--items",
                              str(generic_files["items"]), "--interactions", str(generic_files["jsonl"]),
                              "--map", MAP], capture_output=True, text=True, timeout=60)
        assert out.returncode == 3, out.stderr
        # exit 3 within the timeout while the lock is still held: it was refused, not queued behind the holder
        assert "workspace busy" in out.stderr and "Traceback" not in out.stderr
    finally:
        holder.kill()
        holder.wait()
    assert tmp_ws.query("SELECT count(*) FROM items")[0][0] == 0


def test_csv_wrong_field_count_and_exact_lines_when_skipping(tmp_ws, generic_files, tmp_path):
    ev = tmp_path / "ev.csv"
    ev.write_text("uid,iid,time\nu1,B001,1\nu1,B004\nu2,B001,3\nu2,B004,zz\n")
    with pytest.raises(InputError) as e:
        ingest_generic(tmp_ws, items=generic_files["items"], interactions=ev, mapping="user=uid,item=iid,ts=time")
    assert e.value.line == 3 and "wrong number of fields (expected 3: uid, iid, time)" in str(e.value)
    rep = ingest_generic(tmp_ws, items=generic_files["items"], interactions=ev, mapping="user=uid,item=iid,ts=time",
                         opts=IngestOptions(on_error="skip"))
    rejects = [json.loads(x) for x in Path(rep.rejects_path).read_text().splitlines()]
    # the row after the skipped one keeps its physical line number (5), not a shifted one
    assert [(r["line"], r["field"]) for r in rejects] == [(3, None), (5, "time")]
    assert rep.interactions == 2


def test_corrupt_gzip_is_an_input_error(tmp_ws, tmp_path):
    data = gzip.compress(b'{"reviewerID": "u", "asin": "a", "overall": 1, "unixReviewTime": 1}\n' * 50)
    bad = tmp_path / "reviews_cut.json.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read file"):
        ingest_amazon(tmp_ws, bad)


def test_amazon_errors_name_the_dump_fields(tmp_ws, tmp_path):
    lines = [json.dumps({"reviewerID": u, "asin": a, "overall": r, "unixReviewTime": t, "helpful": [0, 0]})
             for u, a, r, t in REVIEWS]
    lines[2] = json.dumps({"reviewerID": "u1", "asin": "B003", "overall": 3.0, "unixReviewTime": "03 13, 2011"})
    with pytest.raises(InputError) as e:
        ingest_amazon(tmp_ws, write_lines(tmp_path / "reviews_X.json.gz", lines))
    assert (e.value.line, e.value.field) == (3, "unixReviewTime") and "'03 13, 2011'" in str(e.value)
    not_amazon = write_lines(tmp_path / "other.jsonl", [json.dumps({"a": 1})])
    with pytest.raises(InputError, match="not an Amazon review line.*found keys a"):
        ingest_amazon(tmp_ws, not_amazon)
