"""One teacher job over several OpenAI-compatible endpoints: the load is spread, a failing endpoint is rested
and its requests answered elsewhere, a dead one (connection refused) too, and the config takes a URL list."""
from __future__ import annotations

import socket

import pytest
from fakes.fault_server import Fault, FaultServer

from storage.errors import ConfigError
from synth.teacher.config import TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams


def _reqs(n: int, tag: str = "q") -> list[ChatRequest]:
    return [ChatRequest.from_messages([{"role": "user", "content": f"{tag}{i}"}], SamplingParams())
            for i in range(n)]


def _cfg(urls: list[str], **kw) -> TeacherConfig:
    base = dict(backend="openai", model="fake", base_url=urls, backoff_base_s=0.01, timeout_s=3,
                max_concurrency=12, endpoint_cooldown_s=30)
    return TeacherConfig(**{**base, **kw})


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens there: connection refused
    return f"http://127.0.0.1:{port}/v1"


def test_config_takes_a_list_of_base_urls():
    cfg = TeacherConfig.from_dict({"backend": "openai", "model": "m", "base_url": ["http://a/v1", "http://b/v1"]})
    assert cfg.base_url == "http://a/v1" and cfg.endpoints() == ["http://a/v1", "http://b/v1"]
    assert TeacherConfig.model_validate(cfg.model_dump()).endpoints() == cfg.endpoints()   # round trip
    assert TeacherConfig(backend="openai", model="m", base_url="http://a/v1").endpoints() == ["http://a/v1"]
    with pytest.raises((ConfigError, ValueError)):
        TeacherConfig.from_dict({"backend": "openai", "model": "m", "base_url": []})


def test_load_is_spread_over_every_endpoint(tmp_ws):
    servers = [FaultServer("echo", latency_s=0.02).start() for _ in range(3)]
    try:
        engine = make_engine(_cfg([s.base_url for s in servers]), tmp_ws)
        out = engine.run(_reqs(90), progress=False)
    finally:
        for s in servers:
            s.stop()
    assert all(r.ok for r in out) and [r.choices[0] for r in out] == [f"echo: q{i}" for i in range(90)]
    counts = [len(s.log) for s in servers]
    assert sum(counts) == 90 and min(counts) >= 20, counts          # even-ish: 30 each when all are alike


def test_a_failing_endpoint_is_rested_and_its_requests_answered_elsewhere(tmp_ws):
    bad = FaultServer("scripted", script=lambda body, attempt: Fault.parse("500")).start()
    good = [FaultServer("echo", latency_s=0.01).start() for _ in range(2)]
    try:
        engine = make_engine(_cfg([bad.base_url] + [s.base_url for s in good], max_retries=3), tmp_ws)
        out = engine.run(_reqs(60), progress=False)
        stats = engine.backend.endpoint_stats()
    finally:
        for s in [bad, *good]:
            s.stop()
    assert all(r.ok for r in out) and len(out) == 60
    assert sum(len(s.log) for s in good) == 60
    # the bad one got only the requests in flight before its first failure came back, then rested
    assert 1 <= len(bad.log) <= 12 and stats[0]["resting"] and stats[0]["failed"] == len(bad.log)
    assert engine.stats["sent"] == 60 + len(bad.log)           # every attempt is accounted


def test_a_dead_endpoint_does_not_fail_the_job(tmp_ws):
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg([_dead_url(), srv.base_url], max_retries=2), tmp_ws)
        out = engine.run(_reqs(25, "d"), progress=False)
    assert all(r.ok for r in out) and len(srv.log) == 25
    assert engine.backend.endpoint_stats()[0]["failed"] >= 1
