"""Three-level cognition traces: the level parser, `cognition_structure` (each malformed kind rejected with a
reason naming the level), `skeleton_agreement` (scores on hand-computed cases) and the default chain on a
well-formed skeleton-style corpus."""
from __future__ import annotations

import json

import pytest
from curation_samples import HALLUCINATED, TITLES, make_sample, reasoning_text, sid

from curation.chain import run_filters
from curation.config import load_chain
from storage.cognition import LEVELS, PREAMBLE, skeleton_of, split_levels
from storage.errors import ConfigError
from storage.records import samples_from_pylist

V2 = "r3_recommend@v2"


def levels_text(p: str = "I see {a} and {b}.", i: str = "(1) crime comedies.", e: str = "It shifts to (1).",
                **kw) -> str:
    return (f"Perception: {p.format(a=sid('2'), b=sid('3'))}\n\nInterest points: {i}\n\nEvolution: {e}")


def v2_sample(key: str, reasoning: str, *, answer_item: str = "1", skeleton: dict | None = None,
              template: str = V2, think: bool = True, **kw) -> dict:
    completion = (f"<think>{reasoning}</think>\nAnswer: {sid(answer_item)} {TITLES[answer_item]}" if think
                  else f"Answer: {sid(answer_item)} {TITLES[answer_item]}")
    row = make_sample(key, completion, think=think, target=kw.pop("target", answer_item), **kw)
    row["template_version"] = template
    row["teacher"] = "skeleton:v1"
    if skeleton is not None:
        row["extra"] = json.dumps({"skeleton": skeleton})
    return row


def run(ws, rows: list[dict], spec: dict) -> dict[str, tuple[bool, str | None, float | None]]:
    cfg, src = load_chain({"name": "t", "filters": [spec]})
    _, verdicts, _ = run_filters(samples_from_pylist(rows), cfg.build(src), ws=ws)
    return {r["sample_id"]: (r["keep"], r["reason"], r["score"]) for r in verdicts.to_pylist()}


# ------------------------------------------------------------------------------------------ split_levels
def test_split_levels_returns_each_level_without_its_label():
    text = "Let me look.\nPerception: a\nmore a\n\nInterest points: b\n  Evolution: c\nso (1)."
    assert split_levels(text) == {PREAMBLE: "Let me look.", "Perception": "a\nmore a", "Interest points": "b",
                                  "Evolution": "c\nso (1)."}
    assert LEVELS == ("Perception", "Interest points", "Evolution")


@pytest.mark.parametrize("text, reason", [
    (None, "missing level: Perception, Interest points, Evolution"),
    ("Perception: a\nInterest points: b", "missing level: Evolution"),
    ("Perception: a\nInterest Points: b\nEvolution: c",
     "missing level: Interest points (found 'Interest Points:': labels are case-sensitive)"),
    ("**Perception:** a\nInterest points: b\nEvolution: c",
     "missing level: Perception (found '**Perception:**': expected exactly 'Perception:' at the start of a line)"),
    ("Perception: a. Interest points: b\nEvolution: c",
     "missing level: Interest points (found 'Interest points:': not at the start of a line)"),
    ("Interest points: b\nPerception: a\nEvolution: c",
     "levels out of order: Interest points before Perception (expected Perception → Interest points → Evolution)"),
    ("Perception: a\nEvolution: c\nInterest points: b",
     "levels out of order: Evolution before Interest points (expected Perception → Interest points → Evolution)"),
    ("Perception: a\nInterest points:\n  \nEvolution: c", "empty level: Interest points"),
    ("Perception: a\nInterest points: b\nEvolution:   ", "empty level: Evolution"),
    ("Perception: a\nInterest points: b\nEvolution: c\nPerception: d", "repeated level: Perception (2 times)"),
])
def test_split_levels_names_what_is_wrong(text, reason):
    assert split_levels(text) == reason


def test_skeleton_of_reads_only_a_versioned_skeleton():
    assert skeleton_of(json.dumps({"skeleton": {"version": 1, "perception": []}})) == {"version": 1,
                                                                                       "perception": []}
    assert skeleton_of(json.dumps({"skeleton": {"version": 99}})) is None
    assert skeleton_of('{"skeleton": not json') is None and skeleton_of(None) is None
    assert skeleton_of(json.dumps({"relation": "x"})) is None


# ------------------------------------------------------------------------------------ cognition_structure
def structure_rows() -> list[dict]:
    return [
        v2_sample("ok", levels_text()),
        v2_sample("ok_v3_french", levels_text(), template="r3_recommend@v3.fr"),
        v2_sample("missing", "Perception: a\n\nInterest points: b"),
        v2_sample("order", "Perception: a\n\nEvolution: c\n\nInterest points: b"),
        v2_sample("empty", "Perception: a\n\nInterest points:\n\nEvolution: c"),
        v2_sample("free_form", reasoning_text(3)),
        v2_sample("v1_free_form", reasoning_text(4), template="r3_recommend@v1"),      # not asked for levels
        v2_sample("no_think", "", think=False),                                       # nothing to check
        v2_sample("other_task", reasoning_text(5), template="r2_evolve@v2"),
    ]


def test_cognition_structure_rejects_each_malformed_kind_with_the_level(cat_ws):
    v = run(cat_ws, structure_rows(), {"type": "cognition_structure"})
    assert {k for k, (keep, _, _) in v.items() if not keep} == {"missing", "order", "empty", "free_form"}
    assert v["missing"][1] == "missing level: Evolution"
    assert v["order"][1].startswith("levels out of order: Evolution before Interest points")
    assert v["empty"][1] == "empty level: Interest points"
    assert v["free_form"][1] == "missing level: Perception, Interest points, Evolution"
    assert all(r is None and s is None for k, (_, r, s) in v.items() if k.startswith(("ok", "v1", "no_", "oth")))


def test_cognition_structure_templates_param(cat_ws):
    v = run(cat_ws, structure_rows(), {"type": "cognition_structure", "params": {"templates": ["r3_recommend@v1"]}})
    assert not v["v1_free_form"][0] and v["v1_free_form"][1].startswith("missing level")
    cfg, src = load_chain({"name": "t", "filters": [{"type": "cognition_structure",
                                                     "params": {"templates": ["r3_recommend"]}}]})
    with pytest.raises(ConfigError, match="'r3_recommend' is not a template ref 'name@vN'"):
        cfg.build(src)  # a bad chain fails before any work


# ------------------------------------------------------------------------------------- skeleton_agreement
def skeleton(points: list[dict] | None = None) -> dict:
    """User history 2, 3, 4, 5. Points: (1) spy action thrillers = items 2, 5; (2) crime comedies = items 3, 4,
    under prefix a3 (item 3's first code; items 7 and 11 share it); (3) family animation = no member cited."""
    if points is None:
        points = [
            {"id": 1, "label": "spy action thrillers", "sids": [sid("2"), sid("5")], "sid_prefix": None},
            {"id": 2, "label": "crime comedies", "sids": [sid("3"), sid("4")], "sid_prefix": "<|sid_begin|><s_a_3>"},
            {"id": 3, "label": "family animation", "sids": [sid("12")], "sid_prefix": None},
        ]
    for p in points:
        p.update({"categories": [], "count": len(p["sids"]), "share": 0.25, "recent_count": 0, "last_date": None})
    return {"version": 1,
            "perception": [{"sid": sid(i), "title": TITLES[i], "categories": [], "date": None} for i in "2345"],
            "interest_points": points,
            "evolution": {"periods": [], "long_term": 1, "recent": 2, "shifts": []}, "target_point": 2}


def agreement_rows() -> list[dict]:
    sk = skeleton()
    return [
        # cited {2, 3, HALLUCINATED}: 2/3 grounded; points (1) by member 2, (2) by member 3 → 2/3
        v2_sample("a", levels_text(p=f"{sid('2')} and {sid('3')}, then {HALLUCINATED}."), skeleton=sk),
        # cited {7, 1}: 7 is no history item, 1 is the answer → 1/2; (2) by prefix a3 (item 7),
        # (1) by label words "action" + "thriller(s)" (2 of 3) → 2/3
        v2_sample("b", levels_text(p=f"{sid('7')} is an action thriller", e=f"so {sid('1')}."), skeleton=sk),
        # no SID: 0; only (3) by its label words → 1/3
        v2_sample("c", levels_text(p="family animation films", i="none", e="none"), skeleton=sk),
        v2_sample("no_skeleton", levels_text()),
        v2_sample("no_think", "", think=False, skeleton=sk),
        # a skeleton without interest points: the score is the SID share (2 of 2 in the history)
        v2_sample("no_points", levels_text(), skeleton=skeleton(points=[])),
    ]


def test_skeleton_agreement_scores_hand_computed_cases(cat_ws):
    v = run(cat_ws, agreement_rows(), {"type": "skeleton_agreement", "params": {"min_score": 0.5}})
    assert v["a"][2] == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)
    assert v["b"][2] == pytest.approx(0.5 * 1 / 2 + 0.5 * 2 / 3)
    assert v["c"][2] == pytest.approx(0.5 * 0 + 0.5 * 1 / 3)
    assert v["no_points"][2] == pytest.approx(1.0)
    assert v["a"][0] and v["b"][0] and v["no_points"][0]
    assert v["no_skeleton"] == (True, None, None) and v["no_think"] == (True, None, None)
    assert not v["c"][0]
    assert v["c"][1] == ("low skeleton agreement: score 0.17 < 0.5 (the reasoning cites no SID; interest points "
                         "covered 1/3; not covered: (1) spy action thrillers, (2) crime comedies)")


def test_skeleton_agreement_weight_and_max_points(cat_ws):
    v = run(cat_ws, agreement_rows(), {"type": "skeleton_agreement",
                                       "params": {"min_score": 0.7, "sid_weight": 1.0, "max_points": 1}})
    assert v["a"][2] == pytest.approx(2 / 3) and not v["a"][0]
    assert v["a"][1] == ("low skeleton agreement: score 0.67 < 0.7 (cited SIDs in history or answer 2/3; "
                         "interest points covered 1/1)")
    v = run(cat_ws, agreement_rows(), {"type": "skeleton_agreement", "params": {"sid_weight": 0.0, "max_points": 1}})
    assert v["c"][2] == pytest.approx(0.0)   # "family animation" is point 3, outside the first one
    assert v["b"][2] == pytest.approx(1.0)   # point 1 covered by its label words


# ---------------------------------------------------------------------------------------- default chain
def test_default_chain_keeps_well_formed_three_level_traces_and_names_defects(cat_ws):
    """A skeleton-teacher-like corpus (hint mode, answer = target, levels that cite history SIDs and name the
    interest points) passes the whole default chain; malformed siblings are rejected by the new filters."""
    sk = skeleton()
    rows = []
    for k in range(10):
        p = (f"{sid('2')} and {sid('5')} are spy action thrillers; {sid('3')} and {sid('4')} are crime comedies. "
             f"{reasoning_text(100 + k, 3)}")
        i = f"(1) spy action thrillers, 2 of 4 items; (2) crime comedies, 2 of 4. {reasoning_text(200 + k, 2)}"
        e = f"The recent items are crime comedies, so (2) leads. {reasoning_text(300 + k, 2)}"
        rows.append(v2_sample(f"good{k}", levels_text(p=p, i=i, e=e), skeleton=sk, mode="hint"))
    rows.append(v2_sample("bad_order", levels_text(p=p, i=i, e=e).replace("Perception:", "Evolution:", 1)
                          .replace("\n\nEvolution:", "\n\nPerception:", 1), skeleton=sk, mode="hint"))
    rows.append(v2_sample("bad_agreement", levels_text(p=reasoning_text(400, 3), i=reasoning_text(401, 2),
                                                       e=reasoning_text(402, 2)), skeleton=sk, mode="hint"))
    cfg, src = load_chain("default")
    out, verdicts, _ = run_filters(samples_from_pylist(rows), cfg.build(src), ws=cat_ws)
    kept = {r["sample_id"] for r in out.to_pylist() if r["keep"]}
    assert len(kept & {f"good{k}" for k in range(10)}) >= 9
    why = {r["sample_id"]: (r["rejected_by"], r["reject_reason"]) for r in out.to_pylist() if not r["keep"]}
    assert why["bad_order"][0] == "cognition_structure" and why["bad_order"][1].startswith("levels out of order")
    assert why["bad_agreement"][0] == "skeleton_agreement"
    assert why["bad_agreement"][1].startswith("low skeleton agreement: score ")
    assert "(the reasoning cites no SID; interest points covered" in why["bad_agreement"][1]


def test_point_coverage_rules():
    from curation.filters.cognition import _codes, content_words, point_covered
    from storage.sid import format_sid

    point = {"id": 4, "label": "SID prefix a_1/b_2", "sids": [format_sid((1, 2, 0))],
             "sid_prefix": "<|sid_begin|><s_a_1><s_b_2>"}

    def covered(text: str, cited: tuple = ()) -> bool:
        return point_covered(point, text, set(cited), [_codes(s) for s in cited], set(content_words(text)))

    assert not covered("Every item has a SID prefix; the user history is long.")  # generic words only
    assert covered("Items under a_1/b_2 dominate.")                                  # the prefix in prose
    assert not covered("Items under a_1/b_23 dominate.") and not covered("under x_a_1/b_2")
    assert covered("It cites", (format_sid((1, 2, 9)),))                             # a SID under the prefix
    assert not covered("It cites", (format_sid((1, 3, 0)),))
    assert covered("It cites", (format_sid((1, 2, 0)),))                             # a member SID
    crime = {"id": 1, "label": "Crime & Thriller", "sids": [], "sid_prefix": None}
    assert point_covered(crime, "", set(), [], set(content_words("tense thrillers")))  # 1 of 2 words, stemmed
    assert not point_covered(crime, "", set(), [], set(content_words("films and movies")))


def _movie_catalog(ws, n_users: int = 12) -> None:
    """40 movies with genres and genre-following SID prefixes; users with 8–14 chronological interactions from
    two or three favourite genres (last = test, second to last = valid)."""
    import random
    from datetime import datetime, timedelta

    from storage.sid import format_sid

    rng = random.Random(7)
    genres = ["Drama", "Comedy", "Action", "Thriller", "Romance", "Animation", "Crime", "War"]
    movies = {f"m{i}": rng.sample(genres, rng.choice([1, 2])) for i in range(1, 41)}
    with ws.transaction() as con:
        for i, cats in movies.items():
            codes = (genres.index(cats[0]), rng.randrange(3), int(i[1:]))
            con.execute("INSERT INTO items VALUES (?, ?, NULL, ?, NULL, 'movies')",
                        [i, f"Film {i[1:]} (19{50 + int(i[1:])})", cats])
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [i, list(codes), format_sid(codes)])
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [len(movies)])
        for u in range(n_users):
            favs = set(rng.sample(genres, rng.choice([2, 3])))
            seq = rng.sample([i for i, c in movies.items() if favs & set(c)], rng.randrange(8, 15))
            for pos, it in enumerate(seq):
                ts = datetime(2020, 1, 1) + timedelta(days=4 * pos + u)
                split = "test" if pos == len(seq) - 1 else "valid" if pos == len(seq) - 2 else "train"
                con.execute("INSERT INTO interactions VALUES (?, ?, ?, 4.0, 'movies')", [f"u{u}", it, ts])
                con.execute("INSERT INTO splits VALUES (?, ?, ?, ?, ?, 'movies')", [f"u{u}", it, ts, pos, split])


def test_skeleton_teacher_corpus_passes_the_default_chain(tmp_ws):
    """The real pipeline: r3_recommend v2 in hint mode with the skeleton teacher, then the default chain: at
    least 90% kept (issue 14), every kept trace three-level and fully grounded in its skeleton."""
    from curation.chain import run_chain
    from storage.datasets import read_dv
    from synth.tasks.run import run_task
    from synth.teacher.config import TeacherConfig

    _movie_catalog(tmp_ws)
    dv = run_task(tmp_ws, "r3_recommend", teacher=TeacherConfig(backend="skeleton", model="v1"),
                  dataset="cot_skeleton", options={"mode": "hint", "users": 12})
    rows = read_dv(run_chain(tmp_ws, dv.ref, "default")).to_pylist()
    assert len(rows) == 12 and {r["template_version"] for r in rows} == {"r3_recommend@v2"}
    kept = [r for r in rows if r["keep"]]
    assert len(kept) >= 0.9 * len(rows), [(r["rejected_by"], r["reject_reason"]) for r in rows if not r["keep"]]
    for r in kept:
        assert isinstance(split_levels(r["reasoning"]), dict)
        assert json.loads(r["scores"])["skeleton_agreement"] == pytest.approx(1.0)
