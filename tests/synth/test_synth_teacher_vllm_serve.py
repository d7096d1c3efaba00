"""vLLM for real on CPU, as a server: `vllm serve` (from .venv-vllm, made by scripts/setup_vllm.sh) runs the
embedded SmolLM2-135M on 127.0.0.1 at a free port, and recot reaches it through its ordinary `openai` backend,
exactly as it would reach a remote vLLM. Started once for the module, stopped at the end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest
from test_synth_tasks_teacher import build_tiny
from test_synth_teacher_vllm import last_synth_run_stats
from testutil import assert_loopback_only, free_port, listening

from storage.datasets import read_dv
from storage.runs import get_run
from synth.tasks.run import run_task
from synth.teacher.backends.vllm_backend import serve_command
from synth.teacher.config import LOCAL_MODEL_NAME, TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams

pytestmark = pytest.mark.slow


vllm_server_pid = [0]   # the running server's process group leader, for the socket check


@pytest.fixture(scope="module")
def vllm_server(local_model_path, tmp_path_factory):
    """base_url of a live `vllm serve` for the embedded model (the name clients use: smollm2-135m-instruct)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    cmd = serve_command(str(local_model_path), port, served_model_name=LOCAL_MODEL_NAME,
                        extra_args=("--dtype", "bfloat16", "--max-model-len", "2048", "--enforce-eager"))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 480
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after 480 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        vllm_server_pid[0] = proc.pid
        yield f"{base}/v1"
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):  # the server and its engine process
            try:
                os.killpg(proc.pid, sig)      # its own session: only what this fixture started
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # an engine process left behind by a clean server exit
        except ProcessLookupError:
            pass


def test_vllm_serve_listens_on_loopback_only(vllm_server):
    """Issue 18 item 2 (see tests/reliability/test_reliability_sockets.py): the server recot's serve_command
    starts — API server and engine process — listens on loopback only."""
    port = int(vllm_server.rsplit(":", 1)[1].split("/")[0])
    assert_loopback_only(listening([vllm_server_pid[0]]), expect_port=port)


def _teacher(base_url: str) -> TeacherConfig:
    return TeacherConfig(backend="openai", model=LOCAL_MODEL_NAME, base_url=base_url, name="vllm-serve",
                         api_key_env="RECOT_TEST_NO_KEY", timeout_s=120, max_concurrency=8)


@pytest.mark.timeout(900)
def test_a_synth_task_through_vllm_serve_row_by_row_then_from_the_cache(vllm_server, tmp_ws):
    models = httpx.get(f"{vllm_server}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [LOCAL_MODEL_NAME]
    build_tiny(tmp_ws)
    teacher = _teacher(vllm_server)
    opts = {"limit": 4, "temperature": 0.0, "max_tokens": 64}
    dv = run_task(tmp_ws, "align_item_narrative", teacher=teacher, options=opts)
    rows = read_dv(dv).to_pylist()
    assert len(rows) == 4
    for r in rows:
        assert r["teacher"] == f"openai:{LOCAL_MODEL_NAME}"
        assert r["request_key"] and len(r["request_key"]) == 64
        assert r["error"] is None, r["error"]
        assert r["answer"] and r["answer"].strip()
    stats = get_run(tmp_ws, rows[0]["run_id"])["stats"]["teachers"][0]
    assert stats["sent"] >= 4 and stats["cached"] == 0 and stats["prompt_tokens"] > 0

    rows2 = read_dv(run_task(tmp_ws, "align_item_narrative", teacher=teacher, options=opts)).to_pylist()
    stats2 = last_synth_run_stats(tmp_ws)["teachers"][0]
    assert stats2["cached"] == 4 and stats2["sent"] == 0           # every answer from the durable cache
    assert sorted(r["answer"] for r in rows2) == sorted(r["answer"] for r in rows)


@pytest.mark.timeout(300)
def test_json_schema_requests_come_back_as_json_from_vllm_serve(vllm_server, tmp_path):
    """The openai backend sends response_format json_schema; vLLM's server decodes under it."""
    schema = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 40}},
              "required": ["title"], "additionalProperties": False}
    req = ChatRequest.from_messages([{"role": "user", "content": "Name a movie as JSON."}],
                                    SamplingParams(temperature=0.0, max_tokens=64), json_schema=schema)
    [r] = make_engine(_teacher(vllm_server), cache_dir=tmp_path / "c").run([req], progress=False)
    assert r.ok, (r.error_kind, r.error)
    obj = json.loads(r.choices[0])
    assert set(obj) == {"title"} and isinstance(obj["title"], str)
