"""The default chain on alignment-shaped samples: SID prefixes in token alignment are checked against the
catalog (not called malformed), and short answers repeated across different prompts are not duplicates."""
from curation_samples import CODES, TITLES, build_catalog, make_sample, sid, write_samples

from curation.chain import run_chain
from storage.datasets import read_dv


def _prefix(codes) -> str:
    return "<|sid_begin|>" + "".join(f"<s_{'abc'[i]}_{c}>" for i, c in enumerate(codes))


def _token_sample(key: str, prefix: str) -> dict:
    s = make_sample(key, f"Items whose SID starts with {prefix} are mostly: Comedy (2 of 3).", target=None,
                    task="align_token", level="alignment", mode="none", think=False)
    s["messages"][0]["content"] = f"What kind of items have a semantic ID starting with {prefix}?"
    return s


def _user_sample(key: str, history: list[str], nxt: str) -> dict:
    s = make_sample(key, sid(nxt), target=nxt, task="align_user", level="alignment", mode="none", think=False)
    s["messages"][0]["content"] = "History: " + " ".join(sid(h) for h in history) + ". Next?"
    return s


def test_sid_prefixes_are_checked_against_the_catalog(cat_ws):
    build_catalog(cat_ws) if not cat_ws.query("SELECT 1 FROM items LIMIT 1") else None
    real = CODES["1"]
    rows = [_token_sample("ok1", _prefix(real[:1])), _token_sample("ok2", _prefix(real[:2])),
            _token_sample("bad", _prefix((3, 999)))]
    out = read_dv(run_chain(cat_ws, write_samples(cat_ws, rows, "tok"), "default")).to_pylist()
    by = {r["sample_id"]: r for r in out}
    assert by["ok1"]["keep"] and by["ok2"]["keep"]
    assert not by["bad"]["keep"] and by["bad"]["rejected_by"] == "sid_grounding"
    assert "unknown SID prefix" in by["bad"]["reject_reason"] and "<s_b_999>" in by["bad"]["reject_reason"]


def test_same_short_answer_to_different_prompts_is_not_a_duplicate(cat_ws):
    build_catalog(cat_ws) if not cat_ws.query("SELECT 1 FROM items LIMIT 1") else None
    rows = [_user_sample("a", ["2", "3"], "1"), _user_sample("b", ["4", "5"], "1"),
            _user_sample("c", ["6", "7"], "1"), _user_sample("a-copy", ["2", "3"], "1")]
    curated = read_dv(run_chain(cat_ws, write_samples(cat_ws, rows, "usr"), "default"))
    out = {r["sample_id"]: r for r in curated.to_pylist()}
    assert [k for k, r in sorted(out.items()) if r["keep"]] == ["a", "b", "c"]
    assert out["a-copy"]["rejected_by"] == "exact_dup"
    assert set(TITLES) >= {"1", "2"}
