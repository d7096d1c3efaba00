"""Each filter on a sample set with known defects flags exactly the defective samples, and its reason names
the defect (the hallucinated SID string, the missing JSON key, the leaked title, ...)."""
from __future__ import annotations

import json

import pytest
from curation_samples import HALLUCINATED, TITLES, good, make_sample, reasoning_text, sid

from curation.chain import run_filters
from curation.config import load_chain
from curation.filters.dedup import NearDedupFilter, NearDedupParams
from storage.records import samples_from_pylist

R2_OK = {"logic_chain": {"name": "from comedies to thrillers", "events": [
    {"action": "watched playful comedies", "logic": "light mood early in the year", "date": "2020-01"},
    {"action": "switched to tense thrillers", "logic": "growing taste for suspense", "date": "2020-06"}]}}
R2_MISSING_DATE = {"logic_chain": {"name": "x", "events": [
    {"action": "watched comedies", "logic": "light mood", "date": "2020-01"},
    {"action": "watched thrillers", "logic": "suspense"}]}}
MALFORMED = "<|sid_begin|><s_a_1><s_c_7><|sid_end|>"  # skips level b


def defect_rows() -> list[dict]:
    rows = [good(f"ok{i}", seed=i) for i in range(1, 7)]
    rows += [
        make_sample("hallucinated", f"<think>{reasoning_text(11)}</think>\nI recommend {HALLUCINATED}."),
        make_sample("malformed", f"<think>{reasoning_text(12)}</think>\nI recommend {MALFORMED} now."),
        make_sample("title_mismatch",
                    f"<think>{reasoning_text(13)}</think>\nI recommend {sid('1')} (\"Jumanji (1995)\")."),
        make_sample("free_text_title",
                    f"<think>{reasoning_text(14)}</think>\nI recommend {sid('1')} (a warm family film)."),
        make_sample("leak_sid",
                    f"<think>{reasoning_text(15)} The answer is {sid('1')}.</think>\nI recommend {sid('1')}.",
                    mode="hint"),
        make_sample("leak_title", f"<think>{reasoning_text(16)} Something like toy story would fit.</think>\n"
                                  f"I recommend {sid('1')}.", mode="hint"),
        make_sample("blind_mention", f"<think>{reasoning_text(17)} Something like Toy Story fits.</think>\n"
                                     f"I recommend {sid('1')}.", mode="blind"),
        make_sample("hint_clean", f"<think>{reasoning_text(18)}</think>\nI recommend {sid('1')}.", mode="hint"),
        make_sample("two_open", f"<think>{reasoning_text(19)}<think> I recommend {sid('1')}."),
        make_sample("no_close", f"<think>{reasoning_text(20)} I recommend {sid('1')}."),
        make_sample("empty_answer", f"<think>{reasoning_text(21)}</think>\n   "),
        make_sample("gen_error", "", error="timeout: teacher did not answer in 60s"),
        make_sample("r2_ok", f"<think>{reasoning_text(22)}</think>\n{json.dumps(R2_OK)}", level="R2",
                    task="r2_evolution",
                    target=None, reference=R2_OK),
        make_sample("r2_missing_date",
                    f"<think>{reasoning_text(23)}</think>\n```json\n{json.dumps(R2_MISSING_DATE)}\n```",
                    level="R2", task="r2_evolution", target=None, reference=R2_OK),
        make_sample("r2_not_json", f"<think>{reasoning_text(24)}</think>\nThe chain: comedies then thrillers.",
                    level="R2", task="r2_evolution", target=None),
        make_sample("repetitive", "<think>" + "I think the user likes this movie a lot. " * 25 +
                    f"</think>\nI recommend {sid('1')}."),
        make_sample("foreign", "<think>" + "用户最近看了很多喜剧电影，所以我们推荐一部轻松的家庭电影。" * 4 +
                    f"</think>\nI recommend {sid('1')}."),
    ]
    ok2 = rows[1]["messages"][1]["content"]
    rows.append(make_sample("x_exact_dup", rows[0]["messages"][1]["content"]))
    rows.append(make_sample("x_near_dup", ok2.replace(" ", "  ", 3).replace("The user", "A user", 1)
                            .replace(".", " indeed.", 1)))
    return rows


def run_one(ws, spec: dict) -> dict[str, tuple[bool, str | None, float | None]]:
    cfg, src = load_chain({"name": "t", "filters": [spec]})
    table = samples_from_pylist(defect_rows())
    _, verdicts, _ = run_filters(table, cfg.build(src), ws=ws)
    return {r["sample_id"]: (r["keep"], r["reason"], r["score"]) for r in verdicts.to_pylist()}


def flagged(v: dict) -> set[str]:
    return {k for k, (keep, _, _) in v.items() if not keep}


def test_format_flags_broken_structure_errors_and_r2_schema(cat_ws):
    v = run_one(cat_ws, {"type": "format"})
    assert flagged(v) == {"two_open", "no_close", "empty_answer", "gen_error", "r2_missing_date", "r2_not_json"}
    assert v["two_open"][1].startswith("broken think tags: 2 <think> and 0 </think>")
    assert v["no_close"][1].startswith("broken think tags: 1 <think> and 0 </think>")
    assert v["empty_answer"][1].startswith("empty answer")
    assert v["gen_error"][1] == "generation error: timeout: teacher did not answer in 60s"
    assert "missing key 'logic_chain.events[1].date'" in v["r2_missing_date"][1]
    assert v["r2_not_json"][1].startswith("invalid R2 JSON: not JSON")


def test_sid_grounding_names_hallucinated_malformed_and_mismatched_sids(cat_ws):
    v = run_one(cat_ws, {"type": "sid_grounding"})
    assert flagged(v) == {"hallucinated", "malformed", "title_mismatch"}
    assert HALLUCINATED in v["hallucinated"][1] and v["hallucinated"][1].startswith("hallucinated SID")
    assert "not in SID version 1" in v["hallucinated"][1]
    assert MALFORMED in v["malformed"][1] and v["malformed"][1].startswith("malformed SID")
    r = v["title_mismatch"][1]
    assert r.startswith("title mismatch") and "Jumanji (1995)" in r and TITLES["1"] in r and sid("1") in r
    assert v["ok1"][2] == 1.0 and v["hallucinated"][2] == 0.0


def test_sid_grounding_strict_titles_flag_free_text(cat_ws):
    v = run_one(cat_ws, {"type": "sid_grounding", "params": {"title_mismatch": "any"}})
    assert {"title_mismatch", "free_text_title"} <= flagged(v)
    assert "a warm family film" in v["free_text_title"][1]


def test_hint_leakage_only_in_hint_mode_and_names_the_leak(cat_ws):
    v = run_one(cat_ws, {"type": "hint_leakage"})
    assert flagged(v) == {"leak_sid", "leak_title"}
    assert sid("1") in v["leak_sid"][1] and "target SID" in v["leak_sid"][1]
    assert "target title 'Toy Story (1995)'" in v["leak_title"][1]


def test_repetition_and_language(cat_ws):
    rep = run_one(cat_ws, {"type": "repetition"})
    assert flagged(rep) == {"repetitive"}
    assert "'i think the user'" in rep["repetitive"][1] or "×" in rep["repetitive"][1]
    lang = run_one(cat_ws, {"type": "language"})
    assert flagged(lang) == {"foreign"}
    reason = lang["foreign"][1]
    assert reason.startswith("language: only ") and "of letters are Latin ASCII (min 90%)" in reason


def test_length_bounds(cat_ws):
    v = run_one(cat_ws, {"type": "length", "params": {"min_chars": 50, "max_chars": 900}})
    lengths = {r["sample_id"]: len(r["messages"][1]["content"]) for r in defect_rows()}
    assert flagged(v) == {k for k, n in lengths.items() if n < 50 or n > 900}
    assert v["gen_error"][1] == "too short: completion has 0 chars (min 50)"


def test_exact_and_near_duplicates_keep_the_first_by_sample_id(cat_ws):
    ex = run_one(cat_ws, {"type": "exact_dedup"})
    assert flagged(ex) == {"x_exact_dup"}
    assert "same normalized text as ok1" in ex["x_exact_dup"][1]
    near = run_one(cat_ws, {"type": "near_dedup"})
    # the exact copy is also a near duplicate (Jaccard 1.0) when near-dedup runs alone
    assert flagged(near) == {"x_exact_dup", "x_near_dup"}
    assert near["x_near_dup"][1].startswith("near duplicate: Jaccard 0.") and "with ok2" in near["x_near_dup"][1]


def test_r2_score_half_action_half_logic(cat_ws):
    v = run_one(cat_ws, {"type": "r2_score", "params": {"min_score": 0.6}})
    assert v["r2_ok"][2] == pytest.approx(1.0)
    # 'watched comedies'~'watched playful comedies' and 'watched thrillers'~'switched to tense thrillers' (token F1 0.8
    # and 0.4 → one action match of two = F1 0.5); logic: 'light mood' matches, 'suspense' vs 'growing taste for
    # suspense' F1 0.5 → both match = F1 1.0; score = 0.5·0.5 + 0.5·1.0
    assert v["r2_missing_date"][2] == pytest.approx(0.75)
    assert v["r2_not_json"][2] == 0.0 or v["r2_not_json"][2] is None
    assert "ok1" not in {k for k, x in v.items() if x[2] is not None}  # non-R2 samples are not scored
    assert flagged(v) == ({"r2_not_json"} if v["r2_not_json"][2] == 0.0 else set())


def test_outcome_exact_prefix_and_topk(cat_ws):
    rows = [good("right", 1), good("wrong", 2, item="2", target="1"), good("prefix1", 3, item="5", target="1"),
            make_sample("second", f"<think>{reasoning_text(4)}</think>\n{sid('2')} or {sid('1')}", target="1"),
            make_sample("nosid", f"<think>{reasoning_text(5)}</think>\nMaybe a comedy.", target="1"),
            make_sample("notarget", f"<think>{reasoning_text(6)}</think>\nA description.", target=None)]
    table = samples_from_pylist(rows)

    def verdicts(params):
        cfg, src = load_chain({"filters": [{"type": "outcome", "params": params}]})
        _, v, _ = run_filters(table, cfg.build(src), ws=cat_ws)
        return {r["sample_id"]: (r["keep"], r["reason"], r["score"]) for r in v.to_pylist()}

    ex = verdicts({"require": "exact"})
    assert flagged(ex) == {"wrong", "prefix1", "second", "nosid"}
    assert f"predicted {sid('2')}, target {sid('1')}" in ex["wrong"][1] and "0/3 levels" in ex["wrong"][1]
    assert "1/3 levels" in ex["prefix1"][1]
    assert ex["nosid"][1].startswith("no answer SID")
    assert ex["right"][2] == pytest.approx(1.1) and ex["prefix1"][2] == pytest.approx(0.35)
    assert ex["notarget"] == (True, None, None)
    assert flagged(verdicts({"require": "prefix", "min_prefix_levels": 1})) == {"wrong", "second", "nosid"}
    top = verdicts({"require": "topk", "k": 2, "score": "ndcg"})
    assert flagged(top) == {"wrong", "prefix1", "nosid"}
    assert top["second"][2] == pytest.approx(0.6309, abs=1e-3)


def test_near_dedup_params_validated():
    with pytest.raises(ValueError):
        NearDedupParams(num_perm=128, bands=12)
    assert NearDedupFilter(NearDedupParams(threshold=0.9)).params.threshold == 0.9


def test_format_reason_category_follows_the_error_kind(cat_ws):
    """A parse failure, a truncation and a transport failure land in different funnel buckets."""
    rows = []
    for key, kind, err in [("parse", "parse", "no </think>"), ("cut", "truncated", "answer cut at 2048 tokens"),
                           ("net", "timeout", "teacher error (timeout): no answer in 60s"),
                           ("who", "unresolved", "no catalog item named 'Zorro'"), ("old", None, "boom")]:
        r = make_sample(key, "", error=err)
        r["extra"] = json.dumps({"error_kind": kind} if kind else {})
        rows.append(r)
    cfg, src = load_chain({"name": "t", "filters": [{"type": "format"}]})
    _, verdicts, _ = run_filters(samples_from_pylist(rows), cfg.build(src), ws=cat_ws)
    got = {r["sample_id"]: r["reason"] for r in verdicts.to_pylist()}
    assert got == {"parse": "parse error: no </think>", "cut": "truncated: answer cut at 2048 tokens",
                   "net": "transport error: teacher error (timeout): no answer in 60s",
                   "who": "unresolved answer: no catalog item named 'Zorro'", "old": "generation error: boom"}
