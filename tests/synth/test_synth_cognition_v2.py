"""r3_recommend v2 (three-level cognition CoT) end to end through the fault server (a real OpenAI-compatible
HTTP server answering scripted texts): what the teacher is sent (the format, the skeleton as grounding facts
in hint mode only), what the student turn stays (the same as v1), and how well-formed and malformed
three-level answers parse. v1 stays selectable with template_version=1."""
from __future__ import annotations

import json
import re

import pytest
from fakes.fault_server import FaultServer
from test_synth_skeleton import MOVIES, build_catalog, sid_of, title_of  # tests/synth is on sys.path

from storage.cognition import LEVELS, skeleton_of, split_levels
from storage.datasets import read_dv
from storage.errors import ConfigError
from synth.tasks.run import run_task
from synth.teacher.config import TeacherConfig

SID = re.compile(r"<\|sid_begin\|>.*?<\|sid_end\|>")


@pytest.fixture
def movies_ws(tmp_ws):
    build_catalog(tmp_ws)
    return tmp_ws


class Scripted:
    """Answers every request with `make(history_sids)` and keeps the request bodies."""

    def __init__(self, make):
        self.make, self.bodies = make, []

    def __call__(self, body, attempt):
        self.bodies.append(body)
        user = body["messages"][-1]["content"]
        history = [ln.split(" ", 1)[0] for ln in user.splitlines() if ln.startswith("<|sid_begin|>")]
        return self.make(history)


def _teacher(srv) -> TeacherConfig:
    return TeacherConfig(backend="openai", model="scripted", base_url=srv.base_url, api_key_env="RECOT_TEST_NO_KEY",
                         max_retries=0, timeout_s=10)


def _run(ws, make, **options):
    rec = Scripted(make)
    with FaultServer("scripted", script=rec) as srv:
        dv = run_task(ws, "r3_recommend", teacher=_teacher(srv), dataset=options.pop("dataset", "cot"),
                      options={"min_history": 2, **options})
    return read_dv(dv).to_pylist(), rec.bodies


def well_formed(h: list[str]) -> str:
    return ("<think>\n"
            f"Perception: {h[0]} is a family film; {h[-1]} is the latest item.\n"
            f"Interest points: (1) family films, {len(h) - 1} of {len(h)} items.\n"
            "Evolution: the family films continue into the recent part, so the next choice serves (1).\n"
            f"</think>\nAnswer: {h[1]} Some film")


def test_v2_is_the_default_and_a_well_formed_answer_parses_into_three_levels(movies_ws):
    rows, bodies = _run(movies_ws, well_formed, mode="hint")
    assert len(rows) == len(bodies) == 3
    for r in rows:
        assert r["template_version"] == "r3_recommend@v2" and r["error"] is None
        extra = json.loads(r["extra"])
        assert extra["cot_format"] == "three_level" and extra["levels"] == "ok"
        levels = split_levels(r["reasoning"])
        assert isinstance(levels, dict) and levels["Perception"].startswith(sid_of(r["history_item_ids"][0]))
        assert levels["Interest points"].startswith("(1) family films") and levels["Evolution"].endswith("(1).")
        assert r["answer_sids"] == [sid_of(r["history_item_ids"][1])]
        assert r["messages"][1]["content"] == f"<think>\n{r['reasoning']}\n</think>\n\n{r['answer']}"


def test_hint_prompt_gives_the_skeleton_as_grounding_facts_and_blind_does_not(movies_ws):
    hint, hint_bodies = _run(movies_ws, well_formed, mode="hint", dataset="hint")
    blind, blind_bodies = _run(movies_ws, well_formed, mode="blind", dataset="blind")
    for rows, bodies, mode in ((hint, hint_bodies, "hint"), (blind, blind_bodies, "blind")):
        for r in rows:
            body = next(b for b in bodies if r["messages"][0]["content"].split("\n")[1] in b["messages"][-1]["content"])
            system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
            # the format: three labels, in order, then the answer
            pos = [system.index(f'"{lv}:"') for lv in LEVELS]
            assert pos == sorted(pos) and '"Answer:"' in system
            blocks = re.findall(r"<skeleton>(.*?)</skeleton>", user, re.S)
            if mode == "hint":
                (block,) = blocks
                data = json.loads(block)
                assert data["skeleton"] == skeleton_of(r["extra"])          # the stored skeleton, verbatim
                assert data["target"] == {"sid": r["target_sids"][0], "title": title_of(r["target_item_ids"][0])}
            else:
                assert blocks == [] and skeleton_of(r["extra"])["target_point"] is None
            student = r["messages"][0]["content"]
            assert "<skeleton>" not in student and r["target_sids"][0] not in student


def test_student_turn_is_the_same_as_v1_and_v1_stays_selectable(movies_ws):
    v2, _ = _run(movies_ws, well_formed, mode="hint", dataset="v2")
    v1, v1_bodies = _run(movies_ws, well_formed, mode="hint", dataset="v1", template_version=1)
    assert {r["template_version"] for r in v1} == {"r3_recommend@v1"}
    assert all("<skeleton>" not in json.dumps(b) for b in v1_bodies)
    assert all("levels" not in json.loads(r["extra"]) for r in v1)     # no three-level expectation on v1
    by_user = {r["user_id"]: r["messages"][0]["content"] for r in v1}
    assert {r["user_id"]: r["messages"][0]["content"] for r in v2} == by_user


@pytest.mark.parametrize("answer, error, levels", [
    # levels missing, out of order, repeated or empty still parse (curation rejects them with this reason)
    (lambda h: f"<think>\nPerception: {h[0]} a film.\nInterest points: (1) films.\n</think>\nAnswer: {h[1]} X",
     None, "missing level: Evolution"),
    (lambda h: f"<think>\nInterest points: (1) films.\nPerception: {h[0]}.\nEvolution: stays.\n</think>\n"
               f"Answer: {h[1]} X", None, "levels out of order: Interest points before Perception"),
    (lambda h: f"<think>\n**Perception:** {h[0]}.\nInterest points: (1).\nEvolution: same.\n</think>\n"
               f"Answer: {h[1]} X", None, "missing level: Perception (found '**Perception:**'"),
    (lambda h: f"<think>\nPerception:\nInterest points: (1) films.\nEvolution: same.\n</think>\nAnswer: {h[1]} X",
     None, "empty level: Perception"),
    (lambda h: f"<think>The user likes films.</think>\nAnswer: {h[1]} X", None, "missing level: Perception"),
    # not parseable as an answer at all: an error row (the raw text kept for reviewers)
    (lambda h: f"<think>\nPerception: {h[0]}.\nInterest points: (1) films and then it goes on",
     "unterminated <think> block", "missing level: Evolution"),
    (lambda h: "<think>\nPerception: x.\nInterest points: y.\nEvolution: z.\n</think>\nAnswer: a nice film",
     "no SID in the answer", "ok"),
    (lambda h: "I would recommend a nice film.", "no <think> block and no 'Answer:' line", None),
])
def test_malformed_three_level_answers_parse_with_the_right_flags(movies_ws, answer, error, levels):
    rows, _ = _run(movies_ws, answer, mode="hint")
    assert len(rows) == 3
    for r in rows:
        extra = json.loads(r["extra"])
        assert (r["error"] or None) == error or r["error"].startswith(error)
        if levels is None:
            assert "levels" not in extra
        else:
            assert extra["levels"].startswith(levels)
        if error:
            assert extra["raw"] and r["messages"][-1]["content"] == extra["raw"]


def test_history_format_title_and_a_v1_template_that_cannot_show_it(movies_ws):
    rows, bodies = _run(movies_ws, well_formed, mode="hint", history_format="title")
    for r in rows:
        student = r["messages"][0]["content"]
        assert student.startswith("A user's history, oldest first (title, date):\n")
        assert not SID.search(student)
        assert all(title_of(i) in student for i in r["history_item_ids"])
        assert json.loads(r["extra"])["history_format"] == "title"
    # the teacher still sees SID + title lines
    assert all(SID.search(b["messages"][-1]["content"]) for b in bodies)
    with pytest.raises(ConfigError, match="template_version=2"):
        run_task(movies_ws, "r3_recommend", options={"history_format": "sid", "template_version": 1})
    with pytest.raises(ConfigError, match="history_format must be one of"):
        run_task(movies_ws, "r3_recommend", options={"history_format": "titles"})


def test_eval_prompts_follow_history_format_and_the_eval_records_it(movies_ws, tmp_path, monkeypatch):
    """trainers.evaluate builds its R3 prompts with the same option (no model needed: the decoder is stubbed
    and sees the prompts it would rank)."""
    import trainers.decoding
    import trainers.evaluate as ev

    seen: list[list[dict]] = []

    def fake_ranked(model, tok, trie, prompts, **kw):
        seen.extend(prompts)
        return [[] for _ in prompts]

    monkeypatch.setattr(ev, "load_for_eval", lambda *a, **k: (None, None))
    monkeypatch.setattr(trainers.decoding, "generate_ranked", fake_ranked)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    res = ev.evaluate_model(movies_ws, model_dir, ks=(1,), sid_version=1, history_format="sid")
    assert len(seen) == res.n_users == 4                  # every user with a test item (history = train + valid)
    for msgs in seen:
        (turn,) = msgs
        assert turn["content"].startswith("A user's history, oldest first (semantic ID, date):\n")
        assert not any(title_of(i) in turn["content"] for i in MOVIES)
        assert SID.search(turn["content"])
    row = movies_ws.query("SELECT config FROM evals WHERE eval_id = ?", [res.eval_id])[0]
    assert json.loads(row[0])["history_format"] == "sid"
    with pytest.raises(ConfigError, match="history_format"):
        ev.evaluate_model(movies_ws, model_dir, ks=(1,), sid_version=1, history_format="sids")
