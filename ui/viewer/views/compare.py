"""Compare: two dataset versions side by side — row counts, samples added/removed (by sample_id), shifts
in keep rate, error rate and mean filter scores, and per-task counts."""
from __future__ import annotations

import streamlit as st

from ui.viewer import data
from ui.viewer.views.common import Ctx, frame, sample_refs


def render(ctx: Ctx) -> None:
    st.header("Compare versions")
    refs = sample_refs(ctx)
    if len(refs) < 2:
        st.info("Comparing needs two sample dataset versions (e.g. a synthesized version and its curated one).")
        return
    c = st.columns(2)
    with c[0]:
        a = st.selectbox("Version A", refs, index=1, key="compare_a")
    with c[1]:
        b = st.selectbox("Version B", refs, index=0, key="compare_b")
    if a == b:
        st.info("Pick two different versions.")
        return
    res = data.compare(ctx.root, ctx.stamp, a, b)
    diff = res["diff"]
    c = st.columns(5)
    c[0].metric("Rows A", f"{diff['rows_a']:,}")
    c[1].metric("Rows B", f"{diff['rows_b']:,}", delta=diff["rows_b"] - diff["rows_a"])
    c[2].metric("In both", "—" if diff["common"] is None else f"{diff['common']:,}")
    c[3].metric("Added in B", "—" if diff["added"] is None else f"{diff['added']:,}")
    c[4].metric("Removed in B", "—" if diff["removed"] is None else f"{diff['removed']:,}")

    st.subheader("Metric shifts")
    frame(res["shifts"], key="compare_shifts")
    st.subheader("Samples per task")
    frame(res["tasks"], key="compare_tasks")
    added, removed = data.added_removed(ctx.root, ctx.stamp, a, b)
    st.subheader("Added in B (first 50)")
    frame(added, key="compare_added")
    st.subheader("Removed in B (first 50)")
    frame(removed, key="compare_removed")
