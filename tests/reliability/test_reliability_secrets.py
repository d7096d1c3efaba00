"""API keys are never stored: a synth teacher task runs with OPENAI_API_KEY set to a unique marker (and the
fault server checks it arrives as the bearer token), then every byte under the workspace (catalog.duckdb,
manifests, Parquet, teacher cache, rejects, tmp) and the command output are searched for the marker. A
teacher YAML that carries `api_key:` directly is refused, and the refusal does not echo the key either."""
from __future__ import annotations

import logging
from pathlib import Path

import yaml
from reliability_util import build_catalog, run_cli

from storage.workspace import Workspace

MARKER = "sk-test-SECRET-9f3c1e7a-reliability-marker"


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle in p.read_bytes():
            hits.append(str(p.relative_to(root)))
    return hits


def test_api_key_never_reaches_the_workspace_logs_or_output(tmp_path, caplog):
    from fakes.fault_server import FaultServer

    ws_path = tmp_path / "ws"
    build_catalog(Workspace.open(ws_path), n_items=30, n_users=6)
    auth_seen: list[str] = []

    def answer(body, attempt):
        return "<think>x</think> Answer: none"

    with FaultServer("scripted", script=answer) as srv:
        # capture the Authorization header the client really sends (the key must be used, just not stored)
        orig = srv._handle

        async def spy(scope, receive, send):
            for k, v in scope.get("headers", []):
                if k == b"authorization":
                    auth_seen.append(v.decode())
            return await orig(scope, receive, send)

        srv._handle = spy
        good = tmp_path / "teacher.yaml"
        good.write_text(yaml.safe_dump({"backend": "openai", "model": "secret-test", "base_url": srv.base_url,
                                        "api_key_env": "OPENAI_API_KEY", "max_retries": 0, "timeout_s": 10}))
        bad = tmp_path / "teacher-with-key.yaml"
        bad.write_text(yaml.safe_dump({"backend": "openai", "model": "secret-test", "base_url": srv.base_url,
                                       "api_key": MARKER}))
        env = {"OPENAI_API_KEY": MARKER, "RECOT_LOG_LEVEL": "DEBUG"}
        with caplog.at_level(logging.DEBUG):
            ok = run_cli(["synth", "run", "r3_recommend", "-w", ws_path, "--teacher", good, "--no-progress",
                          "-O", "min_history=2"], env=env)
            refused = run_cli(["synth", "run", "r3_recommend", "-w", ws_path, "--teacher", bad, "--no-progress"],
                              env=env)
            info = run_cli(["runs", "list", "-w", ws_path], env=env)
            show = run_cli(["datasets", "show", "cot", "-w", ws_path], env=env)
    assert ok.code == 0, ok.text
    assert auth_seen and all(a == f"Bearer {MARKER}" for a in auth_seen)   # the key was really used
    assert refused.code == 2 and "field 'api_key'" in refused.err and "api_key_env" in refused.err
    ws = Workspace.open(ws_path, create=False)
    assert ws.query("SELECT count(*) FROM dataset_versions")[0][0] == 1
    assert any((ws_path / "cache").rglob("seg-*.jsonl"))                 # the cache was written (and searched)
    for r in (ok, refused, info, show):
        assert MARKER not in r.text
    assert MARKER not in caplog.text
    assert _files_containing(ws_path, MARKER.encode()) == []
    assert _files_containing(ws_path, b"SECRET-9f3c1e7a") == []         # not even a fragment
