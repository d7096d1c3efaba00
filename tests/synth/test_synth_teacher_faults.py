"""Every fault kind of a real OpenAI-compatible HTTP server ends as retry-then-success or as a per-request
error row, and the engine's accounting matches what the server saw."""
from __future__ import annotations

import time

import pytest
from fakes.fault_server import FaultServer
from testutil import free_port

from synth.teacher.config import TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams


def _req(text: str, **params) -> ChatRequest:
    schema = params.pop("json_schema", None)
    return ChatRequest.from_messages([{"role": "user", "content": text}], SamplingParams(**params),
                                     json_schema=schema)


def _cfg(srv: FaultServer, **kw) -> TeacherConfig:
    base = dict(backend="openai", model="fake", base_url=srv.base_url, timeout_s=1.0, backoff_base_s=0.01,
                backoff_max_s=0.2, max_retries=3, unusable_retries=2)
    base.update(kw)
    return TeacherConfig(**base)


SCRIPT = {
    "q-429": ["429", "ok"],
    "q-5xx": ["500", "503", "ok"],
    "q-delay": ["delay", "ok"],
    "q-malformed": ["malformed", "ok"],
    "q-truncated-once": ["truncated", "ok"],
    "q-empty-once": ["empty", "ok"],
    "q-json": ["not json at all", '{"answer": 1}'],
    "q-always-429": ["429"],
    "q-always-500": ["500"],
    "q-always-truncated": ["truncated"],
    "q-always-empty": ["empty"],
    "q-always-badjson": ["{broken"],
    "q-400": ["400"],
}


def test_every_fault_kind_retries_then_succeeds_or_records_an_error(tmp_ws):
    with FaultServer("scripted", script=SCRIPT, delay_s=2.5) as srv:
        engine = make_engine(_cfg(srv), tmp_ws)
        reqs = [_req(m, json_schema={"type": "object"} if "json" in m else None) for m in SCRIPT]
        out = {r.request.messages[0][1]: r for r in engine.run(reqs, progress=False)}
        log = list(srv.log)
    ok_after = {"q-429": 2, "q-5xx": 3, "q-delay": 2, "q-malformed": 2, "q-truncated-once": 2,
                "q-empty-once": 2, "q-json": 2}
    for marker, attempts in ok_after.items():
        r = out[marker]
        assert r.ok, (marker, r.error)
        assert r.attempts == attempts, marker
        assert r.choices and r.choices[0]
    assert out["q-json"].choices == ['{"answer": 1}']
    expect_err = {"q-always-429": ("rate_limit", 4), "q-always-500": ("server_error", 4),
                  "q-always-truncated": ("truncated", 3), "q-always-empty": ("empty", 3),
                  "q-always-badjson": ("invalid_json", 3), "q-400": ("other", 1)}
    for marker, (kind, attempts) in expect_err.items():
        r = out[marker]
        assert not r.ok and r.error_kind == kind and r.error, marker
        assert r.attempts == attempts, marker
        assert r.choices == []
    # accounting == what the server saw
    st = engine.stats
    assert st["sent"] == len(log)
    assert st["completed"] == len(ok_after) and st["failed"] == len(expect_err)
    assert st["retries"] == len(log) - len(SCRIPT)
    assert st["failures"] == {"rate_limit": 1, "server_error": 1, "truncated": 1, "empty": 1,
                              "invalid_json": 1, "other": 1}
    server_counts = {}
    for e in log:
        server_counts[e["outcome"]] = server_counts.get(e["outcome"], 0) + 1
    ae = st["attempt_errors"]
    assert ae["rate_limit"] == server_counts["429"]
    assert ae["server_error"] == server_counts["500"] + server_counts["503"]
    assert ae["timeout"] == server_counts["delay"]
    assert ae["malformed"] == server_counts["malformed"]
    assert ae["truncated"] == server_counts["truncated"]
    assert ae["empty"] == server_counts["empty"]
    assert ae["other"] == server_counts["400"]
    # server counts prompt words; every request with an answer reported usage
    assert st["prompt_tokens"] > 0 and st["completion_tokens"] > 0
    # the run row carries the same accounting
    from storage.runs import get_run
    row = get_run(tmp_ws, engine.run_id)
    assert row["status"] == "done" and row["stats"]["sent"] == len(log)
    assert row["stats"]["prompt_tokens"] == st["prompt_tokens"]


def test_fault_server_speaks_the_openai_protocol():
    import openai
    with FaultServer("echo") as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="EMPTY", max_retries=0)
        assert [m.id for m in client.models.list()] == ["fault-model"]
        resp = client.chat.completions.create(model="m", n=3, messages=[{"role": "user", "content": "a b c"}])
        assert [c.message.content for c in resp.choices] == ["echo: a b c #0", "echo: a b c #1", "echo: a b c #2"]
        assert resp.usage.prompt_tokens == 3 and resp.usage.completion_tokens == 15
        assert srv.log[0]["n"] == 3 and srv.log[0]["outcome"] == "ok"


def test_seeded_or_greedy_requests_do_not_retry_unusable_answers(tmp_ws):
    with FaultServer("scripted", script={"t": ["truncated", "ok"]}) as srv:
        engine = make_engine(_cfg(srv), tmp_ws)
        seeded, greedy = engine.run([_req("t1", seed=7), _req("t2", temperature=0.0)], progress=False)
        assert (seeded.error_kind, seeded.attempts) == ("truncated", 1)
        assert (greedy.error_kind, greedy.attempts) == ("truncated", 1)
        assert len(srv.log) == 2


def test_retry_after_is_honoured(tmp_ws):
    from fakes.fault_server import Fault
    with FaultServer("scripted", script={"slow": [Fault("429", retry_after=0.6), "ok"]}) as srv:
        engine = make_engine(_cfg(srv, backoff_max_s=5), tmp_ws)
        [r] = engine.run([_req("slow")], progress=False)
        first, second = srv.log
    assert r.ok and r.attempts == 2
    assert second["t"] - first["t"] >= 0.6


def test_random_faults_never_stop_a_run_and_counts_match(tmp_ws):
    rates = {"429": 0.15, "500": 0.1, "malformed": 0.05, "empty": 0.05, "truncated": 0.05}
    with FaultServer("random", rates=rates, seed=3) as srv:
        engine = make_engine(_cfg(srv, max_concurrency=8, max_retries=4), tmp_ws)
        out = engine.run([_req(f"r{i}") for i in range(120)], progress=False)
        log = list(srv.log)
    assert len(out) == 120 and [r.index for r in out] == list(range(120))
    st = engine.stats
    assert st["sent"] == len(log) > 120
    assert st["completed"] + st["failed"] == 120
    assert st["completed"] == sum(r.ok for r in out) >= 110
    assert st["attempt_errors"].get("rate_limit", 0) == sum(e["outcome"] == "429" for e in log)
    # every fresh request ended with exactly one logged record (ok or error)
    recs = list(engine.cache.records(include_errors=True))
    assert len(recs) == 120 and len({r["key"] for r in recs}) == 120


def test_concurrency_limit_is_respected(tmp_ws):
    with FaultServer("echo", latency_s=0.1) as srv:
        engine = make_engine(_cfg(srv, max_concurrency=3), tmp_ws)
        engine.run([_req(f"c{i}") for i in range(12)], progress=False)
        times = sorted(e["t"] for e in srv.log)
    # with 3 slots and 0.1 s per answer, arrivals come in waves of <= 3 per ~0.1 s
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 0.08


def test_rpm_limit_spaces_requests(tmp_ws):
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg(srv, rpm=60, max_concurrency=16), tmp_ws)
        t0 = time.monotonic()
        engine.run([_req(f"m{i}") for i in range(62)], progress=False)
        elapsed = time.monotonic() - t0
    # a 60/min bucket lets 60 through at once, then one per second
    assert elapsed >= 1.5


def test_connection_errors_become_error_rows(tmp_ws):
    port = free_port()  # nothing listens there now
    cfg = TeacherConfig(backend="openai", model="fake", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2,
                        backoff_base_s=0.01, timeout_s=2)
    engine = make_engine(cfg, tmp_ws)
    [r] = engine.run([_req("nobody home")], progress=False)
    assert not r.ok and r.error_kind == "connection" and r.attempts == 3
    assert engine.stats["failures"] == {"connection": 1}


def test_missing_api_key_for_a_hosted_api_is_a_clear_error(tmp_ws, monkeypatch):
    from synth.teacher.errors import BackendUnavailable
    monkeypatch.delenv("RECOT_TEST_NO_KEY", raising=False)
    engine = make_engine(TeacherConfig(backend="openai", model="gpt-x", api_key_env="RECOT_TEST_NO_KEY"), tmp_ws)
    with pytest.raises(BackendUnavailable, match="RECOT_TEST_NO_KEY"):
        engine.run([_req("hi")], progress=False)


def test_tpm_limit_spaces_requests(tmp_ws):
    # each request is estimated at ~1,000 tokens (max_tokens * n + prompt chars / 4); a 60k/min bucket
    # lets ~60 through at once, then about one per second
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg(srv, tpm=60_000, max_concurrency=16), tmp_ws)
        t0 = time.monotonic()
        out = engine.run([_req(f"tok{i}", max_tokens=1000) for i in range(62)], progress=False)
        elapsed = time.monotonic() - t0
    assert all(r.ok for r in out)
    assert elapsed >= 1.5
