"""Each viewer page driven with Streamlit's AppTest on the fixture workspace (and on empty/missing ones)."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from ui_workspace import HALLUCINATED, NEEDLE, SCRIPT, TITLES, cognition_sample

from storage.datasets import write_version
from storage.records import samples_from_pylist

VIEWER_DIR = Path(__file__).resolve().parents[2] / "ui" / "viewer"


def _no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def _texts(at) -> str:
    """All text an AppTest rendered (markdown, captions, code, text, headers, alerts)."""
    parts = []
    for el in _walk(at._tree):
        v = getattr(el, "value", None)
        if isinstance(v, str):
            parts.append(v)
    return "\n".join(parts)


def _frames(at):
    return [d.value for d in at.dataframe]


def _goto(at, page: str):
    at.sidebar.radio(key="page").set_value(page).run()
    _no_exception(at)
    return at


def _assert_no_html_allowed(at) -> None:
    for el in _walk(at._tree):
        proto = getattr(el, "proto", None)
        if proto is not None and hasattr(proto, "allow_html"):
            assert not proto.allow_html, f"{type(el).__name__} allows HTML"


def test_viewer_code_never_enables_html():
    """Model text must never reach an HTML-enabled element; the simplest guarantee is that none exists."""
    for p in VIEWER_DIR.rglob("*.py"):
        src = p.read_text()
        assert "unsafe_allow_html" not in src and "st.html" not in src and "components.html" not in src, p


def test_empty_workspace_shows_guidance(app_test, tmp_ws):
    at = app_test(tmp_ws.root).run()
    _no_exception(at)
    assert at.header[0].value == "This workspace is empty"
    assert "recot ingest movielens-100k" in _texts(at)


def test_missing_workspace_shows_guidance_and_creates_nothing(app_test, tmp_path):
    root = tmp_path / "not-yet"
    at = app_test(root).run()
    _no_exception(at)
    assert at.header[0].value == "No workspace yet"
    assert "recot ingest movielens-100k" in _texts(at)
    assert not root.exists()


def test_overview(app_test, viewer_ws_path):
    at = app_test(viewer_ws_path).run()
    _no_exception(at)
    assert at.header[0].value == "Overview"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items"] == "12" and metrics["Dataset versions"] == "3" and metrics["Reviews"] == "3"
    frames = _frames(at)
    datasets = next(f for f in frames if "dataset" in f and "step" in f)
    assert set(datasets["dataset"]) == {"r3_recommend@v1", "r3_recommend@v2", "r3_recommend-curated@v1"}
    funnel = next(f for f in frames if "filter" in f and "dropped" in f)
    assert funnel["filter"].tolist() == ["parse", "sid_valid", "judge"] and funnel["out"].tolist() == [7, 6, 5]
    runs = next(f for f in frames if "run_id" in f and "kind" in f)
    assert runs.loc[runs["kind"] == "synth", "stats.cost_usd"].iloc[0] == pytest.approx(0.0123)
    reviews = next(f for f in frames if "annotators" in f)
    assert reviews.set_index("status").loc["submitted", "samples"] == 2
    charts = [el for el in _walk(at._tree) if getattr(el, "type", None) in ("vega_lite_chart", "arrow_vega_lite_chart")]
    assert len(charts) >= 2  # funnel + review progress
    assert "8 samples in → 5 kept" in _texts(at)


def _traces(at, dataset="r3_recommend-curated@v1"):
    _goto(at, "Traces")
    at.selectbox(key="traces_dataset").set_value(dataset).run()
    _no_exception(at)
    return at


def _listed(at) -> set[str]:
    return set(next(f for f in _frames(at) if "sample_id" in f)["sample_id"])


def test_traces_filters_and_search(app_test, viewer_ws_path):
    at = _traces(app_test(viewer_ws_path).run())
    assert _listed(at) == {f"s{i}" for i in range(8)}
    at.selectbox(key="traces_verdict").set_value("drop").run()
    assert _listed(at) == {"s1", "s5", "s6"}
    assert "**3** of 8 samples match" in _texts(at)
    at.selectbox(key="traces_reason").set_value("sid_valid").run()
    assert _listed(at) == {"s1"}
    at.selectbox(key="traces_verdict").set_value("(any)").run()
    at.selectbox(key="traces_reason").set_value("(any)").run()
    at.selectbox(key="traces_review").set_value("submitted").run()
    assert _listed(at) == {"s0", "s2"}
    at.selectbox(key="traces_review").set_value("(any)").run()
    at.text_input(key="traces_search").input(NEEDLE.upper()).run()
    assert _listed(at) == {"s6"}
    at.text_input(key="traces_search").input("needle-[0-9]+").run()
    at.checkbox(key="traces_regex").check().run()
    assert _listed(at) == {"s6"}
    at.text_input(key="traces_search").input("([").run()  # invalid regex → a warning, not a crash
    _no_exception(at)
    assert any("Query failed" in w.value for w in at.warning)
    at.checkbox(key="traces_regex").uncheck().run()
    at.text_input(key="traces_search").input("").run()
    at.selectbox(key="traces_task").set_value("r2_chain").run()
    assert _listed(at) == {"s3"}
    at.selectbox(key="traces_task").set_value("(any)").run()
    at.text_input(key="traces_user").input("u3").run()
    assert _listed(at) == {"s2", "s7"}
    _no_exception(at)


def test_open_trace_shows_detail_and_keeps_model_text_literal(app_test, viewer_ws_path):
    at = _traces(app_test(viewer_ws_path).run())
    at.text_input(key="traces_search").input("script").run()
    assert _listed(at) == {"s2"}
    at.button(key="traces_open_button").click().run()
    _no_exception(at)
    assert at.session_state["page"] == "Trace detail" and at.header[0].value == "Trace detail"
    assert at.text_input(key="trace_sample").value == "s2"
    subheaders = [s.value for s in at.subheader]
    for want in ("User history", "Prompt", "Reasoning and answer", "Answer vs target", "Filter verdicts",
                 "Annotator responses", "Lineage"):
        assert want in subheaders
    # raw model text, literally
    assert any(SCRIPT in c.value for c in at.code)
    # readable version: escaped, SIDs as titles
    readable = [m.value for m in at.markdown if "Movie 2" in m.value and "script" in m.value]
    # (the search "script" is highlighted: its matches inside a highlight directive, still escaped)
    assert readable and "\\<:orange-background[script]\\>" in readable[0] and "<script>" not in readable[0]
    _assert_no_html_allowed(at)
    frames = _frames(at)
    history = next(f for f in frames if "role" in f)
    assert history["title"].tolist()[-1] == TITLES["12"] and history["role"].tolist()[-1] == "target"
    answer = next(f for f in frames if "hit" in f)
    assert answer["title"].tolist() == [TITLES["12"]] and answer["hit"].tolist() == [True]
    verdicts = next(f for f in frames if "filter" in f and "keep" in f)
    assert set(verdicts["filter"]) == {"parse", "sid_valid", "judge"}
    reviews = next(f for f in frames if "annotator" in f)
    assert set(reviews["annotator"]) == {"ann1", "ann2"}
    lineage = next(f for f in frames if "step" in f and "parents" in f)
    assert "r3_recommend-curated@v1" in set(lineage["dataset"])
    assert any(m.label.startswith("Judge score") and m.value == "0.90" for m in at.metric)


def test_trace_detail_flags_hallucinated_sid_via_deep_link(app_test, viewer_ws_path):
    at = app_test(viewer_ws_path)
    at.query_params["dataset"] = "r3_recommend-curated@v1"
    at.query_params["sample"] = "s1"
    at.run()
    _no_exception(at)
    assert at.header[0].value == "Trace detail"
    assert any(":red-background[**hallucinated SID a9·b9·c9**]" in m.value for m in at.markdown)
    answer = next(f for f in _frames(at) if "hit" in f)
    assert answer["sid"].tolist() == [HALLUCINATED] and answer["title"].iloc[0].startswith("HALLUCINATED")
    assert "dropped by sid\\_valid" in _texts(at)
    at.text_input(key="trace_sample").input("no-such-sample").run()
    _no_exception(at)
    assert any("not in" in w.value for w in at.warning)


def test_sids_page(app_test, viewer_ws_path):
    at = _goto(app_test(viewer_ws_path).run(), "SIDs")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items with a SID"] == "12" and metrics["Items in collisions"] == "2"
    collisions = next(f for f in _frames(at) if "group_size" in f)
    assert set(collisions["item_id"]) == {"11", "12"}
    at.selectbox(key="sids_level_0_()").set_value(2).run()
    at.selectbox(key="sids_level_1_(2,)").set_value(1).run()
    _no_exception(at)
    items = next(f for f in _frames(at) if "sid" in f and "group_size" not in f and "categories" not in f)
    assert set(items["item_id"]) == {"11", "12"}
    at.text_input(key="sids_search").input("italic").run()
    found = next(f for f in _frames(at) if "categories" in f)
    assert found["title"].tolist() == [TITLES["7"]]


def test_compare_page(app_test, viewer_ws_path):
    at = _goto(app_test(viewer_ws_path).run(), "Compare")
    at.selectbox(key="compare_a").set_value("r3_recommend@v1").run()
    at.selectbox(key="compare_b").set_value("r3_recommend@v2").run()
    _no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Added in B"] == "1" and metrics["Removed in B"] == "1" and metrics["In both"] == "7"
    frames = _frames(at)
    tasks = next(f for f in frames if "task" in f and "delta" in f).set_index("task")
    assert tasks.loc["r2_chain", "delta"] == 1
    added = [f for f in frames if "sample_id" in f]
    assert added[0]["sample_id"].tolist() == ["s8"] and added[1]["sample_id"].tolist() == ["s7"]
    at.selectbox(key="compare_b").set_value("r3_recommend-curated@v1").run()
    shifts = next(f for f in _frames(at) if "metric" in f).set_index("metric")
    assert shifts.loc["keep_rate", "b"] == pytest.approx(0.625)


def test_new_version_appears_after_refresh(app_test, viewer_ws_copy):
    at = app_test(viewer_ws_copy.root).run()
    assert {m.label: m.value for m in at.metric}["Dataset versions"] == "3"
    write_version(viewer_ws_copy, "late-arrival", pa.table({"x": [1, 2]}), step="test")
    at.sidebar.button[0].click().run()
    _no_exception(at)
    assert {m.label: m.value for m in at.metric}["Dataset versions"] == "4"
    datasets = next(f for f in _frames(at) if "dataset" in f and "step" in f)
    assert "late-arrival@v1" in set(datasets["dataset"])


def test_trace_detail_shows_three_levels_and_skeleton(app_test, viewer_ws_copy):
    """A v2 trace: one section per cognition level (model text still literal), the skeleton's interest points
    with share/recency and the target's point, the evolution periods, and the skeleton-teacher label."""
    row = cognition_sample(20)
    write_version(viewer_ws_copy, "cot_skeleton", samples_from_pylist([row]), step="synth")
    at = app_test(viewer_ws_copy.root)
    at.query_params["dataset"] = "cot_skeleton@v1"
    at.query_params["sample"] = "s20"
    at.run()
    _no_exception(at)
    bold = [m.value for m in at.markdown]
    assert [b for b in bold if b in ("**1. Perception**", "**2. Interest points**", "**3. Evolution**")] == [
        "**1. Perception**", "**2. Interest points**", "**3. Evolution**"]
    assert "**Reasoning**" not in bold  # levels replace the single reasoning block
    # level text without its label: with SIDs, a readable version (titles, escaped); without, literal code
    perception = next(m for m in bold if "early dramas" in m)
    assert "Movie 1" in perception and "Perception" not in perception
    evolution = next(c.value for c in at.code if "moved from" in c.value)
    assert evolution.startswith("the user moved") and SCRIPT in evolution and "Interest points" not in evolution
    _assert_no_html_allowed(at)
    frames = _frames(at)
    points = next(f for f in frames if "label" in f and "share" in f)
    assert points["label"].tolist() == ["early dramas", "late nineties dramas"]
    assert points["share"].tolist() == ["40%", "40%"] and points["recent"].tolist() == [0, 2]
    assert points["target"].tolist() == ["", "target"] and points["sid_prefix"].tolist() == ["a0·b0", "a0·b1"]
    periods = next(f for f in frames if "period" in f)
    assert periods["dominant"].tolist() == ["(1) early dramas", "(2) late nineties dramas"]
    summary = dict(next(f for f in frames if "what" in f).values.tolist())
    assert summary["target serves"] == "(2) late nineties dramas"
    assert summary["shifts"] == "(1) early dramas → (2) late nineties dramas (2024-01-03)"
    assert any("Skeleton teacher" in i.value for i in at.info)


def test_trace_detail_names_why_a_skeleton_trace_is_not_three_levels(app_test, viewer_ws_copy):
    row = cognition_sample(21)
    row["reasoning"] = row["reasoning"].replace("Interest points:", "Interest Points:")
    write_version(viewer_ws_copy, "cot_skeleton", samples_from_pylist([row]), step="synth")
    at = app_test(viewer_ws_copy.root)
    at.query_params["dataset"] = "cot_skeleton@v1"
    at.query_params["sample"] = "s21"
    at.run()
    _no_exception(at)
    assert any("missing level: Interest points" in w.value.replace("\\", "") for w in at.warning)
    assert "**Reasoning**" in [m.value for m in at.markdown]
    assert any("label" in f and "share" in f for f in _frames(at))  # the skeleton is still shown
