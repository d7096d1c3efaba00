"""The whole review loop on the real local Argilla stack: push a curated sample, an annotator user answers
through the REST API (submitted and discarded), pull into `reviews`, agreement figures checked against a
hand computation, and the override version."""
from __future__ import annotations

import json
import math

import httpx
import pytest

pytestmark = pytest.mark.argilla


def _kappa_by_hand(tp: int, fp: int, fn: int, tn: int) -> float:
    """Cohen's kappa of (source drop?) vs (human bad?) from the 2×2 table: (p_o − p_e) / (1 − p_e)."""
    n = tp + fp + fn + tn
    p_o = (tp + tn) / n
    src_drop, hum_bad = (tp + fp) / n, (tp + fn) / n
    p_e = src_drop * hum_bad + (1 - src_drop) * (1 - hum_bad)
    return (p_o - p_e) / (1 - p_e)


def test_push_shows_trace_with_suggestions_and_is_idempotent(curated):
    from curation.review.client import argilla_client, find_dataset
    from curation.review.push import display_text, push, select_samples
    from curation.review.stack import connect
    from storage.sid import format_sid

    ws, dv = curated
    res = push(ws, dv.ref, size=10, strategy="stratified", batch_size=4)
    assert (res.selected, res.already_there, res.sent, res.batches) == (10, 0, 10, 3)
    # stratified over level × task × keep: every stratum present in the data is represented
    ids = select_samples(ws, dv, 10, "stratified")
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 10
    strata = ws.query(f"SELECT DISTINCT level, task, keep FROM read_parquet('{dv.glob}')")
    picked = ws.query(f"SELECT DISTINCT level, task, keep FROM read_parquet('{dv.glob}') WHERE sample_id IN "
                      f"({','.join(repr(i) for i in ids)})")
    assert len(picked) == len(strata)

    with argilla_client(connect(ws)) as c:  # read back through the SDK, as an owner would
        ds = find_dataset(c, "recot", res.argilla_dataset)
        assert [q.name for q in ds.questions] == ["rating", "correct", "issues", "corrected_answer"]
        assert ds.distribution.min_submitted == 1
        recs = {r.id: r for r in ds.records(with_suggestions=True, with_responses=False)}
    assert set(recs) == set(ids)
    # sample s009 (if picked) or any record dropped by sid_validity: its trace and the filters' opinions
    dropped = [r for r in recs.values() if r.metadata.get("verdict_sid_validity") == "drop"]
    assert dropped, "stratified sample should include a sid_validity drop"
    r = dropped[0]
    i = int(r.id.rsplit(".s", 1)[1])
    k = i % 40
    sid = format_sid([k % 8, (k // 8) % 8, k % 3])
    fields = dict(r.fields)
    # markdown that renders to the text as written; SIDs are code spans (the UI would swallow <s_a_1> as a tag)
    assert fields["history"].startswith(display_text(f"1. Movie {k} ({1990 + k}) {sid}\n"))
    assert f"`{sid}`" in fields["history"]
    assert not any("\u2039" in v or "<b>" in v for v in fields.values())
    assert display_text("(not in the catalog)") in fields["answer"]  # the hallucinated SID is flagged for the annotator
    assert fields["target"].startswith(f"Movie {(i + 7) % 40} ")
    assert r.metadata["level"] == ("R1" if i % 2 == 0 else "R3")
    assert r.metadata["teacher"] in ("local:smollm2", "openai:gpt-x")
    sug = {s.question_name: s for s in r.suggestions}
    assert sug["correct"].value == "no" and "sid_validity" in sug["correct"].agent
    # the issue label comes from the filter class behind the label (sid_grounding → hallucinated_item)
    assert "hallucinated_item" in sug["issues"].value
    assert sug["rating"].agent == "llm_judge"
    assert sug["rating"].value == max(1, min(5, math.floor(1 + 4 * round(i / 23, 4) + 0.5)))

    # a second push with a larger size only sends what is missing
    res2 = push(ws, dv.ref, size=14, strategy="stratified", batch_size=4)
    assert res2.already_there + res2.sent == 14
    assert res2.sent == len(set(select_samples(ws, dv, 14, "stratified")) - set(ids))
    res3 = push(ws, dv.ref, size=14, strategy="stratified")
    assert (res3.sent, res3.already_there) == (0, 14)


def test_annotate_pull_report_override(curated, post_response):
    from curation.review.client import server_record_ids
    from curation.review.overrides import apply_reviews
    from curation.review.pull import pull
    from curation.review.push import push
    from curation.review.report import agreement
    from curation.review.stack import connect
    from curation.review.users import add_annotator
    from storage.datasets import read_dv

    ws, dv = curated
    S = lambda i: f"{dv.name}.s{i:03d}"  # noqa: E731
    push(ws, dv.ref, size=24, strategy="random", batch_size=12)  # all 24 samples
    alice, bob = add_annotator(ws, "alice"), add_annotator(ws, "bob")
    owner_key = connect(ws).api_key
    assert alice.api_key != owner_key and bob.api_key != owner_key
    assert add_annotator(ws, "alice").api_key == alice.api_key  # idempotent, same key

    conn = connect(ws)
    rid = server_record_ids(conn, "recot", f"{dv.name}-v{dv.version}")
    # the annotator's own key works for the annotator's own user, not as owner
    me = httpx.get(f"{conn.url}/api/v1/me", headers={"X-Argilla-Api-Key": alice.api_key}).json()
    assert (me["username"], me["role"]) == ("alice", "annotator")

    A = {  # alice's answers (sample index → values)
        0: {"rating": 1, "correct": "no", "issues": ["format"]},
        1: {"rating": 2, "correct": "no", "issues": ["hallucinated_item"]},
        2: {"rating": 3, "correct": "no", "issues": ["wrong_logic"]},
        3: {"rating": 4, "correct": "yes"},
        12: {"rating": 4, "correct": "yes"},
        13: {"rating": 2, "correct": "yes", "corrected_answer": "I recommend Movie 20"},
        14: {"rating": 5, "correct": "yes"},
    }
    for i, v in A.items():
        post_response(conn, rid[S(i)], alice.api_key, v)
    post_response(conn, rid[S(15)], alice.api_key, {"rating": 3, "correct": "yes"}, status="discarded")
    post_response(conn, rid[S(3)], bob.api_key, {"rating": 2, "correct": "no", "issues": ["other"]})
    post_response(conn, rid[S(15)], bob.api_key, {"rating": 4, "correct": "yes"})

    res = pull(ws, dv.ref)
    assert (res.seen, res.new, res.updated, res.unchanged) == (10, 10, 0, 0)
    rows = {(r[0], r[1]): r[2:] for r in ws.query(
        "SELECT sample_id, annotator, status, rating, correct, labels, corrected_answer, \"values\", dataset "
        "FROM reviews WHERE dataset = ?", [dv.ref])}
    assert len(rows) == 10
    assert rows[(S(15), "alice")][:3] == ("discarded", 3, "yes")
    assert rows[(S(0), "alice")][:4] == ("submitted", 1, "no", ["format"])
    assert rows[(S(13), "alice")][4] == "I recommend Movie 20"
    assert json.loads(rows[(S(3), "bob")][5]) == {"rating": 2, "correct": "no", "issues": ["other"]}

    # incremental: nothing changed → nothing written; one answer changed → one row updated
    assert (pull(ws, dv.ref).new, pull(ws, dv.ref).unchanged) == (0, 10)
    resp_id = next(r["id"] for r in httpx.get(f"{conn.url}/api/v1/records/{rid[S(14)]}", headers=conn.headers(),
                                                params={"include": ["responses"]}).json()["responses"])
    r = httpx.put(f"{conn.url}/api/v1/responses/{resp_id}", headers={"X-Argilla-Api-Key": alice.api_key},
                  json={"values": {"rating": {"value": 4}, "correct": {"value": "yes"}}, "status": "submitted"})
    assert r.status_code == 200, r.text
    again = pull(ws, dv.ref)
    assert (again.new, again.updated, again.unchanged) == (0, 1, 9)
    assert ws.query("SELECT rating FROM reviews WHERE sample_id = ? AND annotator = 'alice'", [S(14)]) == [(4,)]

    # agreement on the 8 reviewed samples {0,1,2,3,12,13,14,15}; human bad = {0,1,2,3 (tie), 13}
    rep = agreement(ws, dv.ref)
    assert (rep.reviewed, rep.human_bad, rep.annotators) == (8, 5, ["alice", "bob"])
    got = {r.name: r for r in rep.rows}
    expected = {  # (tp, fp, fn, tn) counted by hand from the fixture's filter rules
        "format": (1, 1, 4, 2),        # drops {0, 12}
        "sid_validity": (2, 0, 3, 3),  # drops {1, 13}
        "llm_judge": (4, 0, 1, 3),     # drops {0, 1, 2, 3} (score i/23 < 0.5)
        "leakage": (0, 0, 5, 3),       # keeps everything
        "curation": (5, 1, 0, 2),      # drops {0, 1, 2, 3, 12, 13}
    }
    for name, (tp, fp, fn, tn) in expected.items():
        g = got[name]
        assert (g.tp, g.fp, g.fn, g.tn) == (tp, fp, fn, tn), name
        assert g.precision == (tp / (tp + fp) if tp + fp else None)
        assert g.recall == pytest.approx(tp / (tp + fn))
        assert g.kappa == pytest.approx(_kappa_by_hand(tp, fp, fn, tn)), name
    assert got["llm_judge"].kappa == pytest.approx(0.75)
    assert got["format"].kappa == pytest.approx(-1 / 9)
    assert got["curation"].kappa == pytest.approx(5 / 7)
    assert got["llm_judge"].kind == "judge" and got["llm_judge"].rating_kappa is not None

    # override version: humans decide where they reviewed, filters elsewhere
    new = apply_reviews(ws, dv.ref)
    assert (new.name, new.version) == (dv.name, dv.version + 1)
    assert new.parents == [{"name": dv.name, "version": dv.version}]
    m = new.manifest["reviews"]
    assert m["annotators"] == ["alice", "bob"] and len(m["rows"]) == 9  # submitted rows only
    assert m["flipped_to_keep"] == [S(12)] and m["flipped_to_drop"] == []
    old = {r["sample_id"]: r for r in read_dv(dv).to_pylist()}
    rows = {r["sample_id"]: r for r in read_dv(new).to_pylist()}
    assert len(rows) == len(old) == 24
    assert rows[S(12)]["keep"] is True and rows[S(12)]["rejected_by"] is None
    assert rows[S(3)]["keep"] is False and rows[S(3)]["rejected_by"] == "human"
    assert "bob" in rows[S(3)]["reject_reason"] and "correct=no" in rows[S(3)]["reject_reason"]
    assert rows[S(13)]["rejected_by"] == "human" and "corrected answer" in rows[S(13)]["reject_reason"]
    assert json.loads(rows[S(14)]["scores"])["human_rating"] == 4.0
    for sid in set(old) - {S(i) for i in (0, 1, 2, 3, 12, 13, 14, 15)}:
        assert (rows[sid]["keep"], rows[sid]["rejected_by"]) == (old[sid]["keep"], old[sid]["rejected_by"])
    hv = ws.query("SELECT count(*), sum(CASE WHEN keep THEN 1 ELSE 0 END) FROM verdicts WHERE dataset = ? AND "
                  "version = ? AND filter = 'human'", [new.name, new.version])
    assert hv == [(8, 3)]


def test_discard_without_answers_is_pulled(curated):
    """A discard with nothing filled in (values null, or {}) is a response too: pull stores it as a
    discarded review with no values (the SDK's record objects would drop it, or fail on null)."""
    from curation.review.client import server_record_ids
    from curation.review.pull import pull
    from curation.review.push import push
    from curation.review.stack import connect
    from curation.review.users import add_annotator

    ws, dv = curated
    push(ws, dv.ref, size=3, strategy="random")
    erin = add_annotator(ws, "erin")
    conn = connect(ws)
    rid = server_record_ids(conn, "recot", f"{dv.name}-v{dv.version}")
    first, second, _ = sorted(rid)
    for sample, body in ((first, {"status": "discarded"}), (second, {"values": {}, "status": "discarded"})):
        r = httpx.post(f"{conn.url}/api/v1/records/{rid[sample]}/responses",
                       headers={"X-Argilla-Api-Key": erin.api_key}, json=body, timeout=30)
        assert r.status_code == 201, r.text
    res = pull(ws, dv.ref)
    assert (res.new, res.seen) == (2, 2)
    rows = ws.query('SELECT sample_id, status, rating, correct, "values" FROM reviews WHERE annotator = ? '
                    "ORDER BY sample_id", ["erin"])
    assert [(s, st, ra, c, json.loads(v)) for s, st, ra, c, v in rows] == \
        [(first, "discarded", None, None, {}), (second, "discarded", None, None, {})]
    assert pull(ws, dv.ref).unchanged == 2
