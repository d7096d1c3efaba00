"""The LLM judge against a real OpenAI-compatible HTTP server (helper 3's fault server, scripted mode):
JSON scores become verdicts, unparsable answers are kept with a reason, errors are kept, and a re-run is
served from the teacher cache (only failed requests are sent again)."""
from __future__ import annotations

from curation_samples import good, make_sample, reasoning_text, sid, write_samples
from fakes.fault_server import FaultServer

from curation.chain import run_chain
from curation.filters.judge import parse_judgement
from storage.datasets import read_dv


def test_parse_judgement():
    assert parse_judgement('{"score": 4, "reason": "ok"}') == (4, "ok")
    assert parse_judgement('Sure! ```json\n{"score": "2", "reason": "thin"}\n```') == (2, "thin")
    assert parse_judgement('{"score": 7}')[0] is None
    assert parse_judgement("great answer")[0] is None


def test_judge_scores_through_teacher_engine_and_cache(cat_ws):
    rows = [good("good1", 1), good("good2", 2),
            make_sample("vague", f"<think>VAGUE {reasoning_text(3)}</think>\nI recommend {sid('1')}."),
            make_sample("garbled", f"<think>GARBLED {reasoning_text(4)}</think>\nI recommend {sid('1')}."),
            make_sample("broken", f"<think>BROKEN {reasoning_text(5)}</think>\nI recommend {sid('1')}.")]
    write_samples(cat_ws, rows)
    script = {"VAGUE": ['{"score": 2, "reason": "generic reasoning, ignores the history"}'],
              "GARBLED": ["This response looks fine to me."],
              "BROKEN": ["400"],
              "I recommend": ['{"score": 5, "reason": "specific and grounded"}']}
    with FaultServer("scripted", script=script) as srv:
        chain = {"name": "j", "filters": [{"type": "format"}, {"type": "judge", "params": {
            "teacher": {"backend": "openai", "model": "judge-model", "base_url": srv.base_url, "api_key_env": "NO_KEY",
                        "max_retries": 0, "backoff_base_s": 0.0}, "min_score": 3}}]}
        dv = run_chain(cat_ws, "samples", chain, out="judged")
        n_requests = len(srv.log)
        again = run_chain(cat_ws, "samples", chain, out="judged")
        # second run: answered requests come from the cache; only the failed one (HTTP 400) is sent again
        assert len(srv.log) == n_requests + 1
    assert n_requests == 5
    out = {r["sample_id"]: r for r in read_dv(dv).to_pylist()}
    assert {k for k, r in out.items() if not r["keep"]} == {"vague"}
    assert out["vague"]["reject_reason"] == "judge score low: 2/5 (min 3): generic reasoning, ignores the history"
    v = dict(((s, f), (k, r, sc)) for s, f, k, r, sc in cat_ws.query(
        "SELECT sample_id, filter, keep, reason, score FROM verdicts WHERE dataset = 'judged' AND version = 1"))
    assert v[("garbled", "judge")][0] is True and v[("garbled", "judge")][1].startswith("judge unparsable")
    assert v[("broken", "judge")][0] is True and v[("broken", "judge")][1].startswith("judge error")
    assert v[("good1", "judge")] == (True, "judge score 5/5: specific and grounded", 5.0)
    assert again.content_hash == dv.content_hash
    assert "judge" in dv.manifest["funnel"]["teacher_stats"]
