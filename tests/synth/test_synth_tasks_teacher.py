"""Teacher tasks against a real OpenAI-compatible HTTP server in scripted mode (tests/fakes/fault_server.py):
what the teacher is sent (history, hint vs blind), what is stored (never the target in the student turn),
parsing of well-formed / malformed / partial answers, engine errors as rows, resume, several teachers."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import duckdb
import pytest
from fakes.fault_server import FaultServer

from storage.datasets import read_dv
from storage.errors import ConfigError, NotFound
from storage.sid import format_sid
from synth.tasks.run import run_task
from synth.teacher.config import TeacherConfig

# A tiny two-domain catalog: 12 movies, 6 books; 5 users. Item i has SID (i % 4, i % 7, i).
MOVIE_CATS = ["Drama", "Comedy", "Action", "Drama", "Romance", "Comedy", "Action", "Drama", "Sci-Fi", "Comedy",
              "Drama", "Horror"]
USERS = {
    "u1": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
    "u2": ["m3", "m8", "m9", "m10", "m11", "m12"],
    "u3": ["m2", "m4", "m6", "m8", "m10"],
    "u4": ["b1", "b2", "m1", "b3", "m5", "b4", "m9", "m11", "m12"],   # both domains (cross-domain prompts)
    "u5": ["m12", "m1"],                                           # too short: no CoT prompt
}


def _sid(item_id: str) -> str:
    i = int(item_id[1:]) + (100 if item_id[0] == "b" else 0)
    return format_sid([i % 4, i % 7, i])


def build_tiny(ws) -> None:
    items = [(f"m{i}", f"Movie {i} (199{i % 10})", None, [MOVIE_CATS[i - 1]], json.dumps({"year": 1990 + i}), "movies")
             for i in range(1, 13)]
    items += [(f"b{i}", f"Book {i}", f"A book about topic {i}.", ["Fiction" if i % 2 else "History"], None, "books")
              for i in range(1, 7)]
    t0 = datetime(2020, 1, 1)
    inter, splits = [], []
    for u, seq in USERS.items():
        for pos, it in enumerate(seq):
            ts = t0 + timedelta(days=pos, hours=int(u[1:]))
            dom = "books" if it.startswith("b") else "movies"
            split = "test" if pos == len(seq) - 1 else "valid" if pos == len(seq) - 2 else "train"
            inter.append((u, it, ts, 4.0, dom))
            splits.append((u, it, ts, pos, split, dom))
    with ws.transaction() as con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", items)
        con.executemany("INSERT INTO interactions VALUES (?, ?, ?, ?, ?)", inter)
        con.executemany("INSERT INTO splits VALUES (?, ?, ?, ?, ?, ?)", splits)
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [len(items)])
        for it in items:
            sid = _sid(it[0])
            codes = [int(x) for x in re.findall(r"_(\d+)>", sid)]
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [it[0], codes, sid])


def train_target(user: str) -> tuple[list[str], str]:
    """(history, target) under target_split=train: target = last train item."""
    seq = USERS[user]
    train = seq[:-2]
    return train[:-1], train[-1]


def heldout(user: str) -> list[str]:
    return USERS[user][-2:]


@pytest.fixture
def tiny_ws(tmp_ws):
    build_tiny(tmp_ws)
    return tmp_ws


class Recorder:
    """A scripted teacher: answers via `answer(user_text)` and records every request body it saw."""

    def __init__(self, answer):
        self.answer = answer
        self.bodies: list[dict] = []

    def __call__(self, body, attempt):
        self.bodies.append(body)
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        return self.answer(user)


def teacher(srv: FaultServer, model: str = "scripted") -> TeacherConfig:
    return TeacherConfig(backend="openai", model=model, base_url=srv.base_url, api_key_env="RECOT_TEST_NO_KEY",
                         max_retries=1, backoff_base_s=0.01, timeout_s=10)


def good_answer(user_text: str) -> str:
    sids = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", user_text)
    return f"<think>The user likes these movies; the next one continues the pattern.</think>\nAnswer: {sids[0]} Movie"


def _sid_lines(body) -> list[str]:
    return [ln for m in body["messages"] for ln in m["content"].splitlines() if ln.startswith("<|sid_begin|>")]


def rows_of(dv) -> list[dict]:
    return read_dv(dv).to_pylist()


def test_blind_prompts_show_the_train_history_and_never_the_target(tiny_ws):
    rec = Recorder(good_answer)
    with FaultServer("scripted", script=rec) as srv:
        dv = run_task(tiny_ws, "r3_recommend", teacher=teacher(srv),
                      options={"mode": "blind", "cross_domain": "off", "min_history": 2})
    rows = rows_of(dv)
    by_user = {r["user_id"]: r for r in rows}
    assert set(by_user) == {"u1", "u2", "u3", "u4"}          # u5 has no train history before its target
    assert len(rec.bodies) == 4
    for u, r in by_user.items():
        hist, target = train_target(u)
        if u == "u4":                                        # single-domain prompt: movies before the target
            hist = [i for i in hist if i.startswith("m")]
        assert r["history_item_ids"] == hist and r["target_item_ids"] == [target]
        sent_by_history = {tuple(ln.split(" ", 1)[0] for ln in _sid_lines(b)): b for b in rec.bodies}
        body = sent_by_history[tuple(_sid(i) for i in hist)]
        sent = "\n".join(m["content"] for m in body["messages"])
        expected = [f"{_sid(i)} Movie {i[1:]} (199{int(i[1:]) % 10}) (2020-01-{USERS[u].index(i) + 1:02d})"
                    for i in hist]
        assert _sid_lines(body) == expected
        assert _sid(target) not in sent and f"Movie {target[1:]} " not in sent
        stored = "\n".join(m["content"] for m in r["messages"])
        for leaked in [target] + heldout(u):                 # no target, valid or test item anywhere
            assert _sid(leaked) not in stored and _sid(leaked) not in sent
        assert r["mode"] == "blind" and r["error"] is None and r["teacher"] == "openai:scripted"
        assert r["answer_sids"] == [_sid(hist[0])] and r["reasoning"].startswith("The user likes")


def test_hint_mode_sends_the_target_to_the_teacher_only(tiny_ws):
    rec = Recorder(good_answer)
    with FaultServer("scripted", script=rec) as srv:
        dv = run_task(tiny_ws, "r3_recommend", teacher=teacher(srv), options={"mode": "hint", "users": 2})
    rows = rows_of(dv)
    assert len(rows) == 2 and len(rec.bodies) == 2
    for r in rows:
        target_sid = r["target_sids"][0]
        body = next(b for b in rec.bodies if r["messages"][0]["content"].split("\nWhich")[0].split("\n", 1)[1]
                    in b["messages"][-1]["content"])
        teacher_text = "\n".join(m["content"] for m in body["messages"])
        assert target_sid in teacher_text                      # the teacher sees the held-out target
        assert target_sid not in r["messages"][0]["content"]   # the student turn never does
        assert r["target_item_ids"][0] not in heldout(r["user_id"])
        assert r["mode"] == "hint"


def test_parser_keeps_malformed_partial_and_failed_answers_as_error_rows(tiny_ws):
    answers = {  # keyed by the second history SID of each user (u1: m2, u2: m8, u3: m4, u4: m5)
        _sid("m2"): "<think>Likes dramas and comedies.</think>\nAnswer: " + _sid("m9") + " Movie 9",
        _sid("m8"): "<think>The user seems to like action and then it goes on and on",   # partial
        _sid("m4"): "I would recommend a nice movie.",                                    # malformed: no tags
        _sid("m5"): "400",                                                                # engine error
    }

    def answer(user_text):
        second = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", user_text)[1]
        return answers[second]

    with FaultServer("scripted", script=Recorder(answer)) as srv:
        dv = run_task(tiny_ws, "r3_recommend", teacher=teacher(srv),
                      options={"cross_domain": "off", "min_history": 2, "think": "both"})
    rows = rows_of(dv)
    by = {}
    for r in rows:
        by.setdefault(r["user_id"], []).append(r)
    ok = by["u1"]
    assert len(ok) == 2 and {r["think"] for r in ok} == {True, False}
    t = next(r for r in ok if r["think"])
    nt = next(r for r in ok if not r["think"])
    assert t["error"] is None and t["answer_sids"] == [_sid("m9")] and t["reasoning"] == "Likes dramas and comedies."
    assert t["messages"][0]["content"].endswith(" /think")
    assert t["messages"][1]["content"] == f"<think>\nLikes dramas and comedies.\n</think>\n\n{_sid('m9')} Movie 9"
    assert nt["messages"][0]["content"].endswith(" /no_think") and nt["reasoning"] is None
    assert nt["messages"][1]["content"] == f"<think>\n\n</think>\n\n{_sid('m9')} Movie 9"
    assert t["prompt_id"] == nt["prompt_id"] and t["sample_id"] != nt["sample_id"]
    assert all("unterminated <think>" in r["error"] for r in by["u2"])
    assert all(r["reasoning"] is None or r["reasoning"].startswith("The user seems") for r in by["u2"])
    assert all(r["error"] == "no <think> block and no 'Answer:' line" for r in by["u3"])
    assert json.loads(by["u3"][0]["extra"])["raw"] == "I would recommend a nice movie."
    failed = by["u4"]
    assert len(failed) == 1 and failed[0]["error"].startswith("teacher error (")
    assert failed[0]["messages"][-1]["role"] == "user"       # nothing invented for the assistant


def test_rerun_gives_the_same_sample_ids_and_sends_no_request(tiny_ws):
    with FaultServer("scripted", script=Recorder(good_answer)) as srv:
        cfg = teacher(srv)
        a = run_task(tiny_ws, "r3_recommend", teacher=cfg, options={"n": 2, "min_history": 2})
        sent = len(srv.log)
        b = run_task(tiny_ws, "r3_recommend", teacher=cfg, options={"n": 2, "min_history": 2})
        assert len(srv.log) == sent > 0                     # the second run was served by the cache
    ids_a = sorted(r["sample_id"] for r in rows_of(a))
    ids_b = sorted(r["sample_id"] for r in rows_of(b))
    assert ids_a == ids_b and len(set(ids_a)) == len(ids_a)
    assert b.ref == a.ref             # the same rows: an identical re-run writes no new version ("unchanged")
    per_prompt = {}
    for r in rows_of(a):
        per_prompt.setdefault(r["prompt_id"], set()).add(json.loads(r["extra"])["choice"])
    assert all(v == {0, 1} for v in per_prompt.values())     # n=2 samples grouped by prompt_id


def test_two_teachers_answer_the_same_prompts_with_attribution(tiny_ws):
    with FaultServer("scripted", script=Recorder(good_answer)) as s1, \
            FaultServer("scripted", script=Recorder(lambda u: "<think>x</think> Answer: none")) as s2:
        dv = run_task(tiny_ws, "r3_recommend", teacher=[teacher(s1, "alpha"), teacher(s2, "beta")],
                      options={"users": 2})
    rows = rows_of(dv)
    assert {r["teacher"] for r in rows} == {"openai:alpha", "openai:beta"}
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    assert len(by_prompt) == 2 and all(len(v) == 2 for v in by_prompt.values())
    beta = [r for r in rows if r["teacher"] == "openai:beta"]
    assert all(r["error"] == "no SID in the answer" for r in beta)
    assert dv.manifest["synth"]["teachers"] == ["openai:alpha", "openai:beta"]


def test_cross_domain_prompts_use_only_the_other_domain(tiny_ws):
    with FaultServer("scripted", script=Recorder(good_answer)) as srv:
        dv = run_task(tiny_ws, "r3_recommend", teacher=teacher(srv), options={"cross_domain": "only",
                                                                               "min_history": 2})
    rows = rows_of(dv)
    assert [r["user_id"] for r in rows] == ["u4"]
    r = rows[0]
    hist, target = train_target("u4")
    assert target == "m9" and r["history_item_ids"] == [i for i in hist if i.startswith("b")]
    assert json.loads(r["extra"])["cross_domain"] is True
    assert "must come from the movies domain" in r["messages"][0]["content"]


def test_r2_chain_is_parsed_and_bad_json_is_an_error(tiny_ws):
    chain = {"logic_chain": {"name": "drift", "events": [{"action": "likes drama", "logic": "3 dramas",
                                                          "date": "2020-01-02"}]}}

    def answer(u):
        return ("<think>Dramas first.</think>\nAnswer: " + json.dumps(chain)) if _sid("m1") in u \
            else "<think>hmm</think>\nAnswer: {\"logic_chain\": {\"name\": \"x\", \"events\": [}"

    with FaultServer("scripted", script=Recorder(answer)) as srv:
        # structured outputs off: this checks how the parser reports bad JSON (with them on, the engine turns
        # JSON-less answers into invalid_json errors: test_synth_teacher_real.py)
        cfg = teacher(srv).model_copy(update={"structured_outputs": False})
        dv = run_task(tiny_ws, "r2_evolve", teacher=cfg, options={"users": 2, "min_history": 2})
    rows = {r["user_id"]: r for r in rows_of(dv)}
    good = rows["u1"]
    assert good["error"] is None and json.loads(good["extra"])["logic_chain"] == chain["logic_chain"]
    ref = json.loads(good["reference"])["logic_chain"]                  # data-derived reference chain
    assert ref["events"] and all(set(e) == {"action", "logic", "date"} for e in ref["events"])
    bad = next(r for u, r in rows.items() if u != "u1")
    assert bad["error"].startswith("invalid R2 JSON: not JSON")


def test_r1_noise_never_uses_the_users_own_items(tiny_ws):
    with FaultServer("scripted", script=Recorder(good_answer)) as srv:
        dv = run_task(tiny_ws, "r1_derive", teacher=teacher(srv), options={"noise": 0.5, "min_history": 2})
    for r in rows_of(dv):
        ref = json.loads(r["reference"])
        assert ref["noise_item_ids"], r["user_id"]
        assert not set(ref["noise_item_ids"]) & set(USERS[r["user_id"]])
        assert set(ref["noise_item_ids"]) <= set(r["history_item_ids"])
        assert all(s in r["messages"][0]["content"] for s in ref["noise_sids"])


def test_narratives_and_grounding_from_teacher_descriptions(tiny_ws):
    def answer(u):
        m = re.search(r'"(.*?)"', u)
        return f"{m.group(1)} is a fine item." if m else "A user who likes movies."

    with FaultServer("scripted", script=Recorder(answer)) as srv:
        nar = run_task(tiny_ws, "align_item_narrative", teacher=teacher(srv), options={"limit": 5})
        seq = run_task(tiny_ws, "align_sequence_narrative", teacher=teacher(srv), options={"min_history": 2})
    nrows = rows_of(nar)
    assert len(nrows) == 5 and all(r["error"] is None and r["think"] is False for r in nrows)
    for r in nrows:
        assert r["messages"][0]["content"] == f"Describe the item {r['target_sids'][0]}."
    assert {r["user_id"] for r in rows_of(seq)} == {"u1", "u2", "u3", "u4"}
    # the catalog has book descriptions, so `auto` grounds those; an explicit source uses the narratives
    g_cat = run_task(tiny_ws, "r0_grounding")
    assert {r["target_item_ids"][0] for r in rows_of(g_cat)} == {f"b{i}" for i in range(1, 7)}
    g = run_task(tiny_ws, "r0_grounding", options={"source": nar.ref})
    assert g.parents == [{"name": nar.name, "version": nar.version}]
    grows = rows_of(g)
    assert len(grows) == 5
    for r in grows:
        assert r["answer_sids"] == r["target_sids"] and "is a fine item." in r["messages"][0]["content"]


def test_options_and_missing_sids_fail_clearly(tiny_ws, tmp_path):
    from storage.workspace import Workspace

    with pytest.raises(NotFound, match="recot sids build"):
        run_task(Workspace.open(tmp_path / "empty"), "align_item")
    with pytest.raises(ConfigError, match="no option 'bogus'"):
        run_task(tiny_ws, "align_item", options={"bogus": 1})
    with pytest.raises(ConfigError, match="mode must be hint or blind"):
        run_task(tiny_ws, "r3_recommend", options={"mode": "sideways"})
    with pytest.raises(NotFound, match="unknown synthesis task"):
        run_task(tiny_ws, "r9_nothing")
    runs = duckdb.connect(str(tiny_ws.db_path), read_only=True).execute(
        "SELECT status FROM runs WHERE kind = 'synth'").fetchall()
    assert runs and all(s[0] == "failed" for s in runs)


def test_target_split_truncation_and_language(tiny_ws):
    rec = Recorder(good_answer)
    with FaultServer("scripted", script=rec) as srv:
        valid = run_task(tiny_ws, "r3_recommend", teacher=teacher(srv),
                         options={"target_split": "valid", "cross_domain": "off", "users": 1, "seed": 3,
                                  "max_history": 2, "language": "fr"})
    (r,) = rows_of(valid)
    seq = USERS[r["user_id"]]
    assert r["target_item_ids"] == [seq[-2]]                        # the valid item, explicitly asked for
    assert r["history_item_ids"] == [i for i in seq[:-2] if i[0] == seq[-2][0]][-2:]   # most recent kept
    assert json.loads(r["extra"])["target_split"] == "valid"
    assert rec.bodies[0]["messages"][0]["content"].endswith("Write your reasoning and your answer in French.")
    with pytest.raises(ConfigError, match="target_split"):
        run_task(tiny_ws, "r3_recommend", options={"target_split": "future"})


def test_grounding_from_teacher_descriptions_is_marked_unverified_and_can_be_refused(tiny_ws):
    def answer(u):   # one description per item (a description shared by two items grounds neither)
        m = re.search(r'"(.*?)"', u)
        return f"{m.group(1) if m else u[-40:]}: an item with invented facts."

    with FaultServer("scripted", script=Recorder(answer)) as srv:
        nar = run_task(tiny_ws, "align_item_narrative", teacher=teacher(srv), options={"limit": 3})
    from_catalog = rows_of(run_task(tiny_ws, "r0_grounding", options={"source": "catalog"}))
    assert from_catalog and all(json.loads(r["extra"])["verified"] is True for r in from_catalog)
    from_teacher = rows_of(run_task(tiny_ws, "r0_grounding", options={"source": nar.ref}))
    assert len(from_teacher) == 3 and all(json.loads(r["extra"])["verified"] is False for r in from_teacher)
    with pytest.raises(ConfigError, match="allow_unverified=false"):
        run_task(tiny_ws, "r0_grounding", options={"source": nar.ref, "allow_unverified": "false"})


def test_title2sid_disambiguates_a_title_shared_by_two_items(tiny_ws):
    with tiny_ws.transaction() as con:   # a second catalog entry under an existing title (as MovieLens has 18)
        con.execute("INSERT INTO items VALUES ('b7', 'Book 1', 'Another printing.', ['Fiction'], NULL, 'books')")
        con.execute("INSERT INTO item_sids VALUES (1, 'b7', [9, 9, 9], ?)", [format_sid([9, 9, 9])])
    rows = [r for r in rows_of(run_task(tiny_ws, "align_item", options={"variants": "title2sid"}))]
    prompts = [r["messages"][0]["content"] for r in rows]
    assert len(prompts) == len(set(prompts))              # identical prompts never carry different answers
    named = {r["target_item_ids"][0]: p for r, p in zip(rows, prompts)}
    assert '"Book 1 [item b1]"' in named["b1"] and '"Book 1 [item b7]"' in named["b7"]
    assert '"Book 2"' in named["b2"]                        # unique titles unchanged


def test_domain_option_selects_prompts_by_target_domain_before_the_caps(tiny_ws):
    """`domains` (`recot synth run --domain`): history tasks pick users whose target is in the domain before the
    `users` cap, item tasks pick the domain's items before `limit`, SQL tasks filter before their limit."""
    with tiny_ws.transaction() as con:   # a books-only user: the only one whose train target is a book
        for pos, it in enumerate(["b1", "b2", "b3", "b5", "b6"]):
            ts = datetime(2021, 1, 1) + timedelta(days=pos)
            split = "test" if pos == 4 else "valid" if pos == 3 else "train"
            con.execute("INSERT INTO interactions VALUES ('u6', ?, ?, 4.0, 'books')", [it, ts])
            con.execute("INSERT INTO splits VALUES ('u6', ?, ?, ?, ?, 'books')", [it, ts, pos, split])
    with FaultServer("scripted", script=Recorder(good_answer)) as srv:
        books = rows_of(run_task(tiny_ws, "r3_recommend", teacher=teacher(srv),
                                 options={"domains": "books", "users": 1, "min_history": 2}))
        movies = rows_of(run_task(tiny_ws, "r3_recommend", teacher=teacher(srv),
                                  options={"domains": "movies", "min_history": 2}))
        understand = rows_of(run_task(tiny_ws, "r0_understand", teacher=teacher(srv),
                                      options={"domains": "books", "limit": 2}))
    assert [(r["user_id"], r["domain"], r["target_item_ids"]) for r in books] == [("u6", "books", ["b3"])]
    assert {r["domain"] for r in movies} == {"movies"}
    assert {r["user_id"] for r in movies} == {"u1", "u2", "u3", "u4"}   # u4's movie target, cross-domain too
    assert len(understand) == 2 and {r["domain"] for r in understand} == {"books"}
    aligned = rows_of(run_task(tiny_ws, "align_item", options={"domains": "books", "limit": 4}))
    assert len(aligned) == 4 and {r["domain"] for r in aligned} == {"books"}
    with pytest.raises(ConfigError, match=r"unknown domain\(s\) \['music'\].*\['books', 'movies'\]"):
        run_task(tiny_ws, "align_item", options={"domains": "books,music"})
    only = {r["sample_id"] for r in rows_of(run_task(tiny_ws, "align_item", options={"domains": "books"}))}
    every = rows_of(run_task(tiny_ws, "align_item"))
    assert only == {r["sample_id"] for r in every if r["domain"] == "books"} and len(only) < len(every)


def test_synth_cli_domain_flag_is_repeatable(tiny_ws):
    from typer.testing import CliRunner

    from storage.datasets import list_versions, read_version
    from ui.cli import app

    res = CliRunner().invoke(app, ["synth", "run", "align_item", "--domain", "books", "--domain", "movies",
                                   "--dataset", "both", "--no-progress", "-w", str(tiny_ws.root)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["synth", "run", "align_item", "--domain", "books", "--dataset", "books",
                                   "--no-progress", "-w", str(tiny_ws.root)])
    assert res.exit_code == 0, res.output
    both = read_version(tiny_ws, "both", list_versions(tiny_ws, "both")[-1].version).column("domain").to_pylist()
    only = read_version(tiny_ws, "books", 1).column("domain").to_pylist()
    assert set(both) == {"books", "movies"} and set(only) == {"books"} and 0 < len(only) < len(both)
