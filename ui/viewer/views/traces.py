"""Traces: browse the samples of one dataset version with filters, full-text search and paging — every
page is one DuckDB query with LIMIT/OFFSET over the Parquet parts, so it stays fast on 1M samples."""
from __future__ import annotations

import math

import streamlit as st

from ui.viewer import data
from ui.viewer.queries import TraceFilter
from ui.viewer.views.common import Ctx, frame, md, sample_refs

ANY = "(any)"


def _open_trace(ref: str) -> None:
    """Button callback: switch to the trace-detail page on the chosen sample (runs before the next script
    run, so setting the radio's key here is allowed)."""
    sample = st.session_state.get("traces_open")
    if sample:
        st.session_state["trace_dataset"] = ref
        st.session_state["trace_sample"] = sample
        st.session_state["page"] = "Trace detail"
        st.query_params.update({"page": "trace", "dataset": ref, "sample": sample})


def _open_clicked(ref: str, ids: list[str]) -> None:
    """Table selection callback: clicking a row opens that trace (one click, like a link)."""
    sel = st.session_state.get("traces_table")
    rows = list(getattr(getattr(sel, "selection", None), "rows", None) or
                ((sel or {}).get("selection", {}).get("rows", []) if isinstance(sel, dict) else []))
    if rows and 0 <= rows[0] < len(ids):
        st.session_state["traces_open"] = ids[rows[0]]
        _open_trace(ref)


def _pick(label: str, options: list[str], key: str) -> str | None:
    if not options:
        return None
    v = st.selectbox(label, [ANY] + options, key=key)
    return None if v == ANY else v


def render(ctx: Ctx) -> None:
    st.header("Traces")
    refs = sample_refs(ctx)
    if not refs:
        st.info("No sample datasets yet: run `recot synth run TASK` to generate traces.")
        return
    if st.session_state.get("traces_dataset") not in refs:
        st.session_state["traces_dataset"] = refs[0]
    ref = st.selectbox("Dataset version", refs, key="traces_dataset")
    dv = data.dv_of(ctx.root, ctx.stamp, ref)

    c = st.columns(4)
    with c[0]:
        task = _pick("Task", data.choices(ctx.root, ctx.stamp, ref, "task"), "traces_task")
    with c[1]:
        level = _pick("Level", data.choices(ctx.root, ctx.stamp, ref, "level"), "traces_level")
    with c[2]:
        mode = _pick("Mode", data.choices(ctx.root, ctx.stamp, ref, "mode"), "traces_mode")
    with c[3]:
        teacher = _pick("Teacher", data.choices(ctx.root, ctx.stamp, ref, "teacher"), "traces_teacher")
    c = st.columns(4)
    curated = ("keep" in {f["name"] for f in dv.manifest.get("schema", [])}
               or data.has_verdicts(ctx.root, ctx.stamp, ref))
    with c[0]:
        verdict = _pick("Verdict", ["keep", "drop"], "traces_verdict") if curated else None
    with c[1]:
        reason = _pick("Dropped by filter", data.reason_choices(ctx.root, ctx.stamp, ref), "traces_reason")
    with c[2]:
        review = _pick("Review status", data.review_status_choices(ctx.root, ctx.stamp), "traces_review")
    with c[3]:
        user = st.text_input("User id", key="traces_user").strip() or None
    c = st.columns([4, 1])
    with c[0]:
        search = st.text_input("Search prompt, reasoning and answer", key="traces_search",
                               placeholder="words, a title, a SID token like <s_a_12> …").strip() or None
    with c[1]:
        regex = st.checkbox("Regular expression", key="traces_regex")

    filt = TraceFilter(task=task, level=level, mode=mode, teacher=teacher, verdict=verdict, reason=reason,
                       user=user, review_status=review, search=search, regex=bool(regex and search))
    key = (ref,) + tuple(vars(filt).values())
    if st.session_state.get("_traces_filter_key") != key:  # new filter → back to page 1
        st.session_state["_traces_filter_key"] = key
        st.session_state["traces_page"] = 1
    filt_t = tuple(vars(filt).values())
    try:
        total = data.count_traces(ctx.root, ctx.stamp, ref, filt_t)
    except Exception as exc:  # e.g. an invalid regular expression: say so, don't crash the page
        st.warning(f"Query failed: {md(exc)}")
        return

    c = st.columns([2, 1, 1])
    with c[1]:
        size = st.selectbox("Page size", [25, 50, 100, 200], index=1, key="traces_page_size")
    pages = max(1, math.ceil(total / size))
    with c[2]:
        page = st.number_input("Page", min_value=1, max_value=pages, step=1, key="traces_page")
    with c[0]:
        active = filt.active()
        st.markdown(f"**{total:,}** of {dv.rows:,} samples match" +
                    (f" ({md(', '.join(f'{k}={v}' for k, v in active.items()))})" if active else "") +
                    f" — page {int(page)} of {pages}")
    df = data.trace_page(ctx.root, ctx.stamp, ref, filt_t, int(size), (int(page) - 1) * int(size))
    # what the trace page highlights
    st.session_state["trace_highlight"] = (search, bool(regex and search)) if search else None
    if df.empty:
        frame(df, key="traces_table")
        return
    ids = df["sample_id"].tolist()
    st.caption("Click a row to open its trace.")
    frame(df, key="traces_table", on_select=lambda: _open_clicked(ref, ids), selection_mode="single-row")
    previews = dict(zip(ids, df["answer_preview"] if "answer_preview" in df else [""] * len(ids)))
    tasks = dict(zip(ids, df["task"] if "task" in df else [""] * len(ids)))
    if st.session_state.get("traces_open") not in ids:
        st.session_state["traces_open"] = ids[0]
    c = st.columns([4, 1])
    with c[0]:
        st.selectbox("Trace to open", ids, key="traces_open",
                     format_func=lambda s: f"{s} · {tasks.get(s) or ''} · {(previews.get(s) or '')[:80]}")
    with c[1]:
        st.button("Open trace", key="traces_open_button", on_click=_open_trace, args=(ref,), type="primary")
