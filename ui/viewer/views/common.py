"""Shared bits of the pages: the context every page gets, empty-workspace guidance, safe labels."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from ui.viewer import data
from ui.viewer.queries import has_samples, is_empty  # noqa: F401  (is_empty re-exported for app.py)
from ui.viewer.render import escape_markdown

GETTING_STARTED = """\
recot ingest movielens-100k               # items, users, interactions, chronological splits
recot sids build                          # semantic IDs (residual K-means codebook) for every item
recot synth run r3_recommend --users 20   # teacher-generated reasoning traces → dataset `cot`
recot curate --dataset cot                # filter chain → `cot-curated` with per-filter verdicts
recot ui                                  # this viewer"""


@dataclass(frozen=True)
class Ctx:
    root: str
    stamp: tuple


def md(text: object) -> str:
    """Escape data-derived text for labels/captions/headers, which Streamlit renders as Markdown."""
    return escape_markdown("" if text is None else str(text))


def guidance_no_workspace(root: str) -> None:
    st.header("No workspace yet")
    st.info(f"There is no recot workspace at {md(root)}. Create one by ingesting data, or start the viewer "
            "on an existing workspace with `recot ui --workspace PATH`.")
    st.code(GETTING_STARTED, language="bash")


def guidance_empty(root: str) -> None:
    st.header("This workspace is empty")
    st.info(f"The workspace at {md(root)} has no items, datasets or runs yet. "
            "Run `recot ingest movielens-100k` to get started, then build SIDs and synthesize traces:")
    st.code(GETTING_STARTED, language="bash")


def sample_refs(ctx: Ctx) -> list[str]:
    """Refs of dataset versions that hold samples (have a sample_id column), newest first."""
    df = data.datasets(ctx.root, ctx.stamp)
    refs = []
    for ref in df.sort_values(["created_at", "name", "version"], ascending=False)["dataset"]:
        if has_samples(data.dv_of(ctx.root, ctx.stamp, ref)):
            refs.append(ref)
    return refs


def frame(df: pd.DataFrame, **kw) -> None:
    """A dataframe, or a short note when there is nothing to show."""
    if df is None or df.empty:
        st.caption("nothing yet")
    else:
        st.dataframe(df, hide_index=True, **kw)
