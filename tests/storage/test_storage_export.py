"""Export to HF datasets / Parquet / OpenOneRec (one writer) and import back; domain selection; the split
export; atomic, no overwrite."""
from __future__ import annotations

import json

import datasets
import duckdb
import pytest

from storage.datasets import read_dv, write_version
from storage.errors import InputError, RecotError
from storage.export import export, import_chat
from storage.ingest.generic import ingest_generic
from storage.records import CURATED_SCHEMA, samples_from_pylist

SID = "<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>"


def _samples(n=6):
    return samples_from_pylist([{
        "sample_id": f"s{i}", "prompt_id": f"p{i // 2}", "task": "r3_recommend", "level": "R3", "mode": "blind",
        "think": True, "domain": "shop", "user_id": f"u{i}", "target_sids": [SID],
        "messages": [{"role": "user", "content": f"history {i}"},
                     {"role": "assistant", "content": f"<think>reason {i}</think>I pick {SID}"}],
        "reasoning": f"reason {i}", "answer": f"I pick {SID}", "answer_sids": [SID], "reference": json.dumps({"i": i}),
        "teacher": "local:smol"} for i in range(n)])


@pytest.fixture
def shop_ws(tmp_ws, generic_files):
    ingest_generic(tmp_ws, items=generic_files["items"], interactions=generic_files["jsonl"],
                   mapping="user=uid,item=iid,ts=time,title=name,rating=stars", )
    return tmp_ws


def test_export_dataset_hf_and_parquet(shop_ws, tmp_path):
    dv = write_version(shop_ws, "cot", _samples(), step="synth")
    r = export(shop_ws, "cot@v1", "hf", tmp_path / "hf")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert r.rows == len(ds) == 6 and ds[2]["messages"][1]["content"].startswith("<think>reason 2")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/hf/parquet/*.parquet')").fetchall()[0][0] == 6
    export(shop_ws, "cot", "parquet", tmp_path / "pq")
    got = duckdb.sql(f"SELECT sample_id, answer FROM read_parquet('{tmp_path}/pq/*.parquet') ORDER BY 1").fetchall()
    assert got == [(f"s{i}", f"I pick {SID}") for i in range(6)]
    manifest = json.loads((tmp_path / "pq" / "manifest.json").read_text())
    assert manifest["source"] == "cot@v1" and manifest["content_hash"] == dv.content_hash
    # never overwrite silently; nothing half-written left next to --out
    with pytest.raises(RecotError, match="not empty"):
        export(shop_ws, "cot", "parquet", tmp_path / "pq")
    assert not list(tmp_path.glob(".tmp-export-*"))


def test_export_curated_kept_only(shop_ws, tmp_path):
    t = _samples(4)
    import pyarrow as pa

    t = t.append_column("keep", pa.array([True, False, True, False])) \
        .append_column("rejected_by", pa.array([None, "judge", None, "format"])) \
        .append_column("reject_reason", pa.array([None, "low", None, "bad"])) \
        .append_column("scores", pa.array(["{}"] * 4))
    write_version(shop_ws, "cur", t.cast(CURATED_SCHEMA), step="curate")
    assert export(shop_ws, "cur", "parquet", tmp_path / "a").rows == 2
    assert export(shop_ws, "cur", "parquet", tmp_path / "b", include_rejected=True).rows == 4


def test_openonerec_roundtrip(shop_ws, tmp_path):
    """`export(…, "openonerec")` is the one OpenOneRec writer (storage.export_formats): UUIDs, messages as a JSON
    string of typed parts; and it imports back."""
    from storage.export_formats import export_openonerec, sample_uuid

    write_version(shop_ws, "cot", _samples(), step="synth")
    r = export(shop_ws, "cot", "openonerec", tmp_path / "oor")
    assert (r.format, r.rows, r.files) == ("openonerec", 6, ["data.parquet"])
    rows = duckdb.sql(f"SELECT uuid, source, metadata, messages FROM read_parquet('{tmp_path}/oor/*.parquet') "
                      "ORDER BY uuid").fetchall()
    assert [c for c in duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/oor/*.parquet')").columns] == \
        ["uuid", "source", "metadata", "messages"]
    by_id = {json.loads(md)["sample_id"]: (u, src, json.loads(md), json.loads(m)) for u, src, md, m in rows}
    uuid, source, md, messages = by_id["s0"]
    assert (uuid, source) == (sample_uuid("s0"), "recot:cot@v1:r3_recommend")
    assert md["level"] == "R3" and md["reference"] == {"i": 0} and md["target_sids"] == [SID]
    assert messages[0] == {"role": "user", "content": [{"type": "text", "text": "history 0"}]}
    # the same bytes as calling the layout writer directly
    export_openonerec(shop_ws, "cot", tmp_path / "direct")
    assert duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/direct/*.parquet') ORDER BY uuid").fetchall() == \
        duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/oor/*.parquet') ORDER BY uuid").fetchall()
    dv = import_chat(shop_ws, tmp_path / "oor", "imported")
    back = {r["sample_id"]: r for r in read_dv(dv).to_pylist()}
    assert len(back) == 6 and back["s3"]["reasoning"] == "reason 3" and back["s3"]["answer_sids"] == [SID]
    assert back["s3"]["level"] == "R3" and back["s3"]["task"] == "r3_recommend"
    assert back["s3"]["messages"][0] == {"role": "user", "content": "history 3"}
    # HF folder import as well
    export(shop_ws, "cot", "hf", tmp_path / "hf")
    assert import_chat(shop_ws, tmp_path / "hf", "imported").version == 2


def test_export_selects_domains_for_versions_and_catalog(shop_ws, tmp_path):
    rows = _samples().to_pylist()
    for r in rows[:2]:
        r["domain"] = "garden"
    write_version(shop_ws, "cot", samples_from_pylist(rows), step="synth")
    assert export(shop_ws, "cot", "parquet", tmp_path / "g", domains=["garden"]).rows == 2
    assert export(shop_ws, "cot", "parquet", tmp_path / "gs", domains=["garden", "shop"]).rows == 6
    assert export(shop_ws, "cot", "trl", tmp_path / "t", domains=["shop"]).rows == 4
    split = export(shop_ws, "catalog:split", "parquet", tmp_path / "split", domains=["default"])
    assert split.rows == 10 and duckdb.sql(f"SELECT DISTINCT domain FROM read_parquet('{tmp_path}/split/t*.parquet')"
                                           ).fetchall() == [("default",)]
    with pytest.raises(RecotError, match="0 rows"):
        export(shop_ws, "cot", "parquet", tmp_path / "none", domains=["nowhere"])
    with pytest.raises(RecotError, match="from the catalog's split"):
        export(shop_ws, "cot", "minionerec", tmp_path / "m")


def test_import_rejects_bad_messages(shop_ws, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["hi"]}), tmp_path / "no_msgs.parquet")
    with pytest.raises(InputError, match="no 'messages' column; found text"):
        import_chat(shop_ws, tmp_path / "no_msgs.parquet", "x")
    pq.write_table(pa.table({"messages": [[{"role": "user", "content": "a"}], []]}), tmp_path / "empty.parquet")
    with pytest.raises(InputError) as e:
        import_chat(shop_ws, tmp_path / "empty.parquet", "x")
    assert (e.value.line, e.value.field) == (2, "messages")


def test_export_split_loads_with_hf_and_duckdb(shop_ws, tmp_path):
    r = export(shop_ws, "catalog:split", "hf", tmp_path / "split")
    dd = datasets.load_from_disk(str(tmp_path / "split"))
    assert {k: len(v) for k, v in dd.items()} == {"train": 3, "validation": 3, "test": 4} == \
        {"train": r.splits["train"], "validation": r.splits["valid"], "test": r.splits["test"]}
    assert dd["test"].filter(lambda x: x["user_id"] == "u1")[0]["title"] == "Hair dryer"
    export(shop_ws, "split", "parquet", tmp_path / "split_pq")
    assert duckdb.sql(f"SELECT split, count(*) FROM read_parquet('{tmp_path}/split_pq/*.parquet') GROUP BY 1 "
                      "ORDER BY 1").fetchall() == [("test", 4), ("train", 3), ("valid", 3)]
    with pytest.raises(RecotError, match="OpenOneRec"):
        export(shop_ws, "catalog:split", "openonerec", tmp_path / "x")
