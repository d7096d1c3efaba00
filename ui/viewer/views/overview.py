"""Overview: what is in the workspace — datasets and versions, the curation funnel, runs with their
accounting, review progress."""
from __future__ import annotations

import streamlit as st

from ui.viewer import data
from ui.viewer.views.common import Ctx, frame, md


def render(ctx: Ctx) -> None:
    st.header("Overview")
    counts = data.counts(ctx.root, ctx.stamp)
    cols = st.columns(6)
    for col, (label, key) in zip(cols, [("Items", "items"), ("Users", "users"), ("Interactions", "interactions"),
                                        ("Dataset versions", "dataset_versions"), ("Runs", "runs"),
                                        ("Reviews", "reviews")]):
        col.metric(label, f"{counts.get(key, 0):,}")

    live = data.running(ctx.root, ctx.stamp)
    if not live.empty:
        st.subheader("Running now")
        st.caption("Jobs in progress (their dataset version appears when they finish); refreshed every few "
                   "seconds.")
        frame(live, key="overview_running")

    st.subheader("Datasets")
    ds = data.datasets(ctx.root, ctx.stamp)
    if ds.empty:
        st.info("No dataset versions yet: synthesize traces with `recot synth run TASK`, then curate them with "
                "`recot curate --dataset NAME`.")
    else:
        frame(ds.drop(columns=["name", "version"]), key="overview_datasets")

    _funnel(ctx, ds)

    st.subheader("Runs")
    runs = data.runs(ctx.root, ctx.stamp)
    frame(runs, key="overview_runs")

    st.subheader("Review progress")
    rp = data.review_progress(ctx.root, ctx.stamp)
    if rp.empty:
        st.caption("No reviews pulled yet (`recot review up`, `recot review push --dataset NAME`, annotate in "
                   "Argilla, then `recot review pull`).")
    else:
        frame(rp, key="overview_reviews")
        by_status = rp.groupby("status", as_index=True)["samples"].sum()
        st.bar_chart(by_status, horizontal=True, x_label="status", y_label="samples")


def funnel_chart(fn):
    """Kept (green) and dropped (red) per filter in chain order, each bar labelled with its dropped count and
    share: 50 dropped of 28,011 is a sliver of red no one sees, so the number is written next to it."""
    import altair as alt
    import pandas as pd

    rows = []
    for i, r in enumerate(fn.to_dict("records")):
        n_in, out = r.get("in"), r.get("out")
        dropped = 0 if pd.isna(r.get("dropped")) else int(r["dropped"])
        share = f" ({dropped / n_in:.2%})" if dropped and n_in and not pd.isna(n_in) else ""
        label = f"−{dropped:,}{share}" if dropped else "none dropped"
        for part, n in (("kept", out), ("dropped", dropped)):
            rows.append({"order": i, "filter": str(r["filter"]), "part": part,
                         "samples": 0 if n is None or pd.isna(n) else int(n), "label": label})
    df = pd.DataFrame(rows)
    order = [str(f) for f in fn["filter"]]
    totals = df.groupby(["order", "filter", "label"], as_index=False)["samples"].sum()
    totals["dropped_any"] = totals["label"] != "none dropped"
    # room on the right for the labels of the longest bars
    x_scale = alt.Scale(domain=[0, max(1, int(totals["samples"].max())) * 1.3])
    base = alt.Chart(df).encode(y=alt.Y("filter:N", sort=order, title="filter (chain order)"))
    bars = base.mark_bar().encode(
        x=alt.X("sum(samples):Q", title="samples", stack=True, scale=x_scale),
        color=alt.Color("part:N", scale=alt.Scale(domain=["kept", "dropped"], range=["#2e7d32", "#c62828"]),
                        title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["filter:N", "part:N", "samples:Q"])
    text = alt.Chart(totals).mark_text(align="left", dx=4, fontWeight="bold").encode(
        y=alt.Y("filter:N", sort=order), x=alt.X("samples:Q", scale=x_scale), text="label:N",
        color=alt.condition("datum.dropped_any", alt.value("#c62828"), alt.value("#757575")))
    return (bars + text).properties(height=max(120, 34 * len(order)))


def _funnel(ctx: Ctx, ds) -> None:
    st.subheader("Curation funnel")
    curated = ds[ds["curated"]].sort_values(["created_at"], ascending=False)["dataset"].tolist() if not ds.empty else []
    if not curated:
        st.caption("No curated version yet (`recot curate --dataset NAME`).")
        return
    ref = st.selectbox("Curated version", curated, key="overview_funnel_version")
    fn = data.funnel(ctx.root, ctx.stamp, ref)
    if fn.empty:
        st.caption(f"{md(ref)} has no funnel report and no verdicts.")
        return
    st.altair_chart(funnel_chart(fn), width="stretch")
    first_in = fn["in"].dropna().iloc[0] if fn["in"].notna().any() else None
    last_out = fn["out"].dropna().iloc[-1] if fn["out"].notna().any() else None
    if first_in:
        st.caption(f"{int(first_in):,} samples in → {int(last_out or 0):,} kept "
                   f"({(last_out or 0) / first_in:.1%}) after {len(fn)} filters.")
    frame(fn.drop(columns=["reasons"]), key="overview_funnel_table")
    from ui.viewer.queries import funnel_reasons

    reasons = funnel_reasons(fn)
    if not reasons.empty:
        st.caption("Drop reasons")
        frame(reasons, key="overview_funnel_reasons")
