"""The local stack's lifecycle on the session's real stack: status, `up` is a no-op when up, credentials
file private, the owner key printed only on request, and `down` + `up` keeps the data (SQLite) and
reindexes it into the fresh in-memory search engine."""
from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.argilla


def test_status_up_noop_and_key_hidden(argilla_ws, monkeypatch):
    from curation.review import stack
    from ui.cli import app

    ws = argilla_ws
    st = stack.status(ws)
    assert st.state == "running" and all(st.alive.values()) and set(st.pids) == {"redis", "search", "server", "worker"}
    assert st.url.startswith("http://127.0.0.1:")
    again = stack.up(ws)
    assert again.pids == st.pids and again.url == st.url  # already up → nothing started
    mode = stat.S_IMODE(os.stat(stack.credentials_path(ws)).st_mode)
    assert mode == 0o600
    key = stack.load_credentials(ws)["api_key"]

    monkeypatch.setenv("RECOT_WORKSPACE", str(ws.root))
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    runner = CliRunner()
    out = runner.invoke(app, ["review", "status"])
    assert out.exit_code == 0, out.output
    assert "running" in out.output and st.url in out.output and "owner" in out.output
    assert key not in out.output
    out = runner.invoke(app, ["review", "status", "--show-key"])
    assert key in out.output
    out = runner.invoke(app, ["review", "up"])
    assert out.exit_code == 0 and "running" in out.output
    assert stack.status(ws).pids == st.pids


def test_down_then_up_keeps_pushed_records(argilla_ws, make_curated):
    from curation.review import stack
    from curation.review.client import server_record_ids
    from curation.review.push import push

    ws = argilla_ws
    dv = make_curated("restart", 6)
    push(ws, dv.ref, size=6)
    old = stack.status(ws)
    assert stack.down(ws) is True
    assert stack.status(ws).state == "stopped"
    assert not any(stack._pid_alive(p) for p in old.pids.values())  # every process of the stack is gone
    assert stack.down(ws) is False
    with pytest.raises(stack.StackError, match="recot review up"):
        stack.connect(ws)

    st = stack.up(ws, watch_pid=os.getpid())
    assert st.state == "running"
    ids = server_record_ids(stack.connect(ws), "recot", f"{dv.name}-v{dv.version}")
    assert sorted(ids) == [f"{dv.name}.s{i:03d}" for i in range(6)]  # reindexed from SQLite
    assert push(ws, dv.ref, size=6).already_there == 6
