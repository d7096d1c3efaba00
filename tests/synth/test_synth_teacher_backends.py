"""The same request/response contract on every backend, through the common interface: openai (against the
real HTTP fault server in echo mode), local (the embedded SmolLM2 on CPU) and vllm (the embedded SmolLM2 under
vLLM, on CPU here)."""
from __future__ import annotations

import json

import pytest
from fakes.fault_server import FaultServer

from synth.teacher.config import TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams


@pytest.fixture(params=["openai", "local", "vllm"])
def teacher(request, tmp_path):
    """(config, cache_dir) for each backend; the openai one talks to a live fault server."""
    kind = request.param
    if kind == "openai":
        with FaultServer("echo") as srv:
            yield TeacherConfig(backend="openai", model="fake", base_url=srv.base_url, timeout_s=5)
        return
    if kind == "vllm":
        # vLLM for real, on CPU too: a worker process in .venv-vllm (scripts/setup_vllm.sh), shared with
        # test_synth_teacher_vllm.py (same config, one model load)
        from test_synth_teacher_vllm import VLLM_TEACHER
        yield VLLM_TEACHER
        return
    yield TeacherConfig(backend="local", local_batch_size=4, local_threads=1)


def _reqs():
    msgs = [{"role": "user", "content": "Name one famous science fiction movie. Answer with the title only."}]
    return [ChatRequest.from_messages(msgs, SamplingParams(temperature=0.0, max_tokens=32)),
            ChatRequest.from_messages(msgs, SamplingParams(temperature=0.7, max_tokens=32, n=2, seed=3)),
            ChatRequest.from_messages([{"role": "user", "content": "What is the capital of France?"}],
                                      SamplingParams(temperature=0.0, max_tokens=32))]


@pytest.mark.timeout(300)
def test_backend_answers_chat_requests_in_order_with_usage_and_n(teacher, tmp_path):
    engine = make_engine(teacher, cache_dir=tmp_path / "cache")
    reqs = _reqs()
    out = engine.run(reqs, progress=False)
    assert [r.index for r in out] == [0, 1, 2]
    assert [r.request for r in out] == reqs
    for r in out:
        # a tiny model may hit max_tokens on every sample; that is a per-request error row, not a crash
        assert r.ok or r.error_kind == "truncated", r.error
        assert r.teacher == teacher.teacher_id and r.key == engine.key(r.request)
        if r.ok:
            assert all(isinstance(c, str) for c in r.choices) and any(c.strip() for c in r.choices)
            assert len(r.choices) == r.request.params.n == len(r.finish_reasons)
            assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert sum(r.ok for r in out) >= 2
    st = engine.stats
    assert st["completed"] + st["failed"] == 3 and st["prompt_tokens"] > 0
    again = make_engine(teacher, cache_dir=tmp_path / "cache").run(reqs, progress=False)
    assert [r.cached for r in again] == [r.ok for r in out]


@pytest.mark.timeout(300)
def test_same_seed_same_answer(teacher, tmp_path):
    req = ChatRequest.from_messages([{"role": "user", "content": "Invent a name for a cat."}],
                                    SamplingParams(temperature=1.0, max_tokens=6, seed=11))
    a = make_engine(teacher, cache_dir=tmp_path / "a").run([req], progress=False)[0]
    b = make_engine(teacher, cache_dir=tmp_path / "b").run([req], progress=False)[0]  # no shared cache
    assert not a.cached and not b.cached
    assert a.choices == b.choices


@pytest.mark.timeout(300)
def test_json_requests_come_back_parseable_or_as_an_invalid_json_row(teacher, tmp_path):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    req = ChatRequest.from_messages([{"role": "user", "content": 'Reply with JSON {"title": ...} naming a movie.'}],
                                    SamplingParams(temperature=0.0, max_tokens=16), json_schema=schema)
    [r] = make_engine(teacher, cache_dir=tmp_path / "c").run([req], progress=False)
    if teacher.backend == "local":       # no constrained decoding on the CPU model: validated, not forced
        assert r.ok or r.error_kind in ("invalid_json", "truncated")
    else:
        assert r.ok and isinstance(json.loads(r.choices[0]), dict)
    if r.ok:
        json.loads(r.choices[0].strip().strip("`").removeprefix("json"))


def test_local_model_reloads_when_the_folder_gets_new_weights(tmp_path):
    """RFT retrains into a folder and samples from it again: the shared model cache must notice."""
    import os

    from synth.teacher.backends.local_backend import _weights_stamp
    w = tmp_path / "model.safetensors"
    w.write_bytes(b"round 1")
    before = _weights_stamp(str(tmp_path))
    w.write_bytes(b"round 2 weights")
    os.utime(w, ns=(1, 2))
    assert _weights_stamp(str(tmp_path)) != before
