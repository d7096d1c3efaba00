"""Fixtures for the review tests: ONE real local Argilla stack per session (server + worker + Redis +
osmem), started in a tmp workspace and stopped at the end, and a small curated dataset built directly
through the storage APIs (items, SIDs, a curated version, its verdicts) so these tests do not depend on
the ingest / synth / curation packages."""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from storage.records import CURATED_SCHEMA, SAMPLE_SCHEMA
from storage.sid import format_sid

FILTERS = ("format", "sid_validity", "leakage", "llm_judge")
# the chain stage behind each verdict label, as curation's funnel records it (label → filter type): review
# takes issue labels and the judge from the filter classes, not from the labels' wording
FILTER_TYPES = {"format": "format", "sid_validity": "sid_grounding", "leakage": "hint_leakage", "llm_judge": "judge"}
N_ITEMS = 40
N_SAMPLES = 24


@pytest.fixture(scope="session")
def argilla_ws(tmp_path_factory):
    """The workspace that owns the session's running Argilla stack (items + SIDs already in its catalog).
    Tests call `stack.connect(ws)` themselves: a test may restart the stack (new ports)."""
    from curation.review import stack
    from storage.workspace import Workspace

    saved = {k: os.environ.pop(k) for k in ("ARGILLA_API_URL", "ARGILLA_API_KEY") if k in os.environ}
    ws = Workspace.open(tmp_path_factory.mktemp("argilla") / "ws")
    ensure_catalog(ws)
    st = stack.up(ws, watch_pid=os.getpid())
    assert st.state == "running", st
    try:
        yield ws
    finally:
        stack.down(ws)
        os.environ.update(saved)


def ensure_catalog(ws) -> None:
    """Items m0..m39 with titles and SID version 1 (3 levels, unique SIDs)."""
    if ws.query("SELECT 1 FROM items LIMIT 1"):
        return
    items = [(f"m{k}", f"Movie {k} ({1990 + k})") for k in range(N_ITEMS)]
    with ws.transaction("test") as con:
        con.executemany("INSERT INTO items (item_id, title, domain) VALUES (?, ?, 'movies')", items)
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 8, ?, '{}', '{}')", [N_ITEMS])
        con.executemany("INSERT INTO item_sids VALUES (1, ?, ?, ?)",
                        [[iid, [k % 8, (k // 8) % 8, k % 3], format_sid([k % 8, (k // 8) % 8, k % 3])]
                         for k, (iid, _) in enumerate(items)])


def build_curated(ws, name: str = "curated", n: int = N_SAMPLES) -> DatasetVersion:  # noqa: F821
    """A curated version of `n` samples with per-filter verdicts (items/SIDs from ensure_catalog).
    Sample ids are `<name>.sNNN` (unique per dataset: reviews attach to sample ids across versions).

    Sample i: level R1 for even i, R3 for odd; task alternates; filter verdicts follow fixed rules so
    tests can compute expectations by hand: `format` drops i % 6 == 0, `sid_validity` drops i % 4 == 1,
    `leakage` keeps all, `llm_judge` scores i/(n-1) and drops score < 0.5. keep = no filter dropped."""
    from storage.datasets import write_version

    ensure_catalog(ws)
    rows, verdicts = [], []
    now = datetime.now(UTC)
    for i in range(n):
        hist = [f"m{(i + j) % N_ITEMS}" for j in range(4)]
        target = f"m{(i + 7) % N_ITEMS}"
        k_t = int(target[1:])
        answer_sid = format_sid([k_t % 8, (k_t // 8) % 8, k_t % 3]) if i % 4 != 1 else "<|sid_begin|><s_a_9><|sid_end|>"
        v = {
            "format": i % 6 != 0,
            "sid_validity": i % 4 != 1,
            "leakage": True,
            "llm_judge": (i / (n - 1)) >= 0.5,
        }
        scores = {"format": 1.0 if v["format"] else 0.0, "sid_validity": 1.0 if v["sid_validity"] else 0.0,
                  "leakage": 0.0, "llm_judge": round(i / (n - 1), 4)}
        dropped = [f for f in FILTERS if not v[f]]
        rows.append({
            "sample_id": f"{name}.s{i:03d}", "prompt_id": f"{name}.p{i:03d}",
            "task": "r3_recommend" if i % 3 else "r1_explain",
            "level": "R1" if i % 2 == 0 else "R3", "mode": "none", "think": True, "domain": "movies",
            "user_id": f"u{i}", "history_item_ids": hist, "target_item_ids": [target],
            "target_sids": [format_sid([k_t % 8, (k_t // 8) % 8, k_t % 3])],
            "messages": [{"role": "user", "content": "recommend"}, {"role": "assistant", "content": "..."}],
            "reasoning": f"The user watched {len(hist)} movies; sample {i} reasons about genre.",
            "answer": f"I recommend {answer_sid}", "answer_sids": [answer_sid],
            "teacher": "local:smollm2" if i % 2 else "openai:gpt-x", "template_version": "t@1",
            "run_id": "test", "sid_version": 1, "created_at": now,
            "keep": not dropped, "rejected_by": dropped[0] if dropped else None,
            "reject_reason": f"{dropped[0]} said no" if dropped else None, "scores": json.dumps(scores),
        })
        for f in FILTERS:
            verdicts.append([f"{name}.s{i:03d}", f, v[f], None if v[f] else f"{f} said no", scores[f]])
    table = pa.Table.from_pylist([{c: r.get(c) for c in CURATED_SCHEMA.names} for r in rows], schema=CURATED_SCHEMA)
    funnel = {"filters": [{"name": f, "type": FILTER_TYPES[f]} for f in FILTERS]}
    dv = write_version(ws, name, table, step="curate", schema=CURATED_SCHEMA, config={"chain": "test"},
                       extra_manifest={"funnel": funnel})
    with ws.transaction("test") as con:
        con.executemany("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, 'test')",
                        [[dv.name, dv.version, *v] for v in verdicts])
    assert SAMPLE_SCHEMA.names == CURATED_SCHEMA.names[:len(SAMPLE_SCHEMA.names)]
    return dv


@pytest.fixture
def curated(argilla_ws):
    """A fresh curated dataset (unique name per test) in the stack's workspace → (ws, dv)."""
    import uuid

    return argilla_ws, build_curated(argilla_ws, f"cur{uuid.uuid4().hex[:6]}")


def annotator_post(conn, record_id: str, api_key: str, values: dict, status: str = "submitted"):
    """An annotator answering in the UI, simulated over REST with the annotator's own key (the SDK only
    writes responses through a records upsert, which an annotator may not call)."""
    import httpx

    r = httpx.post(f"{conn.url}/api/v1/records/{record_id}/responses",
                   headers={"X-Argilla-Api-Key": api_key},
                   json={"values": {k: {"value": v} for k, v in values.items()}, "status": status}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def post_response():
    """`post_response(conn, record_id, api_key, values, status)`: answer a record as that user via REST."""
    return annotator_post


@pytest.fixture
def make_curated(argilla_ws):
    """`make_curated(name, n)` → a curated DatasetVersion in the stack's workspace."""
    return lambda name, n=N_SAMPLES: build_curated(argilla_ws, name, n)


@pytest.fixture
def offline_curated(tmp_ws):
    """A curated dataset in a fresh workspace, no Argilla stack (for selection/unit tests) → (ws, dv)."""
    return tmp_ws, build_curated(tmp_ws, "off")
