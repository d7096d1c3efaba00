"""End to end: the README's main job (the demo pipeline, trainers/demo.py: ingest → SIDs → synth with the
embedded teacher → curate) on a small slice, run once for the module; then review push/pull on the real
Argilla stack, the viewer on the result, SFT for a few steps and `recot eval`, and a re-run of `recot demo`
that resumes. One test per stage or claim, so a failure in one does not hide the others."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage.datasets import DatasetVersion, get_version, lineage, list_versions, read_dv
from storage.sid_catalog import SidCatalog
from storage.workspace import Workspace
from trainers.demo import ALIGNMENT_TASKS, DemoConfig, DemoResult, run_demo

# the module-scoped pipeline runs inside the first test's setup: a generous hang guard for a busy machine
pytestmark = [pytest.mark.slow, pytest.mark.argilla, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
RECOT = [sys.executable, "-m", "ui.cli"]
TEACHER_DATASETS = ("align_item_narrative", "r0_grounding", "cot", "cot_blind", "cot_r1", "cot_r2")


def recot(*args: str, ws: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECOT_WORKSPACE": str(ws), "COLUMNS": "200"}
    r = subprocess.run([*RECOT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"recot {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@dataclass
class Demo:
    root: Path
    ws: Workspace
    result: DemoResult
    started: list[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The main job on embedded defaults, once for the whole module."""
    root = tmp_path_factory.mktemp("e2e") / "ws"
    ws = Workspace.open(root)
    started: list[str] = []
    result = run_demo(ws, DemoConfig(users=2, skeleton_users=60, align_users=20, max_tokens=96, progress=False),
                      on_stage=lambda name, _title: started.append(name))
    return Demo(root, ws, result, started)


@pytest.fixture(scope="module")
def catalog(demo: Demo) -> SidCatalog:
    return SidCatalog.load(demo.ws)


# ---- 1. the main job, stage by stage ------------------------------------------------------------------
def test_demo_runs_every_stage_in_order(demo):
    assert demo.started == ["ingest", "sids", "alignment", "cot_skeleton", "cot", "curate"]
    assert [s.name for s in demo.result.stages] == demo.started
    assert not any(s.skipped for s in demo.result.stages)  # a fresh workspace: nothing to resume


def test_ingest_loads_movielens_100k_with_leave_last_out_splits(demo):
    counts = demo.ws.counts()
    assert (counts["items"], counts["users"], counts["interactions"]) == (1682, 943, 100_000)
    assert demo.ws.query("SELECT split, count(*) FROM splits GROUP BY 1 ORDER BY 1") == [
        ("test", 943), ("train", 98_114), ("valid", 943)]
    assert demo.result.stage("ingest").summary == "943 users, 1,682 items, 100,000 interactions"


def test_every_item_gets_a_unique_sid(demo, catalog):
    assert len(catalog.item_to_sid) == 1682 and len(set(catalog.item_to_sid.values())) == 1682
    assert json.loads(demo.ws.query("SELECT report FROM sid_versions")[0][0])["collision_rate_after"] == 0
    assert demo.result.stage("sids").details["sid_version"] == catalog.version


def test_alignment_pairs_match_the_catalog(demo, catalog):
    made = demo.result.stage("alignment").outputs
    assert [d.name for d in made] == [*ALIGNMENT_TASKS, "align_user"] and all(d.rows > 0 for d in made)
    align = get_version(demo.ws, "align_item")
    assert align.manifest["synth"]["sid_version"] == catalog.version
    rows = read_dv(align).to_pylist()
    for r in rows[:: max(1, len(rows) // 50)]:  # SID <-> title pairs match the catalog
        item = r["target_item_ids"][0]
        assert catalog.item_to_sid[item] in (r["target_sids"] or [])
        assert catalog.titles[item] in json.dumps(r["messages"], ensure_ascii=False)


def test_cot_batch_comes_from_the_embedded_teacher(demo):
    made = demo.result.stage("cot").outputs
    assert [d.name for d in made] == list(TEACHER_DATASETS)
    cot = get_version(demo.ws, "cot")
    assert cot.rows >= 2 and cot.manifest["synth"]["teachers"] == ["local:smollm2-135m-instruct"]


def test_skeleton_teacher_cot_is_three_level_and_survives_the_default_chain(demo):
    """Issue 14's bar: the skeleton-teacher CoT set keeps >= 90% after the default chain, every kept trace has
    the three levels in order and carries the data-derived skeleton it verbalizes."""
    from storage.cognition import LEVELS, skeleton_of, split_levels

    (made,) = demo.result.stage("cot_skeleton").outputs
    assert made.name == "cot_skeleton" and made.rows == 60
    assert made.manifest["synth"]["teachers"] == ["skeleton:v1"]
    cur = next(cv for cv in demo.result.stage("curate").outputs if cv.name == "cot_skeleton-curated")
    rows = read_dv(cur).to_pylist()
    kept = [r for r in rows if r["keep"]]
    assert len(kept) >= 0.9 * len(rows), Counter(r["reject_reason"] for r in rows if not r["keep"])
    for r in kept:
        levels = split_levels(r["reasoning"])
        assert isinstance(levels, dict) and all(levels[lv].strip() for lv in LEVELS), levels
        skel = skeleton_of(r["extra"])
        # hint mode computes the target's point (null when the target serves none of the history's groups)
        assert skel is not None and skel["interest_points"] and "target_point" in skel
        assert r["answer_sids"] == r["target_sids"]  # hint mode: the answer is the held-out target


def test_curation_keeps_every_sample_with_a_verdict_and_its_parent(demo):
    curated = {cv.name: cv for cv in demo.result.stage("curate").outputs}
    funnels = demo.result.stage("curate").details["funnels"]
    for name in ("align_item", "cot", "cot_blind", "cot_r1", "cot_r2", "r0_grounding"):
        src = get_version(demo.ws, name)
        cur = curated[f"{name}-curated"]
        assert cur.parents == [{"name": name, "version": src.version}]
        assert cur.rows == src.rows  # kept and rejected samples are both stored
        n_verdicts = demo.ws.query(
            "SELECT count(DISTINCT sample_id) FROM verdicts WHERE dataset = ? AND version = ?",
            [cur.name, cur.version])[0][0]
        assert n_verdicts == src.rows
        assert 0 <= funnels[cur.ref]["kept"] <= src.rows


def test_every_sample_traces_back_to_its_run(demo):
    sample = read_dv(get_version(demo.ws, "cot")).to_pylist()[0]
    assert demo.ws.query("SELECT kind, status FROM runs WHERE run_id = ?", [sample["run_id"]]) == [("synth", "done")]
    assert [x["dataset"] for x in lineage(demo.ws, sample["sample_id"])] == ["cot-curated@v1", "cot@v1"]
    assert "cot-curated@v1" in {dv.ref for dv in list_versions(demo.ws)}


# ---- 2. review: push to the real Argilla stack, annotate as an annotator, pull, apply --------------------
@dataclass
class Review:
    target: DatasetVersion
    pushed: Any
    pushed_again: Any
    reviewed: list[str]
    pulled: Any
    annotated_ids: list[str]
    overridden: DatasetVersion


@pytest.fixture(scope="module")
def review(demo: Demo) -> Review:
    from curation.review import stack
    from curation.review.client import server_record_ids
    from curation.review.overrides import apply_reviews
    from curation.review.pull import pull
    from curation.review.push import push
    from curation.review.users import add_annotator

    ws = demo.ws
    st = stack.up(ws, watch_pid=os.getpid())
    try:
        assert st.state == "running"
        target = get_version(ws, "align_item-curated")
        res = push(ws, target.ref, size=6, strategy="random", seed=1)
        again = push(ws, target.ref, size=6, strategy="random", seed=1)
        ann = add_annotator(ws, "e2e-annotator")
        conn = stack.connect(ws)
        rid = server_record_ids(conn, "recot", res.argilla_dataset)
        assert len(rid) == 6
        reviewed = sorted(rid)[:3]
        for i, sid in enumerate(reviewed):
            value = {"rating": {"value": 1 if i == 0 else 5}, "correct": {"value": "no" if i == 0 else "yes"}}
            r = httpx.post(f"{conn.url}/api/v1/records/{rid[sid]}/responses",
                           headers={"X-Argilla-Api-Key": ann.api_key},
                           json={"values": value, "status": "submitted"}, timeout=30)
            assert r.status_code == 201, r.text
        pulled = pull(ws, target.ref)
        annotated = sorted(x[0] for x in ws.query("SELECT sample_id FROM reviews WHERE annotator = 'e2e-annotator'"))
        overridden = apply_reviews(ws, target.ref)
    finally:
        stack.down(ws)
    return Review(target, res, again, reviewed, pulled, annotated, overridden)


def test_review_push_sends_each_sample_once(review):
    assert review.pushed.selected == 6 and review.pushed.sent == 6
    assert review.pushed_again.sent == 0


def test_review_pull_brings_back_the_annotators_answers(review):
    assert review.pulled.new == 3
    assert review.annotated_ids == review.reviewed


def test_applied_reviews_override_the_filters_verdicts(review):
    assert review.overridden.parents == [{"name": review.target.name, "version": review.target.version}]
    keep = {r["sample_id"]: r["keep"] for r in read_dv(review.overridden).to_pylist()}
    first, *rest = review.reviewed
    assert keep[first] is False and all(keep[s] is True for s in rest)


# ---- 3. the viewer loads the workspace ---------------------------------------------------------------------
def test_viewer_opens_the_demo_workspace(demo, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui.commands.viewer import APP_PATH

    monkeypatch.setenv("RECOT_VIEWER_WORKSPACE", str(demo.root))
    at = AppTest.from_file(str(APP_PATH), default_timeout=120).run()
    assert not at.exception
    page = " ".join(str(m.value) for m in [*at.markdown, *at.caption, *at.title, *at.header, *at.subheader])
    assert "cot" in page or "align_item" in page


# ---- 4. SFT a few steps on the reviewed corpus, then eval on the test split ------------------------------
@pytest.fixture(scope="module")
def trained(demo: Demo, review: Review, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("sft") / "sft-model"
    recot("train", "sft", "--config", "configs/train/sft.cpu.yaml", "--dataset", review.overridden.ref,
          "--out", str(out_dir), ws=demo.root)
    return out_dir


def test_sft_trains_on_the_reviewed_corpus_and_records_its_run(demo, review, trained):
    assert (trained / "config.json").exists()
    status, config = demo.ws.query(
        "SELECT status, config FROM runs WHERE kind = 'train-sft' ORDER BY started_at DESC LIMIT 1")[0]
    assert status == "done" and review.overridden.ref in config


def test_eval_reports_hit_rates_on_the_test_split(demo, catalog, trained):
    recot("eval", "--model", str(trained), "--max-users", "4", "--k", "1,5,10", ws=demo.root)
    model, metrics, lin = demo.ws.query(
        "SELECT model, metrics, lineage FROM evals ORDER BY created_at DESC LIMIT 1")[0]
    assert model == str(trained)
    rows = json.loads(metrics)
    assert {"random", "popular", "item_knn"} <= set(rows)  # baselines scored on the same users, same harness
    m = rows["no_think"]
    assert set(m) >= {"HR@1", "HR@5", "HR@10", "NDCG@10"} and m["invalid_sids"] == 0
    assert all(0.0 <= m[k] <= 1.0 for k in ("HR@1", "HR@5", "HR@10", "NDCG@10"))
    assert json.loads(lin)["sid_version"] == catalog.version


# ---- 5. `recot demo` itself: a re-run resumes (last: it adds dataset versions) ----------------------------
def test_demo_command_rerun_skips_ingest_and_sids_and_reuses_the_teacher_cache(demo):
    r = recot("demo", "--users", "2", "--skeleton-users", "60", "--align-users", "20", "--max-tokens", "96",
              ws=demo.root)
    assert "catalog present (skipped" in r.stdout and "present (skipped)" in r.stdout
    assert "recot demo — workspace" in r.stdout and "next: recot ui" in r.stdout
    # answers the first run completed come from the durable cache (a request that failed then is asked again)
    runs = demo.ws.query("SELECT stats FROM runs WHERE kind = 'synth' ORDER BY started_at")
    teacher_stats = [t for (stats,) in runs[-(len(ALIGNMENT_TASKS) + 2 + len(TEACHER_DATASETS)):]
                     for t in json.loads(stats).get("teachers", [])]
    assert teacher_stats, runs[-3:]
    assert sum(t["cached"] for t in teacher_stats) > 0, teacher_stats
    assert sum(t["sent"] for t in teacher_stats) < sum(t["unique"] for t in teacher_stats), teacher_stats
    # nothing is overwritten: rows that differ (a request that failed before) make cot@v2; the same rows make
    # no new version, and the run row says "unchanged"
    latest = get_version(demo.ws, "cot")
    assert get_version(demo.ws, "cot", 1).rows > 0
    assert latest.version == 2 or any(json.loads(s).get("unchanged") == "cot@v1" for (s,) in runs), runs[-3:]
