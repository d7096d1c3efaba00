"""Every service recot or its test suite starts listens on loopback only (issue 18, item 2), and the Argilla
server's data is owner-only (item 3).

Each test starts one service the way recot (or the suite) does, lists the listening TCP sockets of the
service's whole process tree with psutil, and fails on any address that is not loopback — a wildcard (`0.0.0.0`,
`::`) included. Services: the viewer (`recot ui`, Streamlit), a local Ray instance (`--executor ray`), the
Argilla stack (redis, API server, search, job worker) and the suite's fake OpenAI server
(tests/fakes/fault_server.py). `vllm serve` is checked on the suite's own server, in
tests/synth/test_synth_teacher_vllm_serve.py (one server start instead of two)."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_util import RECOT, ROOT
from testutil import assert_loopback_only, listening


def _wait_listening(pid: int, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in {p for _, _, p in listening([pid])}:
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before listening on {port}")
        time.sleep(0.25)
    pytest.fail(f"nothing listened on port {port} after {timeout:.0f}s")


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_viewer_listens_on_loopback_only(tmp_path):
    from testutil import free_port

    from storage.workspace import Workspace

    Workspace.open(tmp_path / "ws")
    port = free_port()
    proc = subprocess.Popen([RECOT, "ui", "-w", str(tmp_path / "ws"), "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_listening(proc.pid, port, 90, proc)
        assert_loopback_only(listening([proc.pid]), expect_port=port)
    finally:
        _stop_group(proc)


RAY_PROBE = """
import json, sys
import psutil, pyarrow as pa
from ray import cloudpickle
from storage.executor import map_batches

def ident(t):
    return t

cloudpickle.register_pickle_by_value(sys.modules[__name__])
assert map_batches(pa.table({"a": list(range(50))}), ident, executor="ray", batch_size=10).num_rows == 50
me = psutil.Process()
tree = {q.pid: q.name() for q in [me, *me.children(recursive=True)]}
print(json.dumps(sorted([tree[c.pid], c.laddr.ip, c.laddr.port] for c in psutil.net_connections(kind="tcp")
                        if c.status == psutil.CONN_LISTEN and c.pid in tree)))
"""


def test_local_ray_instance_listens_on_loopback_only():
    """Before: gcs_server, raylet and the workers on `::` (all interfaces), the runtime-env agent on the
    machine's external address. A subprocess: Ray starts fresh, exactly as `--executor ray` starts it."""
    pytest.importorskip("ray")
    r = subprocess.run([sys.executable, "-c", RAY_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "RECOT_RAY_CPUS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    socks = [tuple(s) for s in json.loads(r.stdout.strip().splitlines()[-1])]
    assert {"gcs_server", "raylet"} <= {n for n, _, _ in socks}, socks
    assert_loopback_only(socks)


def test_fake_openai_server_listens_on_loopback_only():
    from fakes.fault_server import FaultServer

    with FaultServer("echo") as srv:
        port = int(srv.base_url.rsplit(":", 1)[1].split("/")[0])
        socks = [s for s in listening([os.getpid()]) if s[2] == port]
        assert_loopback_only(socks, expect_port=port)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.argilla
def test_argilla_stack_listens_on_loopback_only_and_keeps_its_data_owner_only(tmp_path):
    """Before (item 3): argilla/home/argilla.db — which stores the owner's API key in plain text — was 0644 in a
    0755 folder. Also starts the stack over a folder an older recot left world-readable."""
    from curation.review import stack
    from storage.workspace import Workspace

    for k in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        if k in os.environ:
            pytest.skip(f"{k} is set: the stack would not be started")
    try:
        stack.server_venv()
        stack._server_python()
    except stack.StackError as e:
        pytest.skip(str(e))
    ws = Workspace.open(tmp_path / "ws")
    old = stack.stack_dir(ws) / "home"
    old.mkdir(parents=True, mode=0o755)
    os.chmod(stack.stack_dir(ws), 0o755)
    (old / "leftover.log").write_text("x")
    os.chmod(old / "leftover.log", 0o644)
    st = stack.up(ws, watch_pid=os.getpid())
    try:
        assert st.state == "running", st
        socks = listening(list(st.pids.values()))
        assert_loopback_only(socks, expect_port=st.ports["server"])
        assert {st.ports["redis"], st.ports["search"]} <= {p for _, _, p in socks}, socks
        d = stack.stack_dir(ws)
        db = d / "home" / "argilla.db"
        assert db.exists()
        loose = [f"{p.relative_to(d)} {oct(_mode(p))}" for p in [d, *d.rglob("*")]
                 if not p.is_symlink() and _mode(p) & 0o077]
        assert not loose, loose
        assert _mode(d) == 0o700 and _mode(db) == 0o600
    finally:
        stack.down(ws)
