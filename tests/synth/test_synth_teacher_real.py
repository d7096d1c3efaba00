"""What a real reasoning teacher on an OpenAI-compatible server needs, end to end through the fault server (a
real HTTP server, tests/fakes/fault_server.py): the thinking in `reasoning_content` / `reasoning` kept as the
sample's reasoning (and the sample passes the format filter), `extra_body` on the wire and in the cache key,
token budgets and truncation as its own error kind, structured outputs for R2, blind answers resolved to
catalog SIDs (ambiguous and unknown titles rejected with reasons), prices, the dry run against the tokens a run
really used, and the max_cost_usd budget stop then resume."""
from __future__ import annotations

import json
import re

import pytest
from fakes.fault_server import Fault, FaultServer
from test_synth_tasks_teacher import USERS, _sid, build_tiny, train_target

from curation.chain import run_filters
from curation.config import load_chain
from storage.answer import check_format
from storage.datasets import read_dv
from storage.errors import ConfigError
from synth.tasks.resolve import CatalogResolver, normalize_title
from synth.tasks.run import plan_task, run_task
from synth.teacher.config import TeacherConfig
from synth.teacher.cost import BudgetExceeded, teacher_prices
from synth.teacher.types import r2_json_schema

TITLES = {"m1": "Heat (1995)", "m2": "Casino (1995)", "m3": "Hamlet (1990)", "m4": "Hamlet (1996)",
          "m5": "Godfather, The (1972)", "m6": "Toy Story (1995)", "m7": "Fargo (1996)", "m8": "Clueless (1995)",
          "m9": "Babe (1995)", "m10": "Se7en (1995)", "m11": "Twelve Monkeys (1995)", "m12": "Jumanji (1995)"}
CHAIN = {"logic_chain": {"name": "drift", "events": [{"action": "likes drama", "logic": "3 dramas",
                                                      "date": "2020-01-02"}]}}


@pytest.fixture
def real_ws(tmp_ws):
    """The tiny two-domain catalog of test_synth_tasks_teacher with real-looking movie titles (two Hamlets)."""
    build_tiny(tmp_ws)
    with tmp_ws.transaction() as con:
        for item, title in TITLES.items():
            con.execute("UPDATE items SET title = ? WHERE item_id = ?", [title, item])
    return tmp_ws


def teacher(srv: FaultServer, **kw) -> TeacherConfig:
    return TeacherConfig(backend="openai", model="fake-reasoner", base_url=srv.base_url,
                         api_key_env="RECOT_TEST_NO_KEY", max_retries=0, timeout_s=10, **kw)


def user_of(body) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def who(body) -> str:
    """The user a single-domain (movies) request is about: the one with the longest movie history whose SIDs all
    appear in the prompt."""
    text = user_of(body)
    movies = {u: [i for i in train_target(u)[0] if i.startswith("m")] for u in USERS if u != "u5"}
    hits = [u for u, h in movies.items() if all(_sid(i) in text for i in h)]
    return max(hits, key=lambda u: len(movies[u]))


def curate(ws, dv, filters=("format", "sid_grounding")) -> dict[str, tuple[bool, str | None]]:
    """sample_id → (kept, reason of the first filter that rejected it) through the real curation filters."""
    cfg, src = load_chain({"filters": [{"type": f} for f in filters]})
    _, verdicts, _ = run_filters(read_dv(dv), cfg.build(src), ws=ws, sid_version=1)
    out: dict[str, tuple[bool, str | None]] = {}
    for v in verdicts.to_pylist():
        kept, reason = out.get(v["sample_id"], (True, None))
        if kept and not v["keep"]:
            kept, reason = False, v["reason"]
        out[v["sample_id"]] = (kept, reason)
    return out


# ---------------------------------------------------------------------------------------------- reasoning
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field_becomes_the_samples_reasoning_and_passes_the_format_filter(real_ws, field):
    thinking = "Perception: the user watches 1990s crime films. Interest points: (1) crime. Evolution: steady."

    def script(body, attempt):
        return Fault("text", text=f"{_sid('m1')} Some film", reasoning=thinking)

    with FaultServer("scripted", script=script, reasoning_field=field) as srv:
        dv = run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                      options={"mode": "hint", "min_history": 2, "template_version": 1, "cross_domain": "off"})
    rows = read_dv(dv).to_pylist()
    assert len(rows) == 4                                            # u1-u4 (u5's history is too short)
    for r in rows:
        assert r["error"] is None and r["reasoning"] == thinking
        assert r["answer"].endswith("Some film") and r["answer_sids"]
        assistant = r["messages"][-1]["content"]
        assert assistant == f"<think>\n{thinking}\n</think>\n\n{r['answer']}"
        assert check_format(assistant, think=True) == (True, None)
    verdicts = curate(real_ws, dv, ("format",))
    assert set(verdicts.values()) == {(True, None)}


def test_content_with_its_own_think_block_is_not_wrapped_twice(real_ws):
    def script(body, attempt):
        return Fault("text", text=f"<think>own</think>{_sid('m1')} Heat (1995)", reasoning="separate")

    with FaultServer("scripted", script=script) as srv:
        dv = run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                      options={"mode": "hint", "min_history": 2, "limit": 1, "cross_domain": "off"})
    row = read_dv(dv).to_pylist()[0]
    assert row["reasoning"] == "own" and row["error"] is None


# ---------------------------------------------------------------------------------------------- extra_body
def test_extra_body_reaches_the_server_and_is_part_of_the_cache_key(real_ws):
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    opts = {"mode": "hint", "min_history": 2, "limit": 2, "cross_domain": "off", "think": "no_think"}
    with FaultServer("scripted", script=lambda b, a: f"Answer: {_sid('m1')} Heat (1995)") as srv:
        run_task(real_ws, "r3_recommend", teacher=teacher(srv, extra_body=off), options=opts, dataset="a")
        assert len(srv.bodies) == 2
        assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in srv.bodies)
        run_task(real_ws, "r3_recommend", teacher=teacher(srv, extra_body=off), options=opts, dataset="b")
        assert len(srv.bodies) == 2                                  # same extra_body: served by the cache
        on = {"chat_template_kwargs": {"enable_thinking": True}}
        run_task(real_ws, "r3_recommend", teacher=teacher(srv, extra_body=on), options=opts, dataset="c")
        assert len(srv.bodies) == 4                                  # a different extra_body asks again
        assert srv.bodies[-1]["chat_template_kwargs"] == {"enable_thinking": True}
        run_task(real_ws, "r3_recommend", teacher=teacher(srv), options=opts, dataset="d")
        assert len(srv.bodies) == 6 and "chat_template_kwargs" not in srv.bodies[-1]


# ---------------------------------------------------------------------------------------------- budgets
def test_cot_budget_is_2048_the_teacher_config_replaces_it_and_an_explicit_option_wins(real_ws):
    opts = {"mode": "hint", "min_history": 2, "limit": 1, "cross_domain": "off"}
    with FaultServer("scripted", script=lambda b, a: f"<think>x</think>{_sid('m1')} Heat (1995)") as srv:
        run_task(real_ws, "r3_recommend", teacher=teacher(srv), options=opts, dataset="a")
        run_task(real_ws, "r3_recommend", teacher=teacher(srv, max_tokens=300), options=opts, dataset="b")
        run_task(real_ws, "r3_recommend", teacher=teacher(srv, max_tokens=300), options={**opts, "max_tokens": 50},
                 dataset="c")
        run_task(real_ws, "align_item_narrative", teacher=teacher(srv), options={"limit": 1}, dataset="d")
    assert [b["max_tokens"] for b in srv.bodies] == [2048, 300, 50, 96]
    assert TeacherConfig().max_tokens == 256                         # the embedded model's own budget


def test_truncation_parse_failure_and_transport_error_are_told_apart(real_ws):
    outcome = {"u1": "truncated", "u2": "500", "u3": "no tags, no marker, no SID"}

    def script(body, attempt):
        return outcome.get(who(body), f"<think>fine</think>\n{_sid('m1')} Heat (1995)")

    with FaultServer("scripted", script=script) as srv:
        dv = run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                      options={"mode": "hint", "min_history": 2, "cross_domain": "off"})
    rows = {r["user_id"]: r for r in read_dv(dv).to_pylist()}
    kinds = {u: json.loads(r["extra"]).get("error_kind") for u, r in rows.items()}
    assert kinds == {"u1": "truncated", "u2": "server_error", "u3": "parse", "u4": None}
    assert "max_tokens=2048" in rows["u1"]["error"] and "raise the task's max_tokens" in rows["u1"]["error"]
    assert rows["u3"]["error"].startswith("no <think> block")


# ---------------------------------------------------------------------------------------------- structured
def test_a_json_task_gets_response_format_and_reasoning_plus_json_passes_the_filters(real_ws):
    def script(body, attempt):
        return Fault("text", text=json.dumps(CHAIN), reasoning="The user watched dramas first.")

    with FaultServer("scripted", script=script) as srv:
        dv = run_task(real_ws, "r2_evolve", teacher=teacher(srv), options={"min_history": 2, "users": 2})
        rf = srv.bodies[0]["response_format"]
        assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == r2_json_schema()
        assert "$defs" not in json.dumps(rf) and rf["json_schema"]["schema"]["required"] == ["logic_chain"]
        n = len(srv.bodies)
        run_task(real_ws, "r2_evolve", teacher=teacher(srv, structured_outputs=False),
                 options={"min_history": 2, "users": 2}, dataset="plain")
        assert len(srv.bodies) == 2 * n and "response_format" not in srv.bodies[-1]
        run_task(real_ws, "r3_recommend", teacher=teacher(srv), options={"min_history": 2, "limit": 1},
                 dataset="r3")
        assert "response_format" not in srv.bodies[-1]               # only JSON tasks ask for a schema
    rows = read_dv(dv).to_pylist()
    assert rows and all(r["error"] is None and json.loads(r["extra"])["logic_chain"] == CHAIN["logic_chain"]
                        for r in rows)
    assert set(curate(real_ws, dv, ("format",)).values()) == {(True, None)}


def test_json_only_answer_without_reasoning_field_says_why(real_ws):
    with FaultServer("scripted", script=lambda b, a: json.dumps(CHAIN)) as srv:
        dv = run_task(real_ws, "r2_evolve", teacher=teacher(srv), options={"min_history": 2, "users": 1})
    row = read_dv(dv).to_pylist()[0]
    assert "--reasoning-parser" in row["error"] and "structured_outputs: false" in row["error"]


# ---------------------------------------------------------------------------------------------- blind mode
def test_blind_answers_resolve_to_catalog_sids_and_ambiguous_or_unknown_titles_are_rejected(real_ws):
    # each user's prompt gets a different kind of answer (users told apart by the last history item)
    answers = {"u1": "<think>Crime again.</think>\nAnswer: Casino (1995)",            # title + year
               "u2": "<think>Classics.</think>\nThe Godfather",                          # article moved, no year
               "u3": "<think>Shakespeare.</think>\nHamlet",                              # two Hamlets: ambiguous
               "u4": "<think>Something new.</think>\nThe Room (2003)"}                   # not in the catalog
    sid_answer = {"u1": None}

    def script(body, attempt):
        u = who(body)
        if sid_answer["u1"] and u == "u1":
            return sid_answer["u1"]
        return answers[u]

    opts = {"mode": "blind", "min_history": 2, "cross_domain": "off"}
    with FaultServer("scripted", script=script) as srv:
        dv = run_task(real_ws, "r3_recommend", teacher=teacher(srv), options=opts)
        sid_answer["u1"] = f"<think>Heat fits.</think>\n{_sid('m1')} Heat (1995)"
        dv_sid = run_task(real_ws, "r3_recommend", teacher=teacher(srv), options={**opts, "seed": 1},
                          dataset="sid")
    rows = {r["user_id"]: r for r in read_dv(dv).to_pylist()}
    casino = json.loads(rows["u1"]["extra"])["resolution"]
    assert casino["method"] == "title" and casino["score"] == 100 and casino["item_id"] == "m2"
    assert casino["answer_text"] == "Casino (1995)"
    assert rows["u1"]["answer"] == f"{_sid('m2')} Casino (1995)" and rows["u1"]["answer_sids"] == [_sid("m2")]
    assert rows["u1"]["messages"][-1]["content"].endswith(f"{_sid('m2')} Casino (1995)")
    godfather = json.loads(rows["u2"]["extra"])["resolution"]
    assert godfather["method"] == "title" and godfather["item_id"] == "m5" and godfather["score"] >= 90
    assert rows["u3"]["error"].startswith("ambiguous title: 'Hamlet' matches 2 catalog items")
    assert "'Hamlet (1990)'" in rows["u3"]["error"] and "'Hamlet (1996)'" in rows["u3"]["error"]
    assert json.loads(rows["u3"]["extra"])["error_kind"] == "unresolved"
    assert rows["u4"]["error"].startswith("unresolved answer: no catalog title matches 'The Room (2003)'")
    verdicts = curate(real_ws, dv)
    by_user = {rows[u]["sample_id"]: u for u in rows}
    reasons = {by_user[s]: v for s, v in verdicts.items()}
    assert reasons["u1"] == (True, None) and reasons["u2"] == (True, None)
    assert not reasons["u3"][0] and "ambiguous title: 'Hamlet'" in reasons["u3"][1]
    assert not reasons["u4"][0] and "unresolved answer:" in reasons["u4"][1]
    heat = next(r for r in read_dv(dv_sid).to_pylist() if r["user_id"] == "u1")
    res = json.loads(heat["extra"])["resolution"]
    assert res == {"method": "sid", "score": 100.0, "item_id": "m1", "sid": _sid("m1"), "title": "Heat (1995)"}
    assert heat["answer"] == f"{_sid('m1')} Heat (1995)"


def test_hint_mode_answers_are_not_resolved(real_ws):
    with FaultServer("scripted", script=lambda b, a: "<think>x</think>\nHamlet") as srv:
        dv = run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                      options={"mode": "hint", "min_history": 2, "limit": 1, "cross_domain": "off"})
    row = read_dv(dv).to_pylist()[0]
    assert "resolution" not in json.loads(row["extra"]) and row["error"] == "no SID in the answer"


def test_resolver_threshold_margin_and_normalization():
    items = [("a", "s1", "Godfather, The (1972)"), ("b", "s2", "Godfather: Part II, The (1974)"),
             ("c", "s3", "Heat (1995)"), ("d", "s4", "Heart (1987)")]
    r = CatalogResolver(items)
    assert normalize_title("Godfather, The") == "the godfather"
    assert r.resolve("The Godfather (1972)").item_id == "a"
    unknown_sid = "<|sid_begin|><s_a_9><s_b_9><s_c_9><|sid_end|>"
    by_title = r.resolve(f"{unknown_sid} Heat (1995).")           # a SID not in the catalog: the title decides
    assert (by_title.item_id, by_title.method, by_title.score) == ("c", "title", 100.0)
    assert r.resolve(f"{unknown_sid} Nothing Like It").error.startswith(
        f"unresolved answer: SID {unknown_sid} is not in the catalog; no catalog title matches 'Nothing Like It'")
    typo = r.resolve("Haet (1995)")                                 # a typo scores below 90
    assert typo.item_id is None and "closest: 'Heat (1995)'" in typo.error
    assert CatalogResolver(items, threshold=70).resolve("Haet (1995)").item_id == "c"
    # "heat" vs "heart": 89 points apart from an exact hit; with a wide margin both are within it
    assert CatalogResolver(items, threshold=80, margin=15).resolve("Heat").error.startswith("ambiguous title")
    assert CatalogResolver(items, threshold=80, margin=2).resolve("Heat").item_id == "c"


# ---------------------------------------------------------------------------------------------- cost
def test_prices_come_from_genai_prices_for_hosted_models_and_typed_prices_override():
    hosted = teacher_prices(TeacherConfig(backend="openai", model="gpt-4o-mini"))
    assert hosted is not None and hosted.source == "genai-prices:openai/gpt-4o-mini"
    assert hosted.prompt_per_1m == pytest.approx(0.15) and hosted.completion_per_1m == pytest.approx(0.60)
    typed = teacher_prices(TeacherConfig(backend="openai", model="gpt-4o-mini", price_per_1m_prompt=1.0))
    assert typed.source == "config" and typed.prompt_per_1m == 1.0 and typed.completion_per_1m == 0.0
    assert teacher_prices(TeacherConfig(backend="openai", model="gpt-4o-mini",
                                        base_url="http://127.0.0.1:8000/v1")) is None   # your own server
    assert teacher_prices(TeacherConfig()) is None
    from synth.teacher.engine import make_engine
    with pytest.raises(ConfigError, match="max_cost_usd=1.0 needs prices"):
        make_engine(TeacherConfig(backend="openai", model="my-model", base_url="http://127.0.0.1:1/v1",
                                  max_cost_usd=1.0), cache_dir="/tmp/unused-recot-cache")


def _varied_answer(body, attempt):
    """Answers of realistic, varying length (a think block of 40-80 words and a SID answer)."""
    u = user_of(body)
    words = 40 + len(u) % 41
    return f"<think>{' '.join(['the user likes crime films'] * (words // 5))}</think>\n{_sid('m1')} Heat (1995)"


def test_dry_run_matches_the_tokens_the_run_used_within_20_percent(real_ws):
    from synth.teacher.local_model import ensure_local_model

    tok = str(ensure_local_model())
    opts = {"mode": "hint", "min_history": 2}
    with FaultServer("scripted", script=_varied_answer, usage_tokenizer=tok) as srv:
        cfg = teacher(srv, price_per_1m_prompt=1.0, price_per_1m_completion=2.0)
        cold = plan_task(real_ws, "r3_recommend", teacher=cfg, options=opts)["teachers"][0]
        assert cold["completion_source"] == "budget (max_tokens x n)"
        assert cold["completion_tokens"] == cold["to_send"] * 2048 and cold["cached"] == 0
        run_task(real_ws, "r3_recommend", teacher=cfg, options={**opts, "limit": 1}, dataset="seed")
        assert len(srv.bodies) == 1                                  # planning sent nothing
        est = plan_task(real_ws, "r3_recommend", teacher=cfg, options=opts)["teachers"][0]
        with_tok = plan_task(real_ws, "r3_recommend", teacher=cfg.model_copy(update={"tokenizer": tok}),
                             options=opts)["teachers"][0]
        assert len(srv.bodies) == 1
        dv = run_task(real_ws, "r3_recommend", teacher=cfg, options=opts)
    from storage.runs import get_run

    stats = get_run(real_ws, dv.run_id)["stats"]["teachers"][0]
    assert est["cached"] == 1 and est["to_send"] == stats["sent"] == est["requests"] - 1 >= 3
    assert est["completion_source"] == "observed mean of 1 cached answers"
    assert est["prompt_source"].startswith("estimate")
    assert with_tok["prompt_source"].startswith("tokenizer")
    assert with_tok["prompt_tokens"] == stats["prompt_tokens"]      # the same tokenizer counts the same
    for key in ("prompt_tokens", "completion_tokens"):
        assert abs(est[key] - stats[key]) <= 0.2 * stats[key], (key, est[key], stats[key])
    assert abs(est["cost_usd"] - stats["cost_usd"]) <= 0.2 * stats["cost_usd"]


def test_budget_stops_the_run_cleanly_and_a_rerun_finishes_without_paying_twice(real_ws):
    opts = {"mode": "hint", "min_history": 2}
    with FaultServer("scripted", script=_varied_answer) as srv:
        free = teacher(srv, max_concurrency=1)
        total = plan_task(real_ws, "r3_recommend", teacher=free, options=opts)["teachers"][0]["requests"]
        # $1 per completion word: each answer costs $43-83, the whole run more than $200; the budget lets a
        # request start only while the spending so far plus one more at the mean cost stays within $150
        cfg = teacher(srv, max_concurrency=1, price_per_1m_completion=1e6, max_cost_usd=150.0)
        with pytest.raises(BudgetExceeded, match=r"max_cost_usd=150.0 reached: spent .* so the next would pass "
                                                 r"it; .* run the same command again") as exc:
            run_task(real_ws, "r3_recommend", teacher=cfg, options=opts)
        first = len(srv.log)
        assert 1 <= first < total
        from storage.runs import get_run, list_runs

        failed = get_run(real_ws, next(r["run_id"] for r in list_runs(real_ws, "synth") if r["status"] == "failed"))
        spent_stats = failed["stats"]["teachers"][0]                 # the stopped run says what it spent
        assert spent_stats["sent"] == first and spent_stats["cost_usd"] > 0
        assert "BudgetExceeded" in failed["error"]
        spent = float(re.search(r"spent \$([0-9.]+) on (\d+) fresh", str(exc.value)).group(1))
        assert spent <= 150.0 + 83                                   # at most one request past the mean's guess
        assert f"on {first} fresh requests" in str(exc.value)
        plan = plan_task(real_ws, "r3_recommend", teacher=cfg, options=opts)["teachers"][0]
        assert plan["cached"] == first and plan["to_send"] == total - first
        dv = run_task(real_ws, "r3_recommend", teacher=cfg.model_copy(update={"max_cost_usd": 1000.0}),
                      options=opts)
    digests = [e["messages_sha"] for e in srv.log]
    assert len(digests) == len(set(digests)) == total               # every prompt paid for exactly once
    rows = read_dv(dv).to_pylist()
    assert len(rows) == total and all(r["error"] is None for r in rows)
    statuses = [r["status"] for r in list_runs(real_ws) if r["kind"] == "synth"]
    assert "failed" in statuses and statuses.count("done") == 1


# ---------------------------------------------------------------------------------------------- judge
def _judge_chain(teacher_cfg: dict, **params) -> dict:
    return {"name": "j", "filters": [{"type": "judge", "params": {"teacher": teacher_cfg, "min_score": 3,
                                                                  **params}}]}


def test_judge_reads_its_rubric_file_and_a_reasoning_judges_verdict(real_ws, tmp_path):
    from curation.chain import run_chain
    from curation.filters.judge import DEFAULT_RUBRIC, JudgeParams

    with FaultServer("scripted", script=lambda b, a: f"<think>ok</think>\n{_sid('m1')} Heat (1995)") as srv:
        run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                 options={"mode": "hint", "min_history": 2, "cross_domain": "off"}, dataset="cot")
    rubric = tmp_path / "strict.md"
    rubric.write_text("Only grade how well the answer matches the history. Reply with JSON.\n")

    def verdict(body, attempt):     # a reasoning judge: thinking (with braces) apart, the JSON verdict as content
        return Fault("text", text='{"score": 2, "reason": "too generic"}',
                     reasoning='Let me think {not JSON} about the history.')

    with FaultServer("scripted", script=verdict) as srv:
        cfg = {"backend": "openai", "model": "judge", "base_url": srv.base_url, "api_key_env": "NO_KEY",
               "max_retries": 0}
        dv = run_chain(real_ws, "cot", _judge_chain(cfg, rubric=str(rubric), structured=True), out="judged")
        assert {b["messages"][0]["content"] for b in srv.bodies} == {rubric.read_text().strip()}
        assert all(b["response_format"]["json_schema"]["schema"]["required"] == ["score", "reason"]
                   for b in srv.bodies)
        assert all(b["max_tokens"] == 512 for b in srv.bodies)       # the judge's default budget
        run_chain(real_ws, "cot", _judge_chain(cfg), out="judged_default")
        assert srv.bodies[-1]["messages"][0]["content"] == DEFAULT_RUBRIC
        assert "response_format" not in srv.bodies[-1]
    rows = read_dv(dv).to_pylist()
    assert rows and all(not r["keep"] and r["reject_reason"] == "judge score low: 2/5 (min 3): too generic"
                        for r in rows)
    with pytest.raises(ConfigError, match="rubric file 'nope.md' not found"):
        run_chain(real_ws, "cot", _judge_chain({"backend": "local"}, rubric="nope.md"), out="never")
    with pytest.raises(Exception, match="rubric file"):
        JudgeParams(rubric=str(tmp_path / "missing.md"))


def test_judge_runs_on_the_embedded_local_backend(real_ws):
    from curation.chain import run_chain

    with FaultServer("scripted", script=lambda b, a: f"<think>ok</think>\n{_sid('m1')} Heat (1995)") as srv:
        run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                 options={"mode": "hint", "min_history": 2, "cross_domain": "off", "limit": 1}, dataset="cot")
    dv = run_chain(real_ws, "cot", _judge_chain({"backend": "local", "local_threads": 1}, max_tokens=12),
                   out="judged")
    stats = dv.manifest["funnel"]["teacher_stats"]["judge"]
    assert stats["teacher"] == "local:smollm2-135m-instruct" and stats["sent"] == 1
    row = read_dv(dv).to_pylist()[0]
    verdict = real_ws.query("SELECT reason FROM verdicts WHERE dataset = 'judged'")[0][0]
    # 12 tokens rarely hold a whole verdict from a 135M model: whatever it said, it went through the engine
    # and was read (a score, an unparsable text or a truncation), and a judge that could not judge keeps
    assert verdict.startswith(("judge score", "judge unparsable", "judge error: truncated: the answer hit the "
                                                                  "token budget max_tokens=12"))
    assert row["keep"] or verdict.startswith("judge score low")


# ---------------------------------------------------------------------------------------------- CLI
def _teacher_yaml(path, srv, **extra) -> str:
    import yaml

    cfg = {"backend": "openai", "model": "fake-reasoner", "base_url": srv.base_url, "api_key_env": "NO_KEY",
           "max_retries": 0, "max_concurrency": 1, **extra}
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_cli_dry_run_prints_the_plan_and_sends_nothing(real_ws, tmp_path):
    from typer.testing import CliRunner

    from storage.runs import list_runs
    from ui.cli import app

    with FaultServer("scripted", script=_varied_answer) as srv:
        t = _teacher_yaml(tmp_path / "t.yaml", srv, price_per_1m_prompt=2.0, price_per_1m_completion=8.0,
                          extra_body={"chat_template_kwargs": {"enable_thinking": True}})
        res = CliRunner().invoke(app, ["synth", "run", "r2_evolve", "-w", str(real_ws.root), "--teacher", t,
                                       "--dry-run", "-O", "min_history=2"])
        assert res.exit_code == 0, res.output
        assert srv.bodies == []
    out = res.output
    assert "dry run of r2_evolve (r2_evolve@v1): 4 prompts; nothing is sent or written" in out
    assert "openai:fake-reasoner" in out and "2048" in out and "budget (max_tokens x n)" in out
    assert "prices from config" in out and "structured output (JSON schema)" in out
    assert "first request:" in out and "[system]" in out
    assert list_runs(real_ws) == [] and real_ws.query("SELECT count(*) FROM runs")[0][0] == 0


def test_cli_budget_stop_exits_5_with_the_message_and_resumes(real_ws, tmp_path, monkeypatch, capsys):
    import sys

    from ui.cli import main

    def recot(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["recot", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        return exc.value.code

    with FaultServer("scripted", script=_varied_answer) as srv:
        t = _teacher_yaml(tmp_path / "t.yaml", srv, price_per_1m_completion=1e6, max_cost_usd=100.0)
        cmd = ["synth", "run", "r3_recommend", "-w", str(real_ws.root), "--teacher", t, "--no-progress",
               "-O", "min_history=2", "--mode", "hint"]
        assert recot(*cmd) == 5
        err = capsys.readouterr().err
        assert "error: teacher openai:fake-reasoner: budget max_cost_usd=100.0 reached" in err
        sent = len(srv.bodies)
        assert recot(*cmd) in (0, 5)                                 # the next slice (or the rest) of the run
        assert len(srv.bodies) > sent
        digests = [e["messages_sha"] for e in srv.log]
        assert len(digests) == len(set(digests))                     # nothing paid for twice


def test_run_summary_counts_errors_by_kind(real_ws):
    from synth.tasks.run import summarize

    outcome = {"u1": "truncated", "u2": "truncated", "u3": "no tags, no marker, no SID"}

    def script(body, attempt):
        return outcome.get(who(body), f"<think>fine</think>\n{_sid('m1')} Heat (1995)")

    with FaultServer("scripted", script=script) as srv:
        dv = run_task(real_ws, "r3_recommend", teacher=teacher(srv),
                      options={"mode": "hint", "min_history": 2, "cross_domain": "off"})
    s = summarize(dv)
    assert s["errors_by_kind"] == {"truncated": 2, "parse": 1} and s["errors"] == 3
