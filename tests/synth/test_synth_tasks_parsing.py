"""The CoT parser and the template machinery (pure functions), the CLI, and one CoT run with the real
embedded local teacher."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from storage.answer import extract_json_object, parse_logic_chain, plain_answer, split_think, validate_logic_chain
from storage.errors import ConfigError
from synth.tasks.templates import load_template

SID = "<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>"


@pytest.mark.parametrize("text, reasoning, answer, error, fmt", [
    (f"<think>likes drama</think>\nAnswer: {SID} Heat", "likes drama", f"{SID} Heat", None, "think"),
    (f"likes drama</think> {SID}", "likes drama", SID, None, "close_only"),
    ("<think>likes drama and", "likes drama and", None, "unterminated <think> block", "partial"),
    (f"The user likes drama.\nAnswer: {SID}", "The user likes drama.", SID, None, "answer_marker"),
    ("I recommend Heat.", None, "I recommend Heat.", "no <think> block and no 'Answer:' line", "plain"),
    ("<think></think> Heat", None, "Heat", "empty <think> block", "think"),
    ("<think>hmm</think>", "hmm", None, "no answer after </think>", "think"),
])
def test_split_think_shapes(text, reasoning, answer, error, fmt):
    p = split_think(text, "stop")
    assert (p.reasoning, p.answer, p.error, p.extra["format"]) == (reasoning, answer, error, fmt)


def test_split_think_flags_truncation_and_empty():
    assert split_think("<think>on and on", "length").error == "unterminated <think> block (truncated at max_tokens)"
    assert split_think("   ", "stop").error == "empty answer"
    assert split_think(None).error == "empty answer"
    assert plain_answer("<think>x</think> A nice film.").answer == "A nice film."
    assert plain_answer("A nice", "length").error == "truncated at max_tokens"


def test_json_extraction_and_chain_validation():
    chain = {"logic_chain": {"name": "n", "events": [{"action": "a", "logic": "l", "date": "2020-01-01"}]}}
    obj, why = extract_json_object("Here you go:\n```json\n" + json.dumps(chain) + "\n```")
    assert obj == chain and why is None and validate_logic_chain(obj) is None
    assert extract_json_object("Sure: " + json.dumps(chain) + " — and {not this}") == (chain, None)
    obj, why = extract_json_object('{"logic_chain": {"name": "x", "events": [}')
    assert obj is None and why.startswith("not JSON (") and "line 1 column" in why
    assert extract_json_object("no json here") == (None, "not JSON: no object in the answer")
    assert extract_json_object("[1, 2]") == (None, "not JSON: no object in the answer")       # objects only
    assert extract_json_object("  ") == (None, "empty answer")


@pytest.mark.parametrize("chain, reason", [
    ({"name": "n", "events": []}, "'logic_chain.events': list should have at least 1 item"),
    ({"name": " ", "events": [{"action": "a", "logic": "l", "date": "d"}]}, "'logic_chain.name': string should"),
    ({"name": "n", "events": [{"action": "a"}]}, "missing key 'logic_chain.events[0].logic'"),
    ({"name": "n", "events": [{"action": "a", "logic": "", "date": "d"}]}, "'logic_chain.events[0].logic'"),
    ({"name": "n", "events": [{"action": 3, "logic": "l", "date": "d"}]}, "'logic_chain.events[0].action': input"),
])
def test_the_r2_schema_is_strict(chain, reason):
    """Empty names, empty event lists and empty or non-string fields are rejected, with where."""
    why = validate_logic_chain({"logic_chain": chain})
    assert why.startswith("invalid R2 JSON: ") and reason in why
    assert parse_logic_chain(json.dumps({"logic_chain": chain})) == (None, why)


def test_parse_logic_chain_names_the_json_problem():
    assert parse_logic_chain(None) == (None, "invalid R2 JSON: empty answer")
    assert parse_logic_chain("prose") == (None, "invalid R2 JSON: not JSON: no object in the answer")
    assert parse_logic_chain('{"logic_chain": ').__getitem__(1).startswith("invalid R2 JSON: not JSON (")
    assert parse_logic_chain('{"x": 1}') == (None, "invalid R2 JSON: missing key 'logic_chain'")


def test_templates_are_versioned_and_compile_to_sql():
    import duckdb

    t = load_template("align_item")
    assert t.ref == "align_item@v1" and t.version == 1
    sql = t.to_sql("title2sid_user", {"title": "'It''s'"})
    assert duckdb.sql(f"SELECT {sql}").fetchall()[0][0] == 'What is the semantic ID of "It\'s"?'
    assert t.render("sid2title_user", sid="S") == "What is the title of the item S?"
    with pytest.raises(ConfigError, match=r"uses \$\{sid\}"):
        t.render("sid2title_user")
    with pytest.raises(ConfigError, match="no template version 9"):
        load_template("align_item", 9)
    fr = load_template("r3_recommend", language="fr")          # no translation: the English file and ref
    assert fr.language == "en" and fr.ref == load_template("r3_recommend").ref


def _tiny(tmp_path):
    from test_synth_tasks_teacher import build_tiny

    from storage.workspace import Workspace

    ws = Workspace.open(tmp_path / "ws")
    build_tiny(ws)
    return ws


def test_cli_lists_and_runs_tasks(tmp_path):
    from ui.cli import app

    ws = _tiny(tmp_path)
    r = CliRunner().invoke(app, ["synth", "list"])
    assert r.exit_code == 0
    for name in ("align_token", "align_item", "align_relational", "align_user", "align_item_narrative",
                 "align_sequence_narrative", "r0_item_qa", "r0_grounding", "r0_understand", "r1_derive",
                 "r2_evolve", "r3_recommend"):
        assert name in r.output
    r = CliRunner().invoke(app, ["synth", "list", "--options"])
    assert "target_split" in r.output and "cross_domain" in r.output
    r = CliRunner().invoke(app, ["synth", "run", "align_item", "-w", str(ws.root), "--limit", "7", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "alignment@v1: 7 samples" in r.output
    r = CliRunner().invoke(app, ["synth", "run", "align_item", "-w", str(ws.root), "--mode", "hint"])
    assert r.exit_code != 0 and "no option 'mode'" in str(r.exception)


@pytest.mark.slow
def test_r3_with_the_real_embedded_teacher(tmp_path, local_model_path):
    """Two users through the embedded SmolLM2-135M: weak text is expected, a correct pipeline is not optional:
    every prompt yields rows, each parsed or carrying an error, and a re-run sends nothing new."""
    from storage.datasets import read_dv
    from synth.tasks.run import run_task

    ws = _tiny(tmp_path)
    opts = {"users": 2, "max_tokens": 24, "min_history": 2, "cross_domain": "off", "think": "both",
            "temperature": 0.0}                     # greedy: a re-run reproduces even truncated answers
    dv = run_task(ws, "r3_recommend", options=opts)
    rows = read_dv(dv).to_pylist()
    assert {r["user_id"] for r in rows} and len({r["prompt_id"] for r in rows}) == 2
    assert all(r["teacher"] == "local:smollm2-135m-instruct" for r in rows)
    for r in rows:
        assert r["error"] is not None or (r["answer"] and r["answer_sids"])
        assert r["target_sids"][0] not in r["messages"][0]["content"]
    again = run_task(ws, "r3_recommend", options=opts)
    assert sorted(r["sample_id"] for r in read_dv(again).to_pylist()) == sorted(r["sample_id"] for r in rows)
    from storage.runs import get_run

    ok_prompts = {r["prompt_id"] for r in rows if not (r["error"] or "").startswith("teacher error")}
    # answered requests come from the cache; failed ones (e.g. truncated) are retried by design
    assert get_run(ws, again.run_id)["stats"]["teachers"][0]["cached"] == len(ok_prompts)
