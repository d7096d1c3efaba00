"""Viewer behaviours from a first hour of use: prompt search with highlighting, a funnel whose small drops are
visible, answers without SIDs, history lines that name a title once, and jobs that are still running."""
from __future__ import annotations

import json

import pandas as pd
from test_ui_app import _frames, _goto, _no_exception, _texts, _traces
from ui_workspace import SCRIPT, TITLES, sid

from storage.runs import start_run
from ui.viewer import queries as q
from ui.viewer.render import highlight_pattern, segments, to_markdown
from ui.viewer.views.overview import funnel_chart


def test_search_covers_the_prompt(viewer_ws_path):
    from storage.datasets import get_version
    from storage.workspace import Workspace

    ws = Workspace.open(viewer_ws_path, create=False)
    dv = get_version(ws, "r3_recommend-curated")
    # "You recommend movies." is only in the system prompt of every sample (not in reasoning or answer)
    assert q.count_traces(ws, dv, q.TraceFilter(search="you RECOMMEND movies")) == 8
    assert q.count_traces(ws, dv, q.TraceFilter(search="next\\?$", regex=True)) == 8


def test_highlight_is_escaped_and_marks_every_match():
    segs = segments(f"a <b>Needle</b> {SCRIPT} needle", {})
    out = to_markdown(segs, highlight_pattern("needle"))
    assert out.count(":orange-background[") == 2 and "<b>" not in out and "<script>" not in out
    assert ":orange-background[Needle]" in out and ":orange-background[needle]" in out
    assert highlight_pattern("([", regex=True) is None   # an invalid regex highlights nothing, never crashes


def test_a_title_written_beside_its_sid_is_not_repeated():
    lookup = {sid("2"): {"item_id": "2", "title": TITLES["2"]}, sid("3"): {"item_id": "3", "title": TITLES["3"]}}
    out = to_markdown(segments(f"1. {TITLES['2']} {sid('2')}\n2. {sid('3')}", lookup))
    assert out.count("Movie 2") == 1                 # written once, by the prompt; the SID shows as its code
    assert "**Movie 3 \\(1993\\)**" in out           # a bare SID still shows its title


def test_funnel_labels_even_a_tiny_drop():
    fn = pd.DataFrame([{"filter": "format", "in": 28011, "out": 27961, "dropped": 50},
                       {"filter": "dedup", "in": 27961, "out": 27961, "dropped": 0}])
    spec = funnel_chart(fn).to_dict()
    labels = {r["filter"]: r["label"] for ds in spec["datasets"].values() for r in ds}
    assert labels == {"format": "−50 (0.18%)", "dedup": "none dropped"}
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "text"]


def test_trace_without_answer_sids_says_so(app_test, viewer_ws_path):
    at = _traces(app_test(viewer_ws_path).run())
    at.text_input(key="traces_search").input("I cannot answer").run()
    at.button(key="traces_open_button").click().run()
    _no_exception(at)
    assert at.text_input(key="trace_sample").value == "s5"
    assert "the answer names no SID" in _texts(at)


def test_a_running_synth_run_is_visible_with_its_progress(app_test, viewer_ws_copy):
    ws = viewer_ws_copy
    run_id = start_run(ws, "synth", {"task": "r3_recommend", "dataset": "cot"})
    with ws.transaction("test") as con:
        row = con.execute("SELECT stats FROM runs WHERE run_id = ?", [run_id]).fetchone()
        stats = {**json.loads(row[0] or "{}"), "task": "r3_recommend",
                 "teacher": {"requests": 10, "completed": 4, "failed": 1, "cached": 2, "sent": 3}}
        con.execute("UPDATE runs SET stats = ? WHERE run_id = ?", [json.dumps(stats), run_id])
    live = q.running_runs(ws)
    assert live.to_dict("records")[0] | {"started_at": None} == {
        "run_id": run_id, "kind": "synth", "task": "r3_recommend", "dataset": "cot", "started_at": None,
        "requests done": "5 of 10", "cached": 2, "failed": 1}
    at = _goto(app_test(ws.root).run(), "Overview")
    assert "Running now" in [s.value for s in at.subheader]
    assert any("requests done" in f and run_id in set(f["run_id"]) for f in _frames(at))
