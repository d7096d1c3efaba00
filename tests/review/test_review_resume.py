"""Interrupted and failing pushes/pulls on the real stack: `kill -9` in the middle of a push then push
again → every record exactly once; server down / wrong key / dataset deleted on the server → a one-line
error, local data untouched, and the next push/pull resumes."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.argilla

REPO = Path(__file__).resolve().parents[2]


def _recot(ws, *args, env_extra=None, **kw):
    env = {**os.environ, "RECOT_WORKSPACE": str(ws.root), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, **kw)


KILL_SEED = 21  # the kill point is random across batches but the same on every run


def _server_records(conn, name):
    from curation.review.client import argilla_client, find_dataset

    with argilla_client(conn) as c:
        ds = find_dataset(c, "recot", name)
        return [] if ds is None else [r.id for r in ds.records(batch_size=1000, with_suggestions=False,
                                                                  with_responses=False)]


def _settled(conn, name, deadline_s: float = 60.0) -> list[str]:
    """The dataset's record ids once two reads a second apart agree (a request in flight when the client
    died still completes on the server)."""
    deadline = time.monotonic() + deadline_s
    prev, ids = None, _server_records(conn, name)
    while prev != len(ids):
        assert time.monotonic() < deadline, f"record count on the server still changing after {deadline_s:.0f}s"
        prev = len(ids)
        time.sleep(1.0)
        ids = _server_records(conn, name)
    return ids


def test_kill_9_during_push_then_push_again_sends_each_record_once(make_curated, argilla_ws):
    from curation.review.push import select_samples
    from curation.review.stack import connect

    ws = argilla_ws
    dv = make_curated("killme", 60)
    conn = connect(ws)
    name = f"{dv.name}-v{dv.version}"
    kill_at = random.Random(KILL_SEED).randint(2, 20)
    env = {**os.environ, "RECOT_WORKSPACE": str(ws.root)}
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "review", "push", "-d", dv.ref, "-n", "60",
                             "--strategy", "random", "--batch-size", "1"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_server_records(conn, name)) < kill_at:
            assert proc.poll() is None, f"push ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"push did not reach {kill_at} records on the server within 120s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    partial = _settled(conn, name)
    assert kill_at <= len(partial) < 60, len(partial)

    out = _recot(ws, "review", "push", "-d", dv.ref, "-n", "60", "--strategy", "random", "--batch-size", "7",
                 "--json")
    assert out.returncode == 0, out.stderr
    after = _server_records(conn, name)
    assert len(after) == len(set(after)) == 60                       # every record exactly once
    assert set(after) == set(select_samples(ws, dv, 60, "random"))
    assert f'"already_there": {len(partial)}' in out.stdout and f'"sent": {60 - len(partial)}' in out.stdout


def test_server_down_and_wrong_key_fail_cleanly_and_push_resumes(make_curated, argilla_ws):
    from curation.review.push import push
    from curation.review.stack import Connection, StackError, connect

    ws = argilla_ws
    dv = make_curated("flaky", 12)
    conn = connect(ws)
    before_runs = ws.query("SELECT count(*) FROM runs")[0][0]
    before_versions = ws.query("SELECT count(*) FROM dataset_versions")[0][0]

    # a port where nothing listens: the server is "down"
    with pytest.raises(StackError, match="not reachable"):
        push(ws, dv.ref, size=5, conn=Connection(url="http://127.0.0.1:9", api_key=conn.api_key))
    out = _recot(ws, "review", "push", "-d", dv.ref, "-n", "5",
                 env_extra={"ARGILLA_API_URL": "http://127.0.0.1:9", "ARGILLA_API_KEY": "x" * 20})
    assert out.returncode == 1 and "not reachable" in out.stderr and "Traceback" not in out.stderr
    out = _recot(ws, "review", "pull", env_extra={"ARGILLA_API_URL": conn.url, "ARGILLA_API_KEY": "wrong-key-123"})
    assert out.returncode == 1 and "rejected the API key" in out.stderr and "Traceback" not in out.stderr
    assert ws.query("SELECT count(*) FROM runs")[0][0] == before_runs              # nothing recorded
    assert ws.query("SELECT count(*) FROM dataset_versions")[0][0] == before_versions
    assert _server_records(conn, f"{dv.name}-v{dv.version}") == []

    res = push(ws, dv.ref, size=5)  # the stack was fine all along: the next push just works
    assert res.sent == 5


def test_dataset_deleted_on_server(make_curated, argilla_ws, post_response):
    from curation.review.client import argilla_client, find_dataset, server_record_ids
    from curation.review.pull import pull
    from curation.review.push import push
    from curation.review.stack import StackError, connect
    from curation.review.users import add_annotator

    ws = argilla_ws
    dv = make_curated("deleted", 8)
    push(ws, dv.ref, size=8)
    conn = connect(ws)
    carol = add_annotator(ws, "carol")
    rid = server_record_ids(conn, "recot", f"{dv.name}-v{dv.version}")
    post_response(conn, rid[f"{dv.name}.s001"], carol.api_key, {"rating": 5, "correct": "yes"})
    assert pull(ws, dv.ref).new == 1
    with argilla_client(conn) as c:  # someone deletes the dataset in Argilla
        find_dataset(c, "recot", f"{dv.name}-v{dv.version}").delete()

    out = _recot(ws, "review", "pull", "-d", dv.ref)
    assert out.returncode == 1 and "no longer exists" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(StackError, match="no longer exists"):
        pull(ws, dv.ref)
    assert ws.query("SELECT annotator, rating FROM reviews WHERE dataset = ?", [dv.ref]) == [("carol", 5)]

    res = push(ws, dv.ref, size=8)  # recreated, everything sent again
    assert (res.already_there, res.sent) == (0, 8)
    assert pull(ws, dv.ref).unchanged == 0  # nothing answered on the new dataset yet; old rows kept
    assert ws.query("SELECT count(*) FROM reviews WHERE dataset = ?", [dv.ref]) == [(1,)]


def test_push_after_a_draft_left_by_a_killed_create_recreates_the_dataset(make_curated, argilla_ws):
    """A push killed while the SDK created the dataset leaves a draft (created, not yet published, no
    records); the next push replaces it with a published dataset and sends every record."""
    import httpx

    from curation.review.client import argilla_client, ensure_workspace, find_dataset, is_published
    from curation.review.push import push
    from curation.review.stack import connect

    ws = argilla_ws
    dv = make_curated("draft", 5)
    conn = connect(ws)
    name = f"{dv.name}-v{dv.version}"
    with argilla_client(conn) as c:
        wid = str(ensure_workspace(c, "recot").id)
    # the first request of the SDK's Dataset.create(), and nothing after it
    r = httpx.post(f"{conn.url}/api/v1/datasets", headers=conn.headers(), json={"name": name, "workspace_id": wid})
    assert r.status_code == 201, r.text
    with argilla_client(conn) as c:
        assert not is_published(find_dataset(c, "recot", name))

    res = push(ws, dv.ref, size=5)
    assert (res.already_there, res.sent) == (0, 5)
    with argilla_client(conn) as c:
        ds = find_dataset(c, "recot", name)
        assert is_published(ds) and str(ds.id) != r.json()["id"]
    assert sorted(_server_records(conn, name)) == [f"{dv.name}.s{i:03d}" for i in range(5)]
