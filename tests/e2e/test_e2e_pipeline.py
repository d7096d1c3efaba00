"""End to end: the README's main job (`recot demo`: ingest → SIDs → synth with the embedded teacher →
curate) on a small slice, then review push/pull on the real Argilla stack, the viewer on the result, SFT for
a few steps and `recot eval` — asserting counts and lineage at every step."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.argilla]

REPO = Path(__file__).resolve().parents[2]
RECOT = [sys.executable, "-m", "ui.cli"]


def recot(*args: str, ws: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECOT_WORKSPACE": str(ws), "COLUMNS": "200"}
    r = subprocess.run([*RECOT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"recot {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_main_job_end_to_end(tmp_path):
    from storage.datasets import get_version, lineage, list_versions, read_dv
    from storage.sid_catalog import SidCatalog
    from storage.workspace import Workspace

    root = tmp_path / "ws"
    # ---- 1. the main job on embedded defaults ---------------------------------------------------------
    recot("demo", "--users", "2", "--align-users", "20", "--max-tokens", "96", ws=root)
    ws = Workspace.open(root, create=False)
    counts = ws.counts()
    assert (counts["items"], counts["users"], counts["interactions"]) == (1682, 943, 100_000)
    assert ws.query("SELECT split, count(*) FROM splits GROUP BY 1 ORDER BY 1") == [
        ("test", 943), ("train", 98_114), ("valid", 943)]
    cat = SidCatalog.load(ws)
    assert len(cat.item_to_sid) == 1682 and len(set(cat.item_to_sid.values())) == 1682
    assert json.loads(ws.query("SELECT report FROM sid_versions")[0][0])["collision_rate_after"] == 0

    versions = {dv.ref: dv for dv in list_versions(ws)}
    align = get_version(ws, "align_item")
    assert align.rows > 0 and align.manifest["synth"]["sid_version"] == cat.version
    rows = read_dv(align).to_pylist()
    for r in rows[:: max(1, len(rows) // 50)]:  # SID <-> title pairs match the catalog
        item = r["target_item_ids"][0]
        assert cat.item_to_sid[item] in (r["target_sids"] or [])
        assert cat.titles[item] in json.dumps(r["messages"], ensure_ascii=False)
    cot = get_version(ws, "cot")
    assert cot.rows >= 2 and cot.manifest["synth"]["teachers"] == ["local:smollm2-135m-instruct"]
    for name in ("align_item", "cot", "cot_blind", "cot_r1", "cot_r2", "r0_grounding"):
        src = get_version(ws, name)
        cur = get_version(ws, f"{name}-curated")
        assert cur.parents == [{"name": name, "version": src.version}]
        assert cur.rows == src.rows  # kept and rejected samples are both stored
        n_verdicts = ws.query("SELECT count(DISTINCT sample_id) FROM verdicts WHERE dataset = ? AND version = ?",
                              [cur.name, cur.version])[0][0]
        assert n_verdicts == src.rows
    # every sample traces back to its run, and the run exists
    sample = read_dv(cot).to_pylist()[0]
    assert ws.query("SELECT kind, status FROM runs WHERE run_id = ?", [sample["run_id"]]) == [("synth", "done")]
    assert [x["dataset"] for x in lineage(ws, sample["sample_id"])] == ["cot-curated@v1", "cot@v1"]
    assert "cot-curated@v1" in versions

    # ---- 2. review: push to the real Argilla stack, annotate as an annotator, pull, apply ----------------
    from curation.review import stack
    from curation.review.client import server_record_ids
    from curation.review.overrides import apply_reviews
    from curation.review.pull import pull
    from curation.review.push import push
    from curation.review.users import add_annotator

    st = stack.up(ws, watch_pid=os.getpid())
    try:
        assert st.state == "running"
        target = get_version(ws, "align_item-curated")
        res = push(ws, target.ref, size=6, strategy="random", seed=1)
        assert res.selected == 6 and res.sent == 6
        assert push(ws, target.ref, size=6, strategy="random", seed=1).sent == 0  # nothing twice
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
        assert pulled.new == 3
        assert sorted(x[0] for x in ws.query("SELECT sample_id FROM reviews WHERE annotator = 'e2e-annotator'")) == reviewed
        overridden = apply_reviews(ws, target.ref)
        assert overridden.parents == [{"name": target.name, "version": target.version}]
        keep = {r["sample_id"]: r["keep"] for r in read_dv(overridden).to_pylist()}
        assert keep[reviewed[0]] is False and keep[reviewed[1]] is True and keep[reviewed[2]] is True
    finally:
        stack.down(ws)

    # ---- 3. the viewer loads the workspace ---------------------------------------------------------------
    from streamlit.testing.v1 import AppTest

    from ui.commands.viewer import APP_PATH

    os.environ["RECOT_VIEWER_WORKSPACE"] = str(root)
    try:
        at = AppTest.from_file(str(APP_PATH), default_timeout=120).run()
        assert not at.exception
        page = " ".join(str(m.value) for m in [*at.markdown, *at.caption, *at.title, *at.header, *at.subheader])
        assert "cot" in page or "align_item" in page
    finally:
        os.environ.pop("RECOT_VIEWER_WORKSPACE", None)

    # ---- 4. SFT a few steps on the curated alignment corpus, then eval on the test split -----------------
    out_dir = tmp_path / "sft-model"
    recot("train", "sft", "--config", "configs/train/sft.cpu.yaml", "--dataset", overridden.ref,
          "--out", str(out_dir), ws=root)
    assert (out_dir / "config.json").exists()
    run = ws.query("SELECT status, config FROM runs WHERE kind = 'train-sft' ORDER BY started_at DESC LIMIT 1")[0]
    assert run[0] == "done" and overridden.ref in run[1]
    recot("eval", "--model", str(out_dir), "--max-users", "4", "--k", "1,5,10", ws=root)
    model, metrics, lin = ws.query("SELECT model, metrics, lineage FROM evals ORDER BY created_at DESC LIMIT 1")[0]
    metrics = json.loads(metrics)
    assert model == str(out_dir)
    m = next(iter(metrics.values()))
    assert set(m) >= {"HR@1", "HR@5", "HR@10", "NDCG@10"} and m["invalid_sids"] == 0
    assert all(0.0 <= m[k] <= 1.0 for k in ("HR@1", "HR@5", "HR@10", "NDCG@10"))
    assert json.loads(lin)["sid_version"] == cat.version
