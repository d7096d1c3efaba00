"""Exports in other projects' layouts, each checked the way its consumer reads it: OpenOneRec (Parquet, UUIDs,
messages as a JSON string of typed text parts), MiniOneRec (CSV splits read with pandas + `eval` of the list
columns, `.index.json` of code tokens), TRL (conversational prompt/completion + messages, chat template)."""
from __future__ import annotations

import ast
import json
import uuid
from datetime import datetime, timedelta

import pandas as pd
import pytest
from typer.testing import CliRunner

from storage.datasets import write_version
from storage.export_formats import export_minionerec, export_openonerec, export_trl, sample_uuid
from storage.records import samples_from_pylist
from storage.sid import format_sid
from storage.workspace import Workspace
from ui.cli import app

runner = CliRunner()
N_ITEMS, N_USERS, HIST = 12, 4, 6  # per user: 4 train, 1 valid, 1 test


def _codes(i: int) -> tuple[int, int, int]:
    return (i // 4, (i // 2) % 2, i % 2)


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    t0 = datetime(2024, 1, 1)
    with ws.transaction("test") as con:
        for i in range(N_ITEMS):
            con.execute("INSERT INTO items VALUES (?, ?, ?, NULL, NULL, ?)",
                        [str(i), f"Item {i}", f"about {i}", "books" if i < 6 else "movies"])
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [str(i), list(_codes(i)), format_sid(_codes(i))])
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 4, ?, '{}', '{}')", [N_ITEMS])
        for u in range(N_USERS):
            dom = "books" if u < 2 else "movies"
            for pos in range(HIST):
                it = str((u * 5 + pos * 7) % N_ITEMS)
                split = "test" if pos == HIST - 1 else "valid" if pos == HIST - 2 else "train"
                ts = t0 + timedelta(days=u * 10 + pos)
                con.execute("INSERT INTO interactions VALUES (?, ?, ?, 4.0, ?)", [str(u), it, ts, dom])
                con.execute("INSERT INTO splits VALUES (?, ?, ?, ?, ?, ?)", [str(u), it, ts, pos, split, dom])
    rows = [{"sample_id": f"s{i}", "prompt_id": f"p{i}", "task": "r3_recommend", "level": "R3", "mode": "blind",
             "think": i % 2 == 0, "domain": "books" if i < 3 else "movies", "user_id": str(i),
             "target_sids": [format_sid(_codes(i))],
             "messages": [{"role": "system", "content": "You recommend."}, {"role": "user", "content": f"history {i}"},
                          {"role": "assistant", "content": f"<think>\nr{i}\n</think>\n\n{format_sid(_codes(i))}"}]}
            for i in range(6)]
    write_version(ws, "cot", samples_from_pylist(rows), step="synth")
    return ws


def _consumer_text(content):
    """OpenOneRec's documented content forms: a string, one typed part, or a list of typed parts / strings."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and content.get("type") == "text":
        return content["text"]
    assert isinstance(content, list) and content, content
    return "".join(c["text"] if isinstance(c, dict) and c.get("type") == "text" else c for c in content
                   if isinstance(c, (str, dict)))


def test_openonerec_layout_uuid_json_messages_typed_parts(ws, tmp_path):
    r = export_openonerec(ws, "cot", tmp_path / "oor", domains=["movies"])
    df = pd.read_parquet(tmp_path / "oor" / "data.parquet")
    assert list(df.columns) == ["uuid", "source", "metadata", "messages"] and r.rows == len(df) == 3
    for _, row in df.iterrows():
        assert uuid.UUID(row["uuid"]).version == 5
        meta = json.loads(row["metadata"])
        assert meta["domain"] == "movies" and row["uuid"] == sample_uuid(meta["sample_id"])
        assert isinstance(row["messages"], str)                      # a JSON string, not a nested column
        msgs = json.loads(row["messages"])
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], list) and m["content"][0]["type"] == "text" for m in msgs)
        i = int(meta["sample_id"][1:])
        assert _consumer_text(msgs[1]["content"]) == f"history {i}"
        assert _consumer_text(msgs[2]["content"]).endswith(format_sid(_codes(i)))
        assert row["source"] == "recot:cot@v1:r3_recommend"


def test_minionerec_layout_read_like_its_loader(ws, tmp_path):
    r = export_minionerec(ws, tmp_path / "mini", name="Books", domains=None, max_history=3)
    index = json.loads((tmp_path / "mini" / "index" / "Books.index.json").read_text())
    feats = json.loads((tmp_path / "mini" / "index" / "Books.item.json").read_text())
    assert r.splits == {"train": N_USERS * 3, "valid": N_USERS, "test": N_USERS}   # windows: 3 per user in train
    for split in ("train", "valid", "test"):
        df = pd.read_csv(tmp_path / "mini" / split / "Books.csv")
        assert list(df.columns) == ["user_id", "history_item_id", "history_item_title", "history_item_sid",
                                    "item_id", "item_title", "item_sid"]
        for _, row in df.iterrows():
            hist_sids = ast.literal_eval(row["history_item_sid"])          # MiniOneRec eval()s these columns
            hist_ids = ast.literal_eval(row["history_item_id"])
            assert 1 <= len(hist_sids) <= 3 and len(hist_ids) == len(hist_sids)
            assert row["item_sid"] == "".join(index[str(row["item_id"])])
            assert hist_sids == ["".join(index[i]) for i in hist_ids]
            assert feats[str(row["item_id"])]["title"] == row["item_title"]
            assert row["item_sid"].startswith("<a_") and "<c_" in row["item_sid"]
    test = pd.read_csv(tmp_path / "mini" / "test" / "Books.csv")
    assert len(ast.literal_eval(test.iloc[0]["history_item_id"])) == 3          # train + valid, last 3
    books = export_minionerec(ws, tmp_path / "mini_b", domains=["books"])
    assert books.splits["test"] == 2


def test_trl_columns_load_with_datasets_and_apply_the_chat_template(ws, tmp_path, local_model_path):
    import datasets
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    export_trl(ws, "cot", tmp_path / "trl")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "trl" / "train.parquet"), split="train")
    assert len(ds) == 6 and {"prompt", "completion", "messages"} <= set(ds.column_names)
    row = ds[0]
    assert is_conversational({"prompt": row["prompt"], "completion": row["completion"]})
    assert is_conversational({"messages": row["messages"]})
    assert row["prompt"] + row["completion"] == row["messages"] and row["completion"][0]["role"] == "assistant"
    tok = AutoTokenizer.from_pretrained(local_model_path)
    out = apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tok)
    assert "history 0" in out["prompt"] and format_sid(_codes(0)) in out["completion"]


def test_cli_export_new_formats(ws, tmp_path):
    for fmt in ("openonerec", "minionerec", "trl"):
        args = ["datasets", "export", "catalog:split" if fmt == "minionerec" else "cot", "--format", fmt,
                "--out", str(tmp_path / fmt), "-w", str(ws.root)]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (fmt, r.output, r.exception)
        assert f"as {fmt}" in " ".join(r.output.split())  # rich wraps long paths
    assert (tmp_path / "minionerec" / "index" / "recot.index.json").exists()
    # the OpenOneRec export imports back (messages JSON string → recot chat)
    r = runner.invoke(app, ["datasets", "import", str(tmp_path / "openonerec"), "--name", "back", "-w", str(ws.root)])
    assert r.exit_code == 0, (r.output, r.exception)
    from storage.datasets import read_version

    back = {x["sample_id"]: x for x in read_version(ws, "back").to_pylist()}
    assert back["s1"]["messages"][1] == {"role": "user", "content": "history 1"} and back["s1"]["domain"] == "books"
