"""TeacherConfig loading/redaction and the `recot runs` commands that show a teacher run's accounting."""
from __future__ import annotations

import json

import pytest
from fakes.fault_server import FaultServer
from typer.testing import CliRunner

from storage.errors import ConfigError
from synth.teacher.config import TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams
from ui.cli import app


def test_yaml_config_loads_and_public_dict_has_no_secret(tmp_path, monkeypatch):
    p = tmp_path / "t.yaml"
    p.write_text("teacher:\n  backend: openai\n  model: qwen3-8b\n  base_url: http://127.0.0.1:8000/v1\n"
                 "  api_key_env: MY_TEACHER_KEY\n  rpm: 600\n  price_per_1m_prompt: 0.5\n")
    cfg = TeacherConfig.from_yaml(p)
    assert cfg.teacher_id == "openai:qwen3-8b" and cfg.rpm == 600
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-abcdefghijklmnop")
    assert cfg.api_key() == "sk-abcdefghijklmnop"               # read from the environment at call time
    assert "sk-abcdefghijklmnop" not in json.dumps(cfg.public_dict())


def test_a_key_in_the_config_file_is_refused(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("backend: openai\nmodel: x\napi_key: sk-abcdefghijklmnop\n")
    with pytest.raises(ConfigError, match=r"t.yaml.*'api_key'.*api_key_env"):
        TeacherConfig.from_yaml(p)


def test_bad_fields_name_the_file_and_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("backend: ollama\nmodel: x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: field 'backend'"):
        TeacherConfig.from_yaml(p)
    p.write_text("backend: openai\nmodel: x\nmax_concurency: 3\n")       # typo: unknown field
    with pytest.raises(ConfigError, match=r"field 'max_concurency'"):
        TeacherConfig.from_yaml(p)


def test_coerce_accepts_the_usual_spellings(tmp_path):
    assert TeacherConfig.coerce(None).teacher_id == "local:smollm2-135m-instruct"
    assert TeacherConfig.coerce("openai:gpt-4o-mini").teacher_id == "openai:gpt-4o-mini"
    assert TeacherConfig.coerce({"backend": "vllm", "model": "Qwen/Qwen3-8B"}).backend == "vllm"


def test_runs_list_and_show_display_teacher_accounting(tmp_ws):
    with FaultServer("scripted", script={"bad": ["500"]}) as srv:
        cfg = TeacherConfig(backend="openai", model="fake", base_url=srv.base_url, max_retries=1,
                            backoff_base_s=0.01, price_per_1m_prompt=1.0, price_per_1m_completion=2.0)
        engine = make_engine(cfg, tmp_ws)
        engine.run([ChatRequest.from_messages([{"role": "user", "content": t}], SamplingParams())
                    for t in ("good one", "bad one")], progress=False)
    runner = CliRunner()
    res = runner.invoke(app, ["runs", "list", "-w", str(tmp_ws.root)])
    assert res.exit_code == 0, res.output
    assert engine.run_id in res.output and "teacher" in res.output
    res = runner.invoke(app, ["runs", "show", engine.run_id, "-w", str(tmp_ws.root)])
    assert res.exit_code == 0, res.output
    assert "server_error=1" in res.output and "cache hits" in res.output and "latency p50" in res.output
    res = runner.invoke(app, ["runs", "show", engine.run_id, "-w", str(tmp_ws.root), "--json"])
    shown = json.loads(res.output)
    assert shown["stats"]["sent"] == 3 and shown["stats"]["failures"] == {"server_error": 1}
    assert shown["config"]["teacher"]["model"] == "fake"
    res = runner.invoke(app, ["runs", "show", "no-such-run", "-w", str(tmp_ws.root)])
    assert res.exit_code != 0


def test_engine_accounting_goes_under_teacher_in_a_callers_run(tmp_ws):
    from storage.runs import get_run, recorded_run
    with recorded_run(tmp_ws, "synth", {"task": "demo"}) as run, FaultServer("echo") as srv:
        engine = make_engine(TeacherConfig(backend="openai", model="fake", base_url=srv.base_url), tmp_ws,
                             run_id=run.id)
        engine.run([ChatRequest.from_messages([{"role": "user", "content": "x"}])], progress=False)
        row = get_run(tmp_ws, run.id)
        assert row["status"] == "running"                    # the caller owns the row's status
        assert row["stats"]["teacher"]["completed"] == 1
        run.stats = {"samples": 1, "teacher": engine.stats}
    row = get_run(tmp_ws, run.id)
    assert row["status"] == "done" and row["stats"]["teacher"]["sent"] == 1


def test_request_file_errors_name_the_line_and_field(tmp_path):
    from storage.errors import InputError
    from synth.teacher.__main__ import read_requests
    p = tmp_path / "reqs.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "ok"}]}\n{"messages": []}\n')
    with pytest.raises(InputError, match=r"reqs.jsonl, line 2, field 'messages'"):
        read_requests(p)
    p.write_text('{"messages": [{"role": "user", "content": "ok"}], "params": {"temprature": 1}}\n')
    with pytest.raises(InputError, match=r"line 1, field 'params'"):
        read_requests(p)
    p.write_text('not json\n')
    with pytest.raises(InputError, match=r"line 1"):
        read_requests(p)


def test_runs_show_finds_teacher_accounting_inside_a_task_run(tmp_ws):
    from storage.runs import recorded_run
    with recorded_run(tmp_ws, "synth", {"task": "demo"}) as run, FaultServer("echo") as srv:
        engine = make_engine(TeacherConfig(backend="openai", model="fake-a", base_url=srv.base_url), tmp_ws,
                             run_id=run.id)
        engine.run([ChatRequest.from_messages([{"role": "user", "content": "x"}])], progress=False)
        run.stats = {"samples": 1, "teachers": [engine.stats]}
    res = CliRunner().invoke(app, ["runs", "show", run.id, "-w", str(tmp_ws.root)])
    assert res.exit_code == 0, res.output
    assert "openai:fake-a" in res.output and "teacher accounting" in res.output and '"samples": 1' in res.output
    from ui.commands.runs import _summary
    assert _summary({"samples": 1, "teachers": [engine.stats]}) == "1 req, 0 hit, 1 sent, 0 err"
