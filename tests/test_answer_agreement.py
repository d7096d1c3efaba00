"""Every consumer of a model answer reads it the same way (`storage.answer` is their one home): one corpus of
answers goes through the curation format filter (its vectorized RE2 patterns, over an Arrow sample table),
`storage.answer.check_format`, the `format` reward, the synth parser (and the sample synth writes from it), the
judge's JSON parsing and the teacher engine's JSON check, and each case must come out the same everywhere."""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curation.chain import run_filters
from curation.config import load_chain
from curation.filters.judge import parse_judgement
from curation.rewards import format_reward
from storage.answer import (
    EMPTY_THINK_PATTERN,
    PLAIN_ANSWER_PATTERN,
    THINK_CLOSE,
    THINK_OPEN,
    check_format,
    extract_json_object,
    parse_logic_chain,
    reasoning_and_answer,
    split_think,
    think_format_pattern,
)
from storage.records import samples_from_pylist
from storage.sid import extract_sids, find_malformed_sids
from synth.tasks.cognition import parse_r2
from synth.tasks.run import student_messages

SID = "<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>"
BROKEN_SID = "<|sid_begin|><s_a_1><s_c_3><|sid_end|>"            # skips level b
R2_OK = {"logic_chain": {"name": "from comedies to thrillers", "events": [
    {"action": "watched comedies", "logic": "light mood", "date": "2020-01"},
    {"action": "switched to thrillers", "logic": "taste for suspense", "date": "2020-06"}]}}
R2_MISSING_DATE = {"logic_chain": {"name": "x", "events": [
    {"action": "watched comedies", "logic": "light mood", "date": "2020-01"},
    {"action": "watched thrillers", "logic": "suspense"}]}}
R2_EMPTY = {"logic_chain": {"name": "", "events": []}}
BAD_JSON = '{"logic_chain": {"name": "x", "events": [}'


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    think: bool = True
    r2: bool = False
    reason: str | None = None        # what the format filter (and check_format / the R2 schema) says; None = kept

    @property
    def level(self) -> str:
        return "R2" if self.r2 else "R3"


def _r2(answer: str) -> str:
    return f"<think>Comedies first, thrillers later.</think>\n{answer}"


CORPUS = [
    Case("think_ok", f"<think>The user likes drama.</think>\nI recommend {SID}."),
    Case("think_ok_marker", f"<think>Drama fan.</think>\nAnswer: {SID}"),
    Case("tag_like_text_inside", f"<think>not <thinking> nor </thin k> or <<t</think> {SID}"),
    Case("missing_close", f"<think>The user likes drama and {SID}", reason="broken think tags: 1 <think> and 0"),
    Case("close_only", f"The user likes drama.</think> {SID}", reason="broken think tags: 0 <think> and 1"),
    Case("two_blocks", f"<think>a</think><think>b</think> {SID}", reason="broken think tags: 2 <think> and 2"),
    Case("tag_inside_reasoning", f"<think>a <think> b</think> {SID}", reason="broken think tags: 2 <think> and 1"),
    Case("text_before_think", f"Sure! <think>x</think> {SID}", reason="broken think tags: </think> before"),
    Case("close_before_open", f"</think>x<think> {SID}", reason="broken think tags: </think> before"),
    Case("empty_think", f"<think>  \n</think>\n{SID}", reason="empty reasoning"),
    Case("empty_think_no_think", f"<think>\n\n</think>\n\n{SID}", think=False),
    Case("reasoning_in_no_think", f"<think>x</think> {SID}", think=False, reason="unexpected reasoning"),
    Case("no_answer", "<think>Drama fan.</think>\n  ", reason="empty answer"),
    Case("answer_marker_only", f"The user likes drama.\nAnswer: {SID}", reason="missing think block"),
    Case("answer_marker_only_no_think", f"The user likes drama.\nAnswer: {SID}", think=False),
    Case("plain_sid_no_think", SID, think=False),
    Case("empty", " \n ", reason="empty completion"),
    Case("malformed_sid", f"<think>Drama fan.</think> {BROKEN_SID}"),        # format is fine; the reward is not
    Case("no_sid", "<think>Drama fan.</think> Heat (1995)"),
    Case("r2_fenced", _r2(f"```json\n{json.dumps(R2_OK)}\n```"), r2=True),
    Case("r2_unfenced_in_prose", _r2(f"Here it is: {json.dumps(R2_OK)} Hope it helps."), r2=True),
    Case("r2_marker_and_fence", _r2(f"Answer: ```\n{json.dumps(R2_OK)}\n```"), r2=True),
    Case("r2_empty_chain", _r2(json.dumps(R2_EMPTY)), r2=True, reason="invalid R2 JSON: 'logic_chain.name'"),
    Case("r2_missing_key", _r2(f"```json\n{json.dumps(R2_MISSING_DATE)}\n```"), r2=True,
         reason="invalid R2 JSON: missing key 'logic_chain.events[1].date'"),
    Case("r2_bad_json", _r2(BAD_JSON), r2=True, reason="invalid R2 JSON: not JSON (Expecting value"),
    Case("r2_no_json", _r2("The chain: comedies then thrillers."), r2=True,
         reason="invalid R2 JSON: not JSON: no object in the answer"),
    Case("r2_broken_structure", f"<think>x {json.dumps(R2_OK)}", r2=True, reason="broken think tags"),
]


def _row(key: str, messages: list[dict], *, think: bool, level: str, error: str | None = None) -> dict:
    return {"sample_id": key, "prompt_id": key, "task": "r2_evolve" if level == "R2" else "r3_recommend",
            "level": level, "mode": "blind", "think": think, "messages": messages, "error": error,
            "sid_version": 1}


def _format_verdicts(rows: list[dict], **params) -> dict[str, str | None]:
    """sample_id → the format filter's reason (None = kept), through the real chain runner."""
    cfg, src = load_chain({"name": "agreement", "filters": [{"type": "format", **params}]})
    _, verdicts, _ = run_filters(samples_from_pylist(rows), cfg.build(src))
    return {r["sample_id"]: (None if r["keep"] else r["reason"]) for r in verdicts.to_pylist()}


def _raw_rows(cases) -> list[dict]:
    return [_row(c.name, [{"role": "user", "content": "Recommend."}, {"role": "assistant", "content": c.text}],
                 think=c.think, level=c.level) for c in cases]


@pytest.fixture(scope="module")
def filter_reasons() -> dict[str, str | None]:
    return _format_verdicts(_raw_rows(CORPUS))


def test_corpus_names_are_unique():
    assert len({c.name for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_format_filter_and_check_format_agree(case, filter_reasons):
    got = filter_reasons[case.name]
    if case.reason is None:
        assert got is None
    else:
        assert got is not None and got.startswith(case.reason), got
    ok, why = check_format(case.text, case.think)
    if case.r2 and ok:                       # the structure is fine: the R2 schema decides
        why = parse_logic_chain(case.text.split(THINK_CLOSE, 1)[-1])[1]
    assert why == got


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_format_reward_is_the_format_rule_plus_a_clean_sid(case, filter_reasons):
    answer = reasoning_and_answer(case.text)[1]
    sid_ok = bool(extract_sids(answer)) and not find_malformed_sids(answer)
    expected = 1.0 if check_format(case.text, case.think)[0] and sid_ok else 0.0
    assert format_reward(None, [case.text], think=[case.think]) == [expected]
    assert format_reward(None, [[{"role": "assistant", "content": case.text}]], think=case.think) == [expected]
    if not case.r2 and sid_ok:               # for a SID answer the reward is the filter's verdict
        assert expected == (1.0 if filter_reasons[case.name] is None else 0.0)


def _synth_parse(case: Case):
    return parse_r2(None, case.text, "stop") if case.r2 else split_think(case.text, "stop")


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_a_synth_row_passes_the_format_filter_exactly_when_the_parser_did_not_flag_it(case):
    """Synth rebuilds the assistant turn from the parsed answer for both chat variants; the row keeps the
    parser's error. The filter must keep the row iff there is no error, and name the parser's error."""
    parsed = _synth_parse(case)
    rows = [_row(f"{case.name}/{v}", student_messages("Recommend.", v, parsed, case.text), think=v == "think",
                 level=case.level, error=parsed.error) for v in ("think", "no_think")]
    got = _format_verdicts(rows)
    for r in rows:
        expected = None if parsed.error is None else f"generation error: {parsed.error}"
        assert got[r["sample_id"]] == expected, (r["messages"], parsed)
    if case.r2 and check_format(case.text, True)[0]:
        # an R2 answer the structure rule accepts gets the same schema reason in synth and in curation
        assert parsed.error == parse_logic_chain(case.text.split(THINK_CLOSE, 1)[-1])[1]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_synth_parser_flags_what_the_rule_rejects_for_a_thinking_sample(case):
    """The parser is lenient only where synth repairs the shape (an "Answer:" line, a missing opening tag,
    text before <think>); everything else the rule rejects it flags."""
    parsed = split_think(case.text, "stop")
    ok, why = check_format(case.text, True)
    repaired = parsed.extra.get("format") in ("answer_marker", "close_only") or (
        why is not None and why.startswith("broken think tags: </think> before") and parsed.error is None)
    if not ok and not repaired:
        assert parsed.error is not None, (case.text, why)
    if ok:
        reasoning, answer = parsed.reasoning, parsed.answer
        assert parsed.error is None and reasoning and answer
        inner = case.text.split(THINK_OPEN, 1)[1].split(THINK_CLOSE, 1)[0].strip()
        assert reasoning == inner


JSON_WRAPPERS = {
    "bare": "{obj}",
    "fenced": "```json\n{obj}\n```",
    "fence_no_lang": "Here:\n```\n{obj}\n```",
    "prose_around": "Sure. {obj} Hope that helps {{not json}}.",
}


@pytest.mark.parametrize("wrapper", sorted(JSON_WRAPPERS))
@pytest.mark.parametrize("obj, readable", [(json.dumps({"score": 4, "reason": "ok"}), True),
                                           ('{"score": 4, "reason": "ok"', False),
                                           ("score: 4", False)])
def test_judge_engine_and_r2_read_the_same_json(wrapper, obj, readable):
    from synth.teacher.backends.base import Completion
    from synth.teacher.engine import check_usable
    from synth.teacher.errors import TeacherAttemptError
    from synth.teacher.types import ChatRequest

    text = JSON_WRAPPERS[wrapper].format(obj=obj)
    found, why = extract_json_object(text)
    assert (found is not None) == readable
    score, reason = parse_judgement(text)
    assert (score == 4) == readable and (readable or reason.startswith(why))
    req = ChatRequest.from_messages([{"role": "user", "content": "grade"}], json_schema={"type": "object"})
    if readable:
        check_usable(req, Completion([text], ["stop"]))
    else:
        with pytest.raises(TeacherAttemptError) as exc:
            check_usable(req, Completion([text], ["stop"]))
        assert exc.value.kind == "invalid_json"
    # the same wrapper around an R2 chain: R2 parsing finds the object exactly when the judge finds its object
    chain_text = JSON_WRAPPERS[wrapper].format(obj=json.dumps(R2_OK) if readable else obj)
    assert (parse_logic_chain(chain_text)[0] is not None) == readable


_TOKENS = [THINK_OPEN, THINK_CLOSE, "<", "t", "h", "i", "n", "k", ">", "/", " ", "\n", "a", "<thin", "</thin",
           "k>", "\u3000", "\v", SID]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 12))) for _ in range(n)]


@pytest.mark.parametrize("allow", [False, True])
def test_rule_patterns_match_check_format_in_python_and_re2(allow):
    """The RE2 patterns the filter runs over Arrow and check_format agree on random tag soup."""
    texts = _random_texts(20000, seed=int(allow))
    pat = think_format_pattern(allow)
    arr = pa.array(texts)
    re2 = [pc.match_substring_regex(arr, p).to_pylist() for p in (pat, PLAIN_ANSWER_PATTERN, EMPTY_THINK_PATTERN)]
    for i, t in enumerate(texts):
        py = [bool(re.search(p, t)) for p in (pat, PLAIN_ANSWER_PATTERN, EMPTY_THINK_PATTERN)]
        assert py == [r[i] for r in re2], repr(t)
        shape, plain, empty = py
        for think in (None, True, False):
            ok = (shape and (think is None or think != empty)) or (think is not True and plain)
            assert check_format(t, think, allow_text_before_think=allow)[0] == ok, (repr(t), think)


def test_format_filter_reasons_are_check_format_reasons_on_random_text():
    texts = _random_texts(3000, seed=7)
    rows = [_row(f"r{i}", [{"role": "user", "content": "q"}, {"role": "assistant", "content": t}],
                 think=i % 2 == 0, level="R3") for i, t in enumerate(texts)]
    got = _format_verdicts(rows)
    for i, t in enumerate(texts):
        assert got[f"r{i}"] == check_format(t, i % 2 == 0)[1], repr(t)


def test_latest_sid_version_is_one_function_and_counts_unregistered_item_sids(tmp_ws):
    """The viewer uses storage's latest_sid_version (it used to keep its own copy with this fallback)."""
    from storage.sid_catalog import latest_sid_version
    from ui.viewer import queries

    assert queries.latest_sid_version is latest_sid_version
    assert latest_sid_version(tmp_ws) is None
    with tmp_ws.transaction("test") as con:
        con.execute("INSERT INTO items (item_id, title) VALUES ('i1', 'Heat')")
        con.execute("INSERT INTO item_sids VALUES (3, 'i1', [1, 2, 3], ?)", [SID])
    assert latest_sid_version(tmp_ws) == 3
