"""vLLM for real on CPU, offline: the `vllm` backend runs the embedded SmolLM2-135M in a vLLM worker process
(.venv-vllm, made by scripts/setup_vllm.sh) and writes a synth task's rows; JSON requests come back under
vLLM's structured outputs. One worker (one model load, ~1 min on 2 cores) serves the whole module and
test_synth_teacher_backends.py's vllm cases: same config, same shared worker."""
from __future__ import annotations

import json

import pytest
from test_synth_tasks_teacher import build_tiny

from storage.answer import R2Answer, validate_logic_chain
from storage.datasets import read_dv
from storage.runs import get_run, list_runs
from synth.tasks.run import run_task
from synth.teacher.config import TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams

pytestmark = pytest.mark.slow

# max_concurrency: everything queued goes into one LLM.chat call
VLLM_TEACHER = TeacherConfig(backend="vllm", max_concurrency=64)


def last_synth_run_stats(ws) -> dict:
    """The stats of the newest `synth` run row (a re-run with identical rows writes no new dataset version, so
    its accounting is found through its run row, not through the rows' run_id)."""
    newest = list_runs(ws, "synth", limit=1)[0]
    return get_run(ws, newest["run_id"])["stats"]


def r2_schema() -> dict:
    """The R2 answer schema r2_evolve sends (synth.teacher.types.r2_json_schema: storage.answer.R2Answer's schema
    with $refs inlined), else the pydantic model's own."""
    import synth.teacher.types as types

    helper = getattr(types, "r2_json_schema", None)
    return helper() if helper is not None else R2Answer.model_json_schema()


@pytest.fixture(scope="module")
def vllm_worker_ready():
    """Start (or reuse) the shared worker once for the module; the first test should not pay for the load
    inside its own timing."""
    from synth.teacher.backends.vllm_backend import get_worker

    info = get_worker(VLLM_TEACHER).wait_ready()
    assert info["ready"] is True and info["device"] == "cpu" and info["vllm"].startswith("0.")
    return info


@pytest.mark.timeout(600)
def test_a_synth_task_through_offline_vllm_row_by_row_then_from_the_cache(vllm_worker_ready, tmp_ws):
    build_tiny(tmp_ws)
    dv = run_task(tmp_ws, "align_item_narrative", teacher=VLLM_TEACHER,
                  options={"limit": 5, "max_tokens": 48, "temperature": 0.0})
    rows = read_dv(dv).to_pylist()
    assert len(rows) == 5
    for r in rows:
        assert r["teacher"] == "vllm:smollm2-135m-instruct"
        assert r["request_key"] and len(r["request_key"]) == 64
        assert r["error"] is None, r["error"]
        assert r["answer"] and r["answer"].strip()
        assert r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"].strip()
    stats = get_run(tmp_ws, rows[0]["run_id"])["stats"]["teachers"][0]
    assert stats["sent"] == 5 and stats["cached"] == 0 and stats["completion_tokens"] > 0

    again = run_task(tmp_ws, "align_item_narrative", teacher=VLLM_TEACHER,
                     options={"limit": 5, "max_tokens": 48, "temperature": 0.0})
    stats2 = last_synth_run_stats(tmp_ws)["teachers"][0]
    assert stats2["cached"] == 5 and stats2["sent"] == 0           # every answer from the durable cache
    rows2 = read_dv(again).to_pylist()
    assert sorted((r["request_key"], r["answer"]) for r in rows2) == sorted((r["request_key"], r["answer"])
                                                                            for r in rows)


def bounded(schema: dict, max_items: int = 3, max_len: int = 60) -> dict:
    """The schema with budgets a 135M model needs to finish inside max_tokens (every list at most `max_items`,
    every string at most `max_len` characters, no extra keys); anything it admits still passes the original."""
    if isinstance(schema, list):
        return [bounded(x, max_items, max_len) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v, max_items, max_len) for k, v in schema.items()}
    if out.get("type") == "object":
        out["additionalProperties"] = False
    elif out.get("type") == "array":
        out["maxItems"] = max_items
    elif out.get("type") == "string":
        out["maxLength"] = max_len
    return out


@pytest.mark.timeout(600)
def test_r2_json_requests_are_decoded_under_the_schema(vllm_worker_ready, tmp_path):
    """Structured outputs offline: every answer parses, validates as an R2 chain and keeps the schema's
    budgets, even from a 135M model that writes invalid JSON when left free."""
    schema = bounded(r2_schema())
    prompt = ("A user watched Toy Story (1995-01-02), then Heat (1995-02-10), then Casino (1995-03-01). Describe "
              "how their interest evolved as JSON: {\"logic_chain\": {\"name\": ..., \"events\": [{\"action\": "
              "..., \"logic\": ..., \"date\": ...}]}}.")
    reqs = [ChatRequest.from_messages([{"role": "user", "content": prompt}],
                                      SamplingParams(temperature=t, max_tokens=300, seed=s), json_schema=schema)
            for t, s in ((0.0, None), (0.8, 1), (0.8, 2))]
    out = make_engine(VLLM_TEACHER, cache_dir=tmp_path / "cache").run(reqs, progress=False)
    for r in out:
        assert r.ok, (r.error_kind, r.error)
        obj = json.loads(r.choices[0])
        assert validate_logic_chain(obj) is None, (validate_logic_chain(obj), r.choices[0])
        chain = obj["logic_chain"]
        assert set(obj) == {"logic_chain"} and set(chain) == {"name", "events"}
        assert 1 <= len(chain["events"]) <= 3 and len(chain["name"]) <= 60
        for ev in chain["events"]:
            assert set(ev) == {"action", "logic", "date"} and all(len(v) <= 60 for v in ev.values())


@pytest.mark.timeout(300)
def test_extra_body_sampling_fields_reach_offline_vllm(vllm_worker_ready, tmp_path):
    """extra_body means what it means to a vLLM server: here min_tokens keeps a one-word answer going."""
    req = ChatRequest.from_messages([{"role": "user", "content": "Is Paris in France? Answer yes or no."}],
                                    SamplingParams(temperature=0.0, max_tokens=100))
    [short] = make_engine(VLLM_TEACHER, cache_dir=tmp_path / "a").run([req], progress=False)
    forced_cfg = VLLM_TEACHER.model_copy(update={"extra_body": {"min_tokens": 90}})
    [forced] = make_engine(forced_cfg, cache_dir=tmp_path / "b").run([req], progress=False)
    assert short.ok and short.usage.completion_tokens < 90, short.usage
    assert forced.usage.completion_tokens >= 90, (forced.usage, forced.choices)


@pytest.mark.timeout(300)
def test_a_model_vllm_cannot_load_stops_the_run_with_the_workers_reason(tmp_path, monkeypatch):
    from synth.teacher.errors import BackendUnavailable

    bad = TeacherConfig(backend="vllm", model=str(tmp_path / "no-such-model"))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        make_engine(bad, cache_dir=tmp_path / "c").run(
            [ChatRequest.from_messages([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=4))],
            progress=False)
    monkeypatch.setenv("RECOT_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(BackendUnavailable, match="RECOT_VLLM_PYTHON"):
        make_engine(VLLM_TEACHER, cache_dir=tmp_path / "d").run(
            [ChatRequest.from_messages([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=4))],
            progress=False)
