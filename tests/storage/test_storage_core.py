"""Workspace, dataset versions and the SID grammar: the parts every package builds on."""
import json
import subprocess
import sys

import pytest

from storage import sid as S
from storage.datasets import diff_versions, get_version, lineage, list_versions, read_version, write_version
from storage.errors import NotFound
from storage.records import samples_from_pylist


def _samples(ids):
    return samples_from_pylist([{"sample_id": i, "task": "t", "level": "R3"} for i in ids])


def test_versions_are_immutable_numbered_and_traceable(tmp_ws):
    v1 = write_version(tmp_ws, "cot", _samples(["a", "b"]), step="synth", config={"n": 1})
    v2 = write_version(tmp_ws, "cot", _samples(["b", "c", "d"]), step="curate", parents=[("cot", 1)])
    assert (v1.version, v2.version) == (1, 2)
    assert read_version(tmp_ws, "cot", 1).column("sample_id").to_pylist() == ["a", "b"]
    assert get_version(tmp_ws, "cot").version == 2
    assert [v.ref for v in list_versions(tmp_ws)] == ["cot@v1", "cot@v2"]
    manifest = json.loads((v2.path / "manifest.json").read_text())
    assert manifest["rows"] == 3 and manifest["parents"] == [{"name": "cot", "version": 1}]
    assert manifest["content_hash"].startswith("sha256:") and manifest["step"] == "curate"
    d = diff_versions(tmp_ws, v1, v2)
    assert (d["removed"], d["added"], d["common"]) == (1, 2, 1)
    assert [x["dataset"] for x in lineage(tmp_ws, "b")] == ["cot@v2", "cot@v1"]


def test_failed_write_leaves_no_trace(tmp_ws):
    def batches():
        yield _samples(["a"]).to_batches()[0]
        raise RuntimeError("boom midway")

    with pytest.raises(RuntimeError):
        write_version(tmp_ws, "cot", batches(), step="synth")
    assert list_versions(tmp_ws) == []
    assert [p.name for p in (tmp_ws.datasets_dir / "cot").iterdir()] == []
    with pytest.raises(NotFound, match="known datasets"):
        get_version(tmp_ws, "cot")


def test_configs_are_redacted_in_manifests(tmp_ws):
    v = write_version(tmp_ws, "x", _samples(["a"]), step="s",
                      config={"teacher": {"api_key": "sk-live-1234567890", "url": "http://h"}})
    text = (v.path / "manifest.json").read_text()
    assert "sk-live-1234567890" not in text and "redacted" in text


def test_second_writer_gets_workspace_busy(tmp_ws):
    code = ("from storage.workspace import Workspace\n"
            f"ws = Workspace.open({str(tmp_ws.root)!r})\n"
            "with ws.writer('other'): pass\n")
    with tmp_ws.writer("ingest"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode != 0 and "workspace busy" in r.stderr and "ingest" in r.stderr
        # readers still work while a job holds the writer lock
        r = subprocess.run([sys.executable, "-c", f"from storage.workspace import Workspace; "
                            f"print(Workspace.open({str(tmp_ws.root)!r}).counts()['items'])"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "0"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0


def test_sid_round_trip_and_extraction():
    s = S.format_sid([12, 201, 7])
    assert s == "<|sid_begin|><s_a_12><s_b_201><s_c_7><|sid_end|>"
    assert S.parse_sid(s) == (12, 201, 7)
    assert S.extract_sids(f"try {s} or {S.format_sid([1, 2, 3, 0])}.") == [s, S.format_sid([1, 2, 3, 0])]


@pytest.mark.parametrize("bad, why", [
    ("<s_a_1><s_b_2><s_c_3><|sid_end|>", "missing <|sid_begin|>"),
    ("<|sid_begin|><s_a_1><s_b_2>", "missing <|sid_end|>"),
    ("<|sid_begin|><s_a_1><s_c_2><|sid_end|>", "level 2 should be <s_b_"),
    ("<|sid_begin|><s_a_1> <s_b_2><|sid_end|>", "unexpected text"),
    ("<|sid_begin|><|sid_end|>", "0 level"),
])
def test_malformed_sids_are_rejected_with_reason(bad, why):
    with pytest.raises(S.SidFormatError, match=why.replace("|", r"\|")):
        S.parse_sid(bad)


def test_codebook_bounds_checked():
    with pytest.raises(S.SidFormatError, match="outside the codebook"):
        S.parse_sid(S.format_sid([300, 1, 1]), codebook_sizes=[256, 256, 256])


def test_trie_allows_exactly_valid_continuations():
    sids = [S.format_sid(c) for c in [(1, 2, 3), (1, 2, 4), (1, 5, 0), (7, 0, 0, 1)]]
    trie = S.SidTrie(sids)
    assert trie.allowed([]) == [S.SID_BEGIN]
    assert trie.allowed([S.SID_BEGIN]) == ["<s_a_1>", "<s_a_7>"]
    assert trie.allowed([S.SID_BEGIN, "<s_a_1>"]) == ["<s_b_2>", "<s_b_5>"]
    assert trie.allowed([S.SID_BEGIN, "<s_a_1>", "<s_b_2>"]) == ["<s_c_3>", "<s_c_4>"]
    assert trie.allowed([S.SID_BEGIN, "<s_a_1>", "<s_b_2>", "<s_c_3>"]) == [S.SID_END]
    assert trie.allowed([S.SID_BEGIN, "<s_a_9>"]) == []
    assert trie.allowed([S.SID_BEGIN, "<s_a_7>", "<s_b_0>", "<s_c_0>"]) == ["<s_d_1>"]
    ids = {t: i for i, t in enumerate(S.vocabulary_for(sids))}
    id_trie = trie.to_ids(ids)
    assert sorted(id_trie.allowed_ids([ids[S.SID_BEGIN], ids["<s_a_1>"]])) == sorted([ids["<s_b_2>"], ids["<s_b_5>"]])
    assert all(trie.contains(s) for s in sids) and not trie.contains(S.format_sid([1, 2, 9]))
