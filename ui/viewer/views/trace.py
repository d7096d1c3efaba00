"""Trace detail: one sample in full — the user's history as titles with SIDs and dates, the prompt, the
reasoning and answer with SIDs rendered as titles (hallucinated ones flagged; a three-level cognition trace
as one section per level, with its data-derived skeleton beside it), target vs answer, each filter's
verdict, judge score, annotator responses and lineage. All model text is shown as text (see render.py)."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from storage.cognition import LEVELS, PREAMBLE, skeleton_of, split_levels
from ui.viewer import data
from ui.viewer.render import highlight_pattern, segments, short_sid, skeleton_rows, to_markdown
from ui.viewer.views.common import Ctx, frame, md, sample_refs


def _text_block(label: str, text: str | None, lookup: dict, key: str) -> None:
    st.markdown(f"**{label}**")
    if not text:
        st.caption("(empty)")
        return
    segs = segments(text, lookup)
    hl = _highlight()
    if any(s.kind != "text" for s in segs) or (hl is not None and hl.search(text)):
        with st.container(border=True):
            st.markdown(to_markdown(segs, hl))
        with st.expander(f"{label}: raw text"):
            st.code(text, language=None, wrap_lines=True)
    else:
        st.code(text, language=None, wrap_lines=True)


def _highlight():
    """The search of the Traces page this trace was opened from (its matches are highlighted here)."""
    h = st.session_state.get("trace_highlight")
    return highlight_pattern(h[0], h[1]) if h else None


def _skeleton(sk: dict) -> None:
    """The data-derived cognition skeleton the three levels should agree with."""
    st.markdown("**Cognition skeleton** (computed from the catalog and the user's train history)")
    rows = skeleton_rows(sk)
    st.caption("Interest points")
    frame(pd.DataFrame(rows["interest_points"]), key="trace_interest_points")
    st.caption("Evolution periods")
    frame(pd.DataFrame(rows["periods"]), key="trace_periods")
    frame(pd.DataFrame(rows["summary"]), key="trace_skeleton_summary")
    with st.expander("Skeleton JSON"):
        st.code(json.dumps(sk, indent=2, ensure_ascii=False), language="json")


def _reasoning(row: dict, lookup: dict) -> None:
    """Three-level traces as one section per level (cognition skeleton beside them); others as one block.
    When a sample was meant to have levels (it carries a skeleton) but doesn't, the reason is shown."""
    text = row.get("reasoning")
    levels = split_levels(text) if text else None
    sk = skeleton_of(row.get("extra"))
    if not isinstance(levels, dict) and sk is None:
        _text_block("Reasoning", text, lookup, "reasoning")
        return
    left, right = st.columns([3, 2]) if sk is not None else (st.container(), None)
    with left:
        if isinstance(levels, dict):
            if PREAMBLE in levels:
                _text_block("Before the levels", levels[PREAMBLE], lookup, "level_preamble")
            for i, level in enumerate(LEVELS):
                _text_block(f"{i + 1}. {level}", levels[level], lookup, f"level_{i}")
            with st.expander("Reasoning: raw text"):
                st.code(text, language=None, wrap_lines=True)
        else:
            st.warning(f"Not a three-level trace: {md(levels or 'no reasoning')}")
            _text_block("Reasoning", text, lookup, "reasoning")
    if right is not None:
        with right:
            _skeleton(sk)


def render(ctx: Ctx) -> None:
    st.header("Trace detail")
    refs = sample_refs(ctx)
    if not refs:
        st.info("No sample datasets yet.")
        return
    if st.session_state.get("trace_dataset") not in refs:
        st.session_state["trace_dataset"] = refs[0]
    c = st.columns([1, 2])
    with c[0]:
        ref = st.selectbox("Dataset version", refs, key="trace_dataset")
    with c[1]:
        sample_id = st.text_input("Sample id", key="trace_sample",
                                  help="Pick one on the Traces page, or paste an id.").strip()
    if not sample_id:
        st.info("Open a trace from the **Traces** page, or paste a sample id above.")
        return
    d = data.trace_detail(ctx.root, ctx.stamp, ref, sample_id)
    if d is None:
        st.warning(f"Sample {md(sample_id)} is not in {md(ref)}.")
        return
    row, lookup = d["row"], d["lookup"]

    # ---- header
    st.subheader(f"{md(row.get('task'))} · {md(row.get('level'))} · mode {md(row.get('mode'))}")
    meta = {k: row.get(k) for k in ("sample_id", "prompt_id", "user_id", "teacher", "template_version", "think",
                                    "run_id", "sid_version", "created_at", "error") if k in row}
    frame(pd.DataFrame([{k: "" if v is None else str(v) for k, v in meta.items()}]), key="trace_meta")
    if "keep" in row:
        verdict = "kept" if row.get("keep") else f"dropped by {row.get('rejected_by') or '?'}"
        st.markdown(f"**Verdict:** {md(verdict)}")
        if row.get("reject_reason"):
            st.text(f"reason: {row['reject_reason']}")

    # ---- history
    st.subheader("User history")
    hist = d["history"]
    if hist is None or hist.empty:
        st.caption("no history for this sample")
    else:
        cols = [c for c in ("position", "ts", "title", "sid", "item_id", "split", "role") if c in hist]
        frame(hist[cols], key="trace_history",
              column_config={"ts": st.column_config.DatetimeColumn("date", format="YYYY-MM-DD"),
                             "sid": st.column_config.TextColumn("SID")})

    # ---- prompt
    st.subheader("Prompt")
    msgs = row.get("messages") or []
    prompt_msgs = msgs[:-1] if msgs and msgs[-1].get("role") == "assistant" else msgs
    for i, m in enumerate(prompt_msgs):
        _text_block(md(m.get("role") or "?"), m.get("content"), lookup, f"prompt_{i}")
    if not prompt_msgs:
        st.caption("no prompt messages")

    # ---- reasoning and answer
    st.subheader("Reasoning and answer")
    if str(row.get("teacher") or "").startswith("skeleton:"):
        st.info("Skeleton teacher: this trace is the data-derived cognition skeleton put into words by a "
                "program, not a model's reasoning: a structural baseline and demonstration.")
    _reasoning(row, lookup)
    _text_block("Answer", row.get("answer"), lookup, "answer")
    if d["malformed"]:
        st.warning(f"{len(d['malformed'])} malformed SID fragment(s) — see the raw text.")

    # ---- answer vs target
    st.subheader("Answer vs target")
    targets = list(row.get("target_sids") or [])
    answer = d["answer_sids"]
    c = st.columns(2)
    with c[0]:
        st.markdown("**Target**")
        tgt = [{"code": short_sid(s), "title": (lookup.get(s) or {}).get("title"),
                "item_id": (lookup.get(s) or {}).get("item_id"), "sid": s} for s in targets] or [
            {"sid": None, "title": None, "item_id": it} for it in row.get("target_item_ids") or []]
        frame(pd.DataFrame(tgt), key="trace_target")
    with c[1]:
        st.markdown("**Answer SIDs**")
        ans = pd.DataFrame([{"code": short_sid(a["sid"]),
                             "title": a["title"] if a["known"] else "HALLUCINATED (not in the catalog)",
                             "hit": a["sid"] in targets, "sid": a["sid"]} for a in answer])
        if answer:
            frame(ans, key="trace_answer_sids")
        else:
            st.caption("the answer names no SID")
    if targets and answer:
        hit = any(a["sid"] in targets for a in answer)
        st.markdown("**Target found in the answer.**" if hit else "**Target not in the answer.**")

    # ---- verdicts, scores, reviews
    st.subheader("Filter verdicts")
    frame(d["verdicts"], key="trace_verdicts")
    if d["judge"]:
        c = st.columns(max(1, len(d["judge"])))
        for col, (k, v) in zip(c, d["judge"].items()):
            col.metric(f"Judge score ({md(k)})", "—" if v is None else f"{float(v):.2f}")
    if d["scores"]:
        with st.expander("All scores"):
            st.code(json.dumps(d["scores"], indent=2, default=str), language="json")
    st.subheader("Annotator responses")
    frame(d["reviews"], key="trace_reviews")

    st.subheader("Lineage")
    lin = data.lineage(ctx.root, ctx.stamp, sample_id)
    frame(pd.DataFrame([{"dataset": x["dataset"], "step": x["step"], "run_id": x["run_id"],
                         "parents": ", ".join(f"{p.get('name')}@v{p.get('version')}" for p in x.get("parents") or []),
                         "created_at": x["created_at"]} for x in lin]), key="trace_lineage")
