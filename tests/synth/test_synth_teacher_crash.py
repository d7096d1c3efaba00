"""kill -9 a real teacher job (a subprocess) at random points, resume it, and check that the stored
responses equal the requested set, the log holds no duplicate completion, and the server never received
a request for a key that had already completed."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml
from fakes.fault_server import read_log, subprocess_argv

from synth.teacher.cache import TeacherCache
from synth.teacher.types import ChatRequest, SamplingParams

ROOT = Path(__file__).resolve().parents[2]
N = 160


def _start_server(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    port_file, log = tmp_path / "port.txt", tmp_path / "server-log.jsonl"
    proc = subprocess.Popen(subprocess_argv("--mode", "random", "--rates", json.dumps({"429": 0.05, "500": 0.05}),
                                            "--latency", "0.1", "--port-file", str(port_file), "--log", str(log)),
                            cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "fault server did not start"
        time.sleep(0.05)
    return proc, int(port_file.read_text()), log


def _completed(cache_dir: Path) -> int:
    """Completed lines in the cache log so far (read like a resuming job would)."""
    if not cache_dir.exists():
        return 0
    return sum(seg.read_bytes().count(b'"ok":true') for seg in cache_dir.glob("seg-*.jsonl"))


def test_kill_9_and_resume_repeats_no_completed_request(tmp_path):
    rng = random.Random(int(os.environ.get("RECOT_CRASH_SEED", "7")))
    server, port, server_log = _start_server(tmp_path)
    try:
        ws = tmp_path / "ws"
        teacher = tmp_path / "teacher.yaml"
        teacher.write_text(yaml.safe_dump({"backend": "openai", "model": "fake", "base_url":
                                           f"http://127.0.0.1:{port}/v1", "max_concurrency": 8,
                                           "backoff_base_s": 0.02, "backoff_max_s": 0.2, "timeout_s": 5}))
        reqs = [{"messages": [{"role": "user", "content": f"crash-test prompt {i}"}],
                 "params": {"temperature": 0.7, "n": 1 + i % 2}, "meta": {"i": i}} for i in range(N)]
        req_file = tmp_path / "requests.jsonl"
        req_file.write_text("".join(json.dumps(r) + "\n" for r in reqs))
        cmd = [sys.executable, "-m", "synth.teacher", "--workspace", str(ws), "--teacher", str(teacher),
               "--requests", str(req_file)]
        cache_dir = ws / "cache" / "teacher"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        kills = 0
        for _ in range(3):
            done_before = _completed(cache_dir)
            target = done_before + rng.randint(5, max(6, (N - done_before) // 3))
            job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while _completed(cache_dir) < target and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.15))        # land anywhere: mid-request, mid-write, mid-backoff
            if job.poll() is None:
                os.kill(job.pid, signal.SIGKILL)
                kills += 1
            job.wait()
        assert kills >= 2, "the job finished before it could be killed; slow the server down"
        assert _completed(cache_dir) < N
        final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
        stats = json.loads(final.stdout.strip().splitlines()[-1])
        assert stats["completed"] + stats["cached"] == N and stats["failed"] == 0
        n_server_before_rerun = len(read_log(server_log))
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert json.loads(again.stdout.strip().splitlines()[-1])["cached"] == N
        assert len(read_log(server_log)) == n_server_before_rerun   # a finished job makes zero requests
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)

    requests = [ChatRequest.from_messages(r["messages"], SamplingParams(**r["params"])) for r in reqs]
    wanted = {r.key("openai", "fake") for r in requests}
    cache = TeacherCache(cache_dir)
    assert set(cache.keys()) == wanted                       # stored == requested
    ok_lines = Counter(rec["key"] for rec in cache.records())
    assert max(ok_lines.values()) == 1                       # no duplicate completion in the log
    n_of = {r.key("openai", "fake"): r.params.n for r in requests}
    for k in wanted:                                         # each stored answer is complete (all n choices)
        assert len(cache.get(k)["choices"]) == n_of[k]
    completed_at = {rec["messages_sha"]: rec["ts"] for rec in cache.records()}
    for entry in read_log(server_log):                      # nothing asked again once completed
        assert entry["t"] < completed_at[entry["messages_sha"]], entry
