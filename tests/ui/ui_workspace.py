"""The viewer tests' workspace: a small but complete workspace built directly with storage APIs (items,
users, interactions, splits, a SID version with a collision, runs with accounting, a raw sample dataset in two
versions, a curated version with a funnel and per-filter verdicts, and reviews), so the tests don't depend on
the ingest/synth/curate packages. One sample carries a <script> payload to check that model text stays text."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from storage.datasets import write_version
from storage.records import CURATED_SCHEMA, samples_from_pylist
from storage.runs import recorded_run
from storage.sid import format_sid
from storage.workspace import Workspace

APP_PATH = Path(__file__).resolve().parents[2] / "ui" / "viewer" / "app.py"
SCRIPT = "<script>document.title='PWNED';window.__pwned=1</script>"
HALLUCINATED = format_sid([9, 9, 9])
NEEDLE = "unique-needle-42"

# item id → codes (items 11 and 12 share a-b-c = 2-1-1 and carry an extra level d).
CODES = {str(i): ((i - 1) // 4, ((i - 1) % 4) // 2, (i - 1) % 2) for i in range(1, 11)}
CODES["11"] = (2, 1, 1, 0)
CODES["12"] = (2, 1, 1, 1)
TITLES = {str(i): f"Movie {i} ({1990 + i})" for i in range(1, 13)}
TITLES["7"] = "<i>Italic</i> & Co (1997)"
HISTORIES = {"u1": ["1", "2", "3", "4", "5", "6"], "u2": ["7", "8", "9", "10", "11", "12"],
             "u3": ["2", "4", "6", "8", "10", "12"]}


def sid(item: str) -> str:
    return format_sid(CODES[item])


def _catalog(ws: Workspace) -> None:
    t0 = datetime(2024, 1, 1)
    with ws.transaction("test") as con:
        for it, title in TITLES.items():
            con.execute("INSERT INTO items VALUES (?, ?, NULL, ?, '{}', 'movies')", [it, title, ["Drama"]])
        for u, items in HISTORIES.items():
            con.execute("INSERT INTO users VALUES (?, '{}', 'movies')", [u])
            for pos, it in enumerate(items):
                ts = t0 + timedelta(days=pos)
                split = "test" if pos == len(items) - 1 else "valid" if pos == len(items) - 2 else "train"
                con.execute("INSERT INTO interactions VALUES (?, ?, ?, 4.0, 'movies')", [u, it, ts])
                con.execute("INSERT INTO splits VALUES (?, ?, ?, ?, ?, 'movies')", [u, it, ts, pos, split])
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 4, 12, '{}', '{}')")
        for it, codes in CODES.items():
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [it, list(codes), format_sid(codes)])


def _sample(i: int, **kw) -> dict:
    user = kw.pop("user_id", "u1")
    hist = HISTORIES.get(user, ["1", "2"])
    target = hist[-1]
    row = {"sample_id": f"s{i}", "prompt_id": f"p{i}", "task": "r3_recommend", "level": "R3", "mode": "none",
           "think": True, "domain": "movies", "user_id": user, "history_item_ids": hist[:-1],
           "target_item_ids": [target], "target_sids": [sid(target)],
           "messages": [{"role": "system", "content": "You recommend movies."},
                        {"role": "user", "content": f"History: {' '.join(sid(h) for h in hist[:-1])}. Next?"},
                        {"role": "assistant", "content": "…"}],
           "reasoning": f"The user watched {sid(hist[0])} and liked it.", "answer": sid(target),
           "teacher": "openai:gpt-test", "template_version": "r3@1", "request_key": f"k{i}", "run_id": "synth-run",
           "sid_version": 1, "created_at": datetime(2024, 2, 1, tzinfo=UTC)}
    row.update(kw)
    row["answer_sids"] = kw.get("answer_sids", [m for m in [row["answer"]] if m and m.startswith("<|sid_begin|>")
                                                 and m.endswith("<|sid_end|>")])
    return row


def build_samples() -> list[dict]:
    return [
        _sample(0),
        _sample(1, user_id="u2", answer=HALLUCINATED),
        _sample(2, user_id="u3", reasoning=f"Careful: {SCRIPT} and <b>not bold</b>. {sid('2')} fits.",
                answer=sid("12")),
        _sample(3, task="r2_chain", level="R2", mode="hint", teacher="local:smollm2"),
        _sample(4, task="sid_to_title", level="alignment", user_id=None, teacher="catalog", reasoning=None,
                history_item_ids=[], target_item_ids=["5"], target_sids=[sid("5")], answer="Movie 5 (1995)",
                answer_sids=[]),
        _sample(5, answer="I cannot answer", error="no SID in answer", answer_sids=[]),
        _sample(6, user_id="u2", reasoning=f"Weak reasoning with {NEEDLE}."),
        _sample(7, user_id="u3", mode="blind"),
    ]


def cognition_sample(i: int = 20) -> dict:
    """A v2 three-level R3 trace of u1 with its cognition skeleton in `extra` (the shape synth writes; see
    storage/cognition.py). Point 1 (items 1-2, prefix a0) is long-term, point 2 (items 3-4, a0·b1) recent and
    the target's. The Evolution level carries a <script> payload: it must stay text."""
    hist, target = HISTORIES["u1"][:-1], HISTORIES["u1"][-1]
    skeleton = {
        "version": 1,
        "perception": [{"sid": sid(h), "title": TITLES[h], "categories": ["Drama"],
                        "date": f"2024-01-0{k + 1}"} for k, h in enumerate(hist)],
        "interest_points": [
            {"id": 1, "label": "early dramas", "sids": [sid("1"), sid("2")], "categories": ["Drama"],
             "sid_prefix": "<|sid_begin|><s_a_0><s_b_0>", "count": 2, "share": 0.4, "recent_count": 0,
             "last_date": "2024-01-02"},
            {"id": 2, "label": "late nineties dramas", "sids": [sid("3"), sid("4")], "categories": ["Drama"],
             "sid_prefix": "<|sid_begin|><s_a_0><s_b_1>", "count": 2, "share": 0.4, "recent_count": 2,
             "last_date": "2024-01-04"}],
        "evolution": {"periods": [{"start": "2024-01-01", "end": "2024-01-02", "items": 2, "dominant": 1},
                                  {"start": "2024-01-03", "end": "2024-01-05", "items": 3, "dominant": 2}],
                      "long_term": 1, "recent": 2, "shifts": [{"from": 1, "to": 2, "date": "2024-01-03"}]},
        "target_point": 2}
    reasoning = (f"Perception: {sid('1')} and {sid('2')} are early dramas; {sid('3')} came later.\n\n"
                 "Interest points: (1) early dramas, 2 of 5 items; (2) late nineties dramas, 2 of 5, both recent.\n\n"
                 f"Evolution: the user moved from (1) to (2) {SCRIPT}, so the next pick serves (2).")
    return _sample(i, reasoning=reasoning, answer=f"{sid(target)} {TITLES[target]}", answer_sids=[sid(target)],
                   mode="hint", teacher="skeleton:v1", template_version="r3_recommend@v2", request_key=None,
                   extra=json.dumps({"skeleton": skeleton}))


# sample → (rejected_by, reason, judge score); None = kept.
DROPS = {"s1": ("sid_valid", "hallucinated SID"), "s5": ("parse", "no SID in answer"),
         "s6": ("judge", "judge score 0.20 < 0.5")}
FILTERS = ["parse", "sid_valid", "judge"]


def _curate(ws: Workspace, raw: list[dict]) -> None:
    verdicts, curated = [], []
    for r in raw:
        drop = DROPS.get(r["sample_id"])
        judge_score = 0.2 if r["sample_id"] == "s6" else 0.9
        for f in FILTERS:
            keep = not (drop and drop[0] == f)
            verdicts.append((r["sample_id"], f, keep, None if keep else drop[1], judge_score if f == "judge" else None))
            if not keep:
                break
        curated.append({**r, "keep": drop is None, "rejected_by": drop[0] if drop else None,
                        "reject_reason": drop[1] if drop else None,
                        "scores": json.dumps({"judge": judge_score})})
    funnel = {"filters": [
        {"name": "parse", "in": 8, "out": 7, "dropped": 1, "reasons": {"no SID in answer": 1}},
        {"name": "sid_valid", "in": 7, "out": 6, "dropped": 1, "reasons": {"hallucinated SID": 1}},
        {"name": "judge", "in": 6, "out": 5, "dropped": 1, "reasons": {"judge score 0.20 < 0.5": 1}}],
        "input_rows": 8, "kept": 5}
    with recorded_run(ws, "curate", {"chain": "default"}) as run:
        dv = write_version(ws, "r3_recommend-curated", pa.Table.from_pylist(curated, schema=CURATED_SCHEMA),
                           step="curate", parents=[("r3_recommend", 1)], run_id=run.id,
                           extra_manifest={"funnel": funnel})
        with ws.transaction("curate") as con:
            for v in verdicts:
                con.execute("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [dv.name, dv.version, *v, run.id])
        run.stats = {"input": 8, "kept": 5, "dropped": {"parse": 1, "sid_valid": 1, "judge": 1}}


def _reviews(ws: Workspace) -> None:
    now = datetime.now(UTC)
    rows = [("s0", "ann1", "submitted", 5, "yes", ["good"], None),
            ("s2", "ann1", "draft", 2, "no", ["injection"], None),
            ("s2", "ann2", "submitted", 1, "no", ["bad"], sid("6"))]
    with ws.transaction("review") as con:
        for s, a, st, rating, correct, labels, corrected in rows:
            con.execute("INSERT INTO reviews VALUES (?, 'r3_recommend-curated', ?, ?, ?, ?, ?, ?, '{}', ?, ?)",
                        [s, a, st, rating, correct, labels, corrected, now, now])


def build_viewer_workspace(root: Path) -> Workspace:
    ws = Workspace.open(root)
    _catalog(ws)
    with recorded_run(ws, "synth", {"task": "r3_recommend", "api_key": "sk-should-not-be-stored"}) as synth_run:
        raw = build_samples()
        write_version(ws, "r3_recommend", samples_from_pylist(raw), step="synth", run_id=synth_run.id,
                      config={"task": "r3_recommend"})
        synth_run.stats = {"requests": 8, "cache_hits": 1, "prompt_tokens": 1200, "completion_tokens": 640,
                           "cost_usd": 0.0123, "errors": 1}
    run = synth_run.id
    _curate(ws, raw)
    # v2 of the raw dataset: s7 gone, s8 new (for Compare).
    v2 = [r for r in raw if r["sample_id"] != "s7"] + [_sample(8, user_id="u1", task="r2_chain", level="R2")]
    write_version(ws, "r3_recommend", samples_from_pylist(v2), step="synth", run_id=run)
    _reviews(ws)
    return ws


