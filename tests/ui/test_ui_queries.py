"""The viewer's reads (ui/viewer/queries.py) on the fixture workspace: overview tables, the funnel reader,
trace filters and paging, trace detail, SIDs, compare, cache stamp, and read-only behaviour."""
from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from ui_workspace import DROPS, HALLUCINATED, NEEDLE, SCRIPT, TITLES, sid

from storage.datasets import get_version, write_version
from storage.errors import WorkspaceBusy
from ui.viewer import queries as q


@pytest.fixture(scope="module")
def ws(viewer_ws_path):
    return q.open_readonly(viewer_ws_path)


@pytest.fixture(scope="module")
def curated(ws):
    return get_version(ws, "r3_recommend-curated")


def test_open_readonly_never_creates_a_workspace(tmp_path):
    assert q.open_readonly(tmp_path / "nothing") is None
    assert not (tmp_path / "nothing").exists()


def test_datasets_and_runs_tables(ws):
    ds = q.datasets_table(ws)
    assert set(ds["dataset"]) == {"r3_recommend@v1", "r3_recommend@v2", "r3_recommend-curated@v1"}
    cur = ds[ds["dataset"] == "r3_recommend-curated@v1"].iloc[0]
    assert bool(cur["curated"]) and cur["parents"] == "r3_recommend@v1" and cur["rows"] == 8
    runs = q.runs_table(ws)
    synth = runs[runs["kind"] == "synth"].iloc[0]
    assert synth["stats.requests"] == 8 and synth["stats.cost_usd"] == pytest.approx(0.0123)
    assert runs[runs["kind"] == "curate"].iloc[0]["stats.dropped.judge"] == 1
    assert "sk-should-not-be-stored" not in runs.to_string()


def test_review_progress_counts_by_status(ws):
    rp = q.review_progress(ws).set_index("status")
    assert rp.loc["submitted", "samples"] == 2 and rp.loc["draft", "responses"] == 1


def test_funnel_from_manifest_and_from_verdicts(ws, curated):
    fn = q.funnel(ws, curated)
    assert fn["filter"].tolist() == ["parse", "sid_valid", "judge"]
    assert fn["in"].tolist() == [8, 7, 6] and fn["out"].tolist() == [7, 6, 5]
    # Without a manifest funnel the same numbers come from the verdicts table.
    no_funnel = {k: v for k, v in curated.manifest.items() if k != "funnel"}
    bare = type(curated)(**{**curated.__dict__, "manifest": no_funnel})
    fv = q.funnel(ws, bare)
    assert fv["filter"].tolist() == ["parse", "sid_valid", "judge"]
    assert fv["dropped"].tolist() == [1, 1, 1]
    assert fv.set_index("filter").loc["sid_valid", "reasons"] == {"hallucinated SID": 1}


@pytest.mark.parametrize("shape", [
    {"filters": [{"name": "a", "in": 10, "out": 8, "reasons": {"x": 2}}, {"name": "b", "out": 5}]},
    [{"filter": "a", "n_in": 10, "kept": 8}, {"filter": "b", "removed": 3}],
    {"a": {"in": 10, "out": 8}, "b": {"in": 8, "dropped": 3}},
    {"steps": [{"step": "a", "in": 10, "dropped": 2}, {"step": "b", "in": 8, "out": 5}]},
])
def test_normalize_funnel_accepts_shape_variants(shape):
    fn = q.normalize_funnel(shape)
    assert fn["filter"].tolist() == ["a", "b"]
    assert fn["in"].tolist() == [10, 8] and fn["out"].tolist() == [8, 5] and fn["dropped"].tolist() == [2, 3]


def test_normalize_funnel_garbage_is_empty_not_an_error():
    for junk in (None, "text", 3, {"filters": "nope"}, [1, 2]):
        assert q.normalize_funnel(junk).empty


@pytest.mark.parametrize("filt, expected", [
    (q.TraceFilter(), {f"s{i}" for i in range(8)}),
    (q.TraceFilter(task="r2_chain"), {"s3"}),
    (q.TraceFilter(level="alignment"), {"s4"}),
    (q.TraceFilter(mode="blind"), {"s7"}),
    (q.TraceFilter(teacher="local:smollm2"), {"s3"}),
    (q.TraceFilter(verdict="drop"), set(DROPS)),
    (q.TraceFilter(verdict="keep"), {f"s{i}" for i in range(8)} - set(DROPS)),
    (q.TraceFilter(reason="sid_valid"), {"s1"}),
    (q.TraceFilter(user="u3"), {"s2", "s7"}),
    (q.TraceFilter(review_status="submitted"), {"s0", "s2"}),
    (q.TraceFilter(review_status="draft"), {"s2"}),
    (q.TraceFilter(review_status="unreviewed"), {"s1", "s3", "s4", "s5", "s6", "s7"}),
    (q.TraceFilter(search=NEEDLE.upper()), {"s6"}),
    (q.TraceFilter(search=r"needle-\d+", regex=True), {"s6"}),
    (q.TraceFilter(search="<script>"), {"s2"}),
    (q.TraceFilter(search="<|sid_begin|><s_a_9>"), {"s1"}),   # literal: '|' is not alternation here
    (q.TraceFilter(search="title='pwned'"), {"s2"}),
    (q.TraceFilter(search="([.*"), set()),                      # metacharacters are literal, not an error
    (q.TraceFilter(search="Careful.*fits", regex=True), {"s2"}),
    (q.TraceFilter(verdict="keep", user="u3", search="fits"), {"s2"}),
])
def test_trace_filters(ws, curated, filt, expected):
    page = q.trace_page(ws, curated, filt, limit=100)
    assert set(page["sample_id"]) == expected
    assert q.count_traces(ws, curated, filt) == len(expected)


def test_reason_filter_without_verdicts_uses_rejected_by(ws, curated, tmp_path):
    # Same curated parquet, but as a version whose verdicts aren't in the catalog.
    other = type(curated)(**{**curated.__dict__, "name": "elsewhere"})
    assert not q.has_verdicts(ws, other)
    assert set(q.trace_page(ws, other, q.TraceFilter(reason="judge"))["sample_id"]) == {"s6"}
    assert set(q.trace_page(ws, other, q.TraceFilter(verdict="drop"))["sample_id"]) == set(DROPS)


def test_paging_is_stable_and_disjoint(ws, curated):
    pages = [q.trace_page(ws, curated, q.TraceFilter(), limit=3, offset=o)["sample_id"].tolist() for o in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert sum(pages, []) == [f"s{i}" for i in range(8)]  # file order, no duplicates, nothing lost


def test_choices(ws, curated):
    assert q.choices(curated, "task") == ["r2_chain", "r3_recommend", "sid_to_title"]
    assert q.choices(curated, "no_such_column") == []
    assert q.reason_choices(ws, curated) == ["judge", "parse", "sid_valid"]
    assert q.review_status_choices(ws) == ["draft", "submitted", "unreviewed"]


def test_trace_detail(ws, curated):
    d = q.trace_detail(ws, curated, "s2")
    row = d["row"]
    assert SCRIPT in row["reasoning"]
    hist = d["history"]
    assert hist["title"].tolist() == [TITLES[i] for i in ["2", "4", "6", "8", "10", "12"]]
    assert hist["role"].tolist() == ["in prompt"] * 5 + ["target"]
    assert hist["split"].tolist()[-2:] == ["valid", "test"]
    assert hist["sid"].iloc[0] == sid("2") and hist["ts"].notna().all()
    assert d["lookup"][sid("12")]["title"] == TITLES["12"]
    assert d["answer_sids"] == [{"sid": sid("12"), "known": True, "title": TITLES["12"], "item_id": "12"}]
    assert d["verdicts"]["filter"].tolist() == ["parse", "sid_valid", "judge"]  # chain order
    assert d["verdicts"]["keep"].all()
    assert d["judge"] == {"judge": 0.9}
    assert set(d["reviews"]["annotator"]) == {"ann1", "ann2"}


def test_trace_detail_flags_hallucinated_sid(ws, curated):
    d = q.trace_detail(ws, curated, "s1")
    assert d["answer_sids"] == [{"sid": HALLUCINATED, "known": False, "title": None, "item_id": None}]
    v = d["verdicts"].set_index("filter")
    assert not v.loc["sid_valid", "keep"] and v.loc["sid_valid", "reason"] == "hallucinated SID"


def test_trace_detail_item_level_sample_and_missing_sample(ws, curated):
    d = q.trace_detail(ws, curated, "s4")
    assert d["history"]["item_id"].tolist() == ["5"] and d["history"]["role"].tolist() == ["target"]
    assert q.trace_detail(ws, curated, "nope") is None


def test_raw_version_detail_shows_verdicts_of_curated_versions(ws):
    raw = get_version(ws, "r3_recommend", 1)
    d = q.trace_detail(ws, raw, "s6")
    assert set(d["verdicts"]["curated_version"]) == {"r3_recommend-curated@v1"}
    assert {x["dataset"] for x in q.lineage_of(ws, "s6")} == {"r3_recommend@v1", "r3_recommend@v2",
                                                              "r3_recommend-curated@v1"}


def test_sid_tree_collisions_and_search(ws):
    assert q.code_counts(ws, 1)["items"].tolist() == [4, 4, 4]
    assert dict(zip(*q.code_counts(ws, 1, (2,)).pipe(lambda d: (d["code"], d["items"])))) == {0: 2, 1: 2}
    assert q.code_counts(ws, 1, (2, 1, 1))[["code", "items"]].values.tolist() == [[0, 1], [1, 1]]  # level d
    assert set(q.items_with_prefix(ws, 1, (2, 1, 1))["item_id"]) == {"11", "12"}
    coll = q.collisions(ws, 1)
    assert set(coll["item_id"]) == {"11", "12"} and set(coll["base_codes"]) == {"2-1-1"}
    assert q.search_items(ws, 1, "ITALIC")["item_id"].tolist() == ["7"]
    assert q.search_items(ws, 1, "<s_a_2><s_b_1><s_c_1><s_d_0>")["item_id"].tolist() == ["11"]
    assert q.search_items(ws, 1, "movie 3 ")["item_id"].tolist() == ["3"]
    assert q.search_items(ws, 1, "12")["item_id"].tolist() == ["12"]  # by item id (and title)


def test_compare_versions(ws, curated):
    a, b = get_version(ws, "r3_recommend", 1), get_version(ws, "r3_recommend", 2)
    res = q.compare(ws, a, b)
    assert (res["diff"]["added"], res["diff"]["removed"], res["diff"]["common"]) == (1, 1, 7)
    tasks = res["tasks"].set_index("task")
    assert tasks.loc["r2_chain", "delta"] == 1 and tasks.loc["r3_recommend", "delta"] == -1
    added, removed = q.added_removed(a, b)
    assert added["sample_id"].tolist() == ["s8"] and removed["sample_id"].tolist() == ["s7"]
    shifts = q.compare(ws, a, curated)["shifts"].set_index("metric")
    assert shifts.loc["keep_rate", "b"] == pytest.approx(5 / 8)
    assert shifts.loc["mean_score.judge", "b"] == pytest.approx((0.9 * 5 + 0.2) / 6)


def test_stamp_changes_when_a_version_lands(viewer_ws_copy):
    ws = viewer_ws_copy
    before = q.catalog_stamp(ws)
    assert q.catalog_stamp(ws) == before
    write_version(ws, "extra", pa.table({"x": [1]}), step="test")
    assert q.catalog_stamp(ws) != before


HOLD_LOCK = """
import sys
from storage.workspace import Workspace
with Workspace.open(sys.argv[1]).writer("long-job"):
    print("ready", flush=True)
    sys.stdin.readline()
"""


def test_viewer_reads_while_a_job_holds_the_writer_lock(viewer_ws_copy):
    """A long job keeps the writer lock (not DuckDB) for hours; the viewer must keep working meanwhile and
    must not take anything the job needs."""
    job = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(viewer_ws_copy.root)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "ready"
        with pytest.raises(WorkspaceBusy):  # the lock really is held
            with viewer_ws_copy.writer("second"):
                pass
        ws = q.open_readonly(viewer_ws_copy.root)
        assert len(q.datasets_table(ws)) == 3
        assert q.count_traces(ws, get_version(ws, "r3_recommend-curated"), q.TraceFilter(verdict="drop")) == 3
        assert q.trace_detail(ws, get_version(ws, "r3_recommend-curated"), "s2") is not None
    finally:
        job.communicate("go\n", timeout=30)
    assert job.returncode == 0


def _rows_scanned(profile: dict) -> list[int]:
    out, stack = [], [profile]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("operator_type", node.get("type")) == "TABLE_SCAN":
                out.append(int(node.get("rows_scanned", node.get("operator_cardinality", 0))))
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(node)
    return out


def test_page_of_a_million_samples_reads_only_a_few_row_groups(tmp_ws, tmp_path):
    """Paging must stay a bounded read: the page query over 1M samples scans a small fraction of the rows
    (checked in DuckDB's profile, not by timing), and the whole dataset is never loaded."""
    n = 1_000_000
    i = pa.array(np.arange(n))
    ids = pc.binary_join_element_wise("id", pc.cast(i, pa.string()), "")
    tasks = pa.DictionaryArray.from_arrays(pa.array((np.arange(n) % 4 != 0).astype(np.int8)),
                                           pa.array(["r2_chain", "r3_recommend"])).cast(pa.string())
    answers = pa.DictionaryArray.from_arrays(pa.array((np.arange(n) == 777_777).astype(np.int8)),
                                             pa.array(["a plain answer", "needle here"])).cast(pa.string())
    table = pa.table({"sample_id": ids, "task": tasks,
                      "user_id": pc.binary_join_element_wise(
                          "u", pc.cast(pa.array(np.arange(n) % 943), pa.string()), ""),
                      "reasoning": pa.repeat("the user likes crime films", n),
                      "answer": answers, "keep": pa.array(np.arange(n) % 3 != 0)})
    dv = write_version(tmp_ws, "big", table, step="test")
    assert dv.rows == n
    f = q.TraceFilter(task="r2_chain", verdict="keep")
    con = duckdb.connect()
    prof = tmp_path / "profile.json"
    con.execute("SET enable_profiling = 'json'")
    con.execute(f"SET profiling_output = '{prof}'")
    sql, params = q.page_sql(tmp_ws, dv, f, con, 50, 100)
    page = con.execute(sql, params).df()
    con.close()
    expected = [f"id{i}" for i in range(n) if i % 4 == 0 and i % 3 != 0][100:150]
    assert page["sample_id"].tolist() == expected
    scanned = _rows_scanned(json.loads(prof.read_text()))
    assert scanned, "no scan in the profile"
    assert max(scanned) < n // 10, f"page query scanned {scanned} rows of {n}"
    # The public functions agree, and search finds the one needle.
    assert q.trace_page(tmp_ws, dv, f, limit=50, offset=100)["sample_id"].tolist() == expected
    assert q.trace_page(tmp_ws, dv, q.TraceFilter(search="NEEDLE"))["sample_id"].tolist() == ["id777777"]
    assert q.count_traces(tmp_ws, dv, q.TraceFilter()) == n


def test_reads_what_the_real_curation_chain_writes(viewer_ws_copy):
    """The funnel shape and verdicts written by curation.chain.run_chain are what the viewer reads."""
    from curation.chain import run_chain

    ws = viewer_ws_copy
    dv = run_chain(ws, "r3_recommend@v1", "minimal")
    ws_ro = q.open_readonly(ws.root)
    fn = q.funnel(ws_ro, dv)
    assert fn["filter"].tolist() == ["format", "sid_grounding", "exact_dup", "near_dup"]
    assert fn["in"].iloc[0] == 8 and fn["out"].iloc[-1] == dv.manifest["funnel"]["kept"]
    assert int(fn["dropped"].sum()) == 8 - dv.manifest["funnel"]["kept"]
    dropped_by = fn.set_index("filter")["dropped"]
    for f in q.reason_choices(ws_ro, dv):
        flagged = q.count_traces(ws_ro, dv, q.TraceFilter(reason=f))
        assert flagged >= dropped_by[f]  # flagged by f (dropped there or already dropped earlier)
    assert q.count_traces(ws_ro, dv, q.TraceFilter(verdict="drop")) == 8 - dv.manifest["funnel"]["kept"]
    d = q.trace_detail(ws_ro, dv, "s1")
    assert d["verdicts"]["filter"].tolist()[0] == "format"
