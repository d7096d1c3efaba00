"""The cognition skeleton (synth/tasks/skeleton.py) on hand-built histories: interest points (grouping by shared
categories and SID prefixes, share, recency), evolution periods and shifts, the target's interest point; and,
through a real r3_recommend run, that no valid/test item ever reaches a prompt, a target or a skeleton."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from storage.cognition import SKELETON_VERSION, skeleton_of
from storage.datasets import read_dv
from storage.sid import format_sid
from synth.tasks.history import Event
from synth.tasks.run import run_task
from synth.tasks.skeleton import SkeletonParams, compute_skeleton, compute_skeletons, prefix_text

T0 = datetime(2020, 1, 1)


def ev(i: int, codes: tuple[int, ...], cats: list[str], day: int | None = None) -> Event:
    return Event(item_id=f"i{i}", sid=format_sid(codes), title=f"Item {i} (1995)",
                 ts=None if day is None else T0 + timedelta(days=day), domain="movies", categories=cats)


# Three family items (SID prefix a_1), three crime items (prefix a_7, two of them a_7/b_1), one western.
FAMILY = [ev(1, (1, 2, 3), ["Animation", "Children"], 0), ev(2, (1, 2, 4), ["Animation", "Comedy"], 1),
          ev(3, (1, 5, 6), ["Children"], 2)]
CRIME = [ev(4, (7, 1, 1), ["Crime", "Thriller"], 3), ev(5, (7, 1, 2), ["Crime"], 4),
         ev(6, (7, 3, 3), ["Crime", "Mystery"], 5)]
WESTERN = ev(7, (9, 9, 9), ["Western"], 6)
HISTORY = FAMILY + CRIME + [WESTERN]


def test_interest_points_group_items_by_shared_category_or_sid_prefix():
    sk = compute_skeleton(HISTORY)
    assert sk["version"] == SKELETON_VERSION
    assert [p["sid"] for p in sk["perception"]] == [e.sid for e in HISTORY]                 # chronological
    assert sk["perception"][0] == {"sid": FAMILY[0].sid, "title": "Item 1 (1995)",
                                   "categories": ["Animation", "Children"], "date": "2020-01-01"}
    p1, p2 = sk["interest_points"]
    # crime: the category Crime (3 items) ties with the prefix a_7 (3 items): the category names the point
    assert p1["id"] == 1 and p1["label"] == "Crime" and p1["sids"] == [e.sid for e in CRIME]
    assert p1["categories"] == ["Crime"] and p1["sid_prefix"] == "<|sid_begin|><s_a_7>"
    assert p1["count"] == 3 and p1["share"] == pytest.approx(3 / 7, abs=1e-4)
    # family: no category covers all three, the SID prefix a_1 does; its label names the majority categories
    assert p2["id"] == 2 and p2["sids"] == [e.sid for e in FAMILY]
    assert p2["categories"] == ["Animation", "Children"] and p2["sid_prefix"] == "<|sid_begin|><s_a_1>"
    assert p2["label"] == "Animation & Children (SID prefix a_1)"
    # the western shares nothing with two or more items: in no point
    assert WESTERN.sid not in p1["sids"] + p2["sids"]
    # recency: periods are days 0-1 | 2-3 | 4-6, so the recent part (last period) holds items 5, 6 and 7
    assert (p1["recent_count"], p1["last_date"]) == (2, "2020-01-06")
    assert (p2["recent_count"], p2["last_date"]) == (0, "2020-01-03")


def test_points_are_numbered_by_size_and_a_larger_group_wins_an_item():
    drama = [ev(10 + i, (4, i, i), ["Drama"] + (["Romance"] if i < 2 else []), i) for i in range(4)]
    romance = [ev(20, (5, 0, 0), ["Romance"], 4), ev(21, (6, 0, 0), ["Romance"], 5)]
    sk = compute_skeleton(drama + romance)
    (d, r) = sk["interest_points"]
    # Drama (4 items) beats Romance (4 items counting the two romantic dramas) on the tie-break by name, takes
    # the romantic dramas, and Romance keeps its own two
    assert d["label"] == "Drama" and d["count"] == 4 and d["categories"] == ["Drama", "Romance"]
    assert r["label"] == "Romance" and r["sids"] == [e.sid for e in romance] and r["count"] == 2
    assert sum(p["share"] for p in sk["interest_points"]) == pytest.approx(1.0)


def test_evolution_periods_dominant_points_and_shifts():
    sk = compute_skeleton(HISTORY)
    ev_ = sk["evolution"]
    assert [(p["start"], p["end"], p["items"]) for p in ev_["periods"]] == [
        ("2020-01-01", "2020-01-02", 2), ("2020-01-03", "2020-01-04", 2), ("2020-01-05", "2020-01-07", 3)]
    # period 2 is one family item and one crime item: the tie goes to the lower id (1 = crime)
    assert [p["dominant"] for p in ev_["periods"]] == [2, 1, 1]
    assert ev_["shifts"] == [{"from": 2, "to": 1, "date": "2020-01-03"}]
    assert ev_["recent"] == 1 and ev_["long_term"] == 1


def test_long_term_and_recent_points_differ_when_an_old_interest_fades():
    old = [ev(30 + i, (2, 0, i), ["Documentary"], i) for i in range(5)]          # present in periods 1 and 2
    new = [ev(40 + i, (3, 0, i), ["Horror"], 5 + i) for i in range(4)]           # present in periods 2 and 3
    sk = compute_skeleton(old + new)
    e = sk["evolution"]
    labels = {p["id"]: p["label"] for p in sk["interest_points"]}
    assert labels[e["long_term"]] == "Documentary" and labels[e["recent"]] == "Horror"
    assert [labels[p["dominant"]] for p in e["periods"]] == ["Documentary", "Documentary", "Horror"]
    assert [(labels[s["from"]], labels[s["to"]]) for s in e["shifts"]] == [("Documentary", "Horror")]


def test_target_point_is_the_interest_the_target_serves_and_only_in_hint_mode():
    crime_target = ev(8, (7, 1, 9), ["Crime"], 7)
    family_target = ev(9, (1, 9, 9), ["Fantasy"], 7)         # no shared category, but the family SID prefix
    stranger = ev(10, (8, 8, 8), ["Musical"], 7)
    assert compute_skeleton(HISTORY, crime_target)["target_point"] == 1
    assert compute_skeleton(HISTORY, family_target)["target_point"] == 2
    assert compute_skeleton(HISTORY, stranger)["target_point"] is None
    assert compute_skeleton(HISTORY, None)["target_point"] is None                       # blind mode
    # the target never changes the rest of the skeleton
    a, b = compute_skeleton(HISTORY, crime_target), compute_skeleton(HISTORY, None)
    a.pop("target_point"), b.pop("target_point")
    assert a == b


def test_items_without_categories_group_by_sid_prefix_and_scattered_histories_have_no_points():
    bare = [ev(50 + i, (3, 4, i), [], i) for i in range(3)] + [ev(60, (5, 0, 0), [], 3)]
    sk = compute_skeleton(bare)
    (p,) = sk["interest_points"]
    assert p["label"] == "SID prefix a_3/b_4" and p["sid_prefix"] == "<|sid_begin|><s_a_3><s_b_4>"
    assert p["categories"] == [] and p["count"] == 3
    scattered = [ev(70 + i, (i, i, i), [f"Cat{i}"], None) for i in range(4)]   # no dates, nothing shared
    sk = compute_skeleton(scattered)
    assert sk["interest_points"] == [] and sk["target_point"] is None
    assert all(p["dominant"] is None and p["start"] is None for p in sk["evolution"]["periods"])
    assert sk["evolution"]["long_term"] is None and sk["evolution"]["shifts"] == []
    assert [x["date"] for x in sk["perception"]] == [None] * 4


def test_max_points_and_min_support_are_respected():
    hist = [ev(100 + i, (i % 6, 0, i), [f"G{i % 6}"], i) for i in range(12)]   # six pairs
    sk = compute_skeleton(hist, params=SkeletonParams(max_points=3))
    assert [p["count"] for p in sk["interest_points"]] == [2, 2, 2]
    # equal sizes: the most recent group first
    assert sk["interest_points"][0]["sids"][-1] == hist[-1].sid
    assert compute_skeleton(hist, params=SkeletonParams(min_support=3))["interest_points"] == []


def test_one_batch_over_many_users_equals_one_user_at_a_time_and_is_deterministic():
    hists = [HISTORY, FAMILY + [WESTERN], CRIME, list(reversed(HISTORY)), []]
    targets = [ev(8, (7, 1, 9), ["Crime"], 7), None, ev(9, (1, 9, 9), [], 7), None, None]
    batch = compute_skeletons(hists, targets)
    assert batch == [compute_skeleton(h, t) for h, t in zip(hists, targets)]
    assert compute_skeletons(hists[::-1], targets[::-1]) == batch[::-1]
    assert batch[-1]["perception"] == [] and batch[-1]["interest_points"] == []


def test_prefix_text_has_no_sid_tokens():
    assert prefix_text("<|sid_begin|><s_a_3><s_b_40>") == "a_3/b_40"
    assert prefix_text(None) == ""


# ------------------------------------------------------------------------------- through a real task run
MOVIES = {  # item: (categories, SID codes); prefixes follow the genres, as RQ-KMeans SIDs roughly do
    **{f"m{i}": (["Animation", "Children"], (1, i % 3, i)) for i in range(1, 6)},
    **{f"m{i}": (["Crime", "Thriller"], (2, i % 3, i)) for i in range(6, 11)},
    **{f"m{i}": ([g], (3 + i % 4, 0, i)) for i, g in zip(range(11, 17), ["Drama", "Comedy", "Western", "Musical",
                                                                          "Horror", "War"])},
}
USERS = {   # the last two items of each user are its valid and test items
    "u1": ["m1", "m2", "m3", "m6", "m7", "m11", "m8", "m9", "m10"],
    "u2": ["m6", "m12", "m7", "m13", "m1", "m2", "m4", "m5", "m3"],
    "u3": ["m11", "m12", "m13", "m14", "m15", "m16", "m1"],
    "u4": ["m1", "m2"],
}


def sid_of(item: str) -> str:
    return format_sid(MOVIES[item][1])


def title_of(item: str) -> str:
    return f"Film {item[1:]} (19{80 + int(item[1:])})"


def build_catalog(ws) -> None:
    """Items, interactions, chronological splits (last = test, second to last = valid) and one SID version."""
    items = [(i, title_of(i), None, cats, None, "movies") for i, (cats, _) in MOVIES.items()]
    inter, splits = [], []
    for u, seq in USERS.items():
        for pos, it in enumerate(seq):
            ts = T0 + timedelta(days=3 * pos, hours=int(u[1:]))
            split = "test" if pos == len(seq) - 1 else "valid" if pos == len(seq) - 2 else "train"
            inter.append((u, it, ts, 4.0, "movies"))
            splits.append((u, it, ts, pos, split, "movies"))
    with ws.transaction() as con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", items)
        con.executemany("INSERT INTO interactions VALUES (?, ?, ?, ?, ?)", inter)
        con.executemany("INSERT INTO splits VALUES (?, ?, ?, ?, ?, ?)", splits)
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [len(items)])
        for i, (_, codes) in MOVIES.items():
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [i, list(codes), format_sid(codes)])


@pytest.fixture
def movies_ws(tmp_ws):
    build_catalog(tmp_ws)
    return tmp_ws


def train_history_and_target(user: str) -> tuple[list[str], str]:
    train = USERS[user][:-2]
    return train[:-1], train[-1]


def test_no_valid_or_test_item_reaches_a_prompt_a_target_or_a_skeleton(movies_ws):
    from fakes.fault_server import FaultServer

    from synth.teacher.config import TeacherConfig

    bodies: list[dict] = []

    def answer(body, attempt):
        bodies.append(body)
        sids = re.findall(r"<\|sid_begin\|>.*?<\|sid_end\|>", body["messages"][-1]["content"])
        return (f"<think>\nPerception: {sids[0]} is the first item.\nInterest points: (1) one interest.\n"
                f"Evolution: it stays.\n</think>\nAnswer: {sids[0]} X")

    with FaultServer("scripted", script=answer) as srv:
        cfg = TeacherConfig(backend="openai", model="scripted", base_url=srv.base_url,
                            api_key_env="RECOT_TEST_NO_KEY", max_retries=0, timeout_s=10)
        for mode in ("hint", "blind"):
            dv = run_task(movies_ws, "r3_recommend", teacher=cfg, dataset=f"cot_{mode}",
                          options={"mode": mode, "min_history": 2})
            rows = read_dv(dv).to_pylist()
            assert {r["user_id"] for r in rows} == {"u1", "u2", "u3"}     # u4 has no train history
            for r in rows:
                hist, target = train_history_and_target(r["user_id"])
                heldout = USERS[r["user_id"]][-2:]
                assert r["history_item_ids"] == hist and r["target_item_ids"] == [target]
                sk = skeleton_of(r["extra"])
                assert [p["sid"] for p in sk["perception"]] == [sid_of(i) for i in hist]
                assert {s for p in sk["interest_points"] for s in p["sids"]} <= {sid_of(i) for i in hist}
                stored = json.dumps(r, default=str)
                for it in heldout:
                    assert sid_of(it) not in stored and title_of(it) not in stored
                student = r["messages"][0]["content"]
                assert sid_of(target) not in student and title_of(target) not in student
                if mode == "blind":
                    assert sk["target_point"] is None
        assert len(bodies) == 6
        for body in bodies:
            sent = json.dumps(body)
            user = next(u for u in USERS if all(sid_of(i) in sent for i in train_history_and_target(u)[0]))
            for it in USERS[user][-2:]:                                   # valid and test items: never sent
                assert sid_of(it) not in sent and title_of(it) not in sent
