"""SIDs: the codebook as a tree (items per code, one level at a time), the items under a prefix,
collisions (items that needed an extra level), and item search by title, id or SID."""
from __future__ import annotations

import streamlit as st

from storage.sid import LETTERS
from ui.viewer import data
from ui.viewer.views.common import Ctx, frame

ALL = "(all)"


def render(ctx: Ctx) -> None:
    st.header("Semantic IDs")
    versions = data.sid_versions(ctx.root, ctx.stamp)
    if versions.empty:
        st.info("No SID version yet: run `recot sids build` to give every item a semantic ID.")
        _search(ctx, None)
        return
    sv = st.selectbox("SID version", versions["sid_version"].tolist(), key="sids_version",
                      format_func=lambda v: f"v{v}")
    info = versions[versions["sid_version"] == sv].iloc[0]
    levels = data.base_levels(ctx.root, ctx.stamp, int(sv))
    coll = data.collisions(ctx.root, ctx.stamp, int(sv))
    c = st.columns(4)
    c[0].metric("Items with a SID", f"{int(info['items_with_sid']):,}")
    c[1].metric("Levels", levels)
    c[2].metric("Codebook size", "—" if info["codebook_size"] is None or info["codebook_size"] != info["codebook_size"]
                else int(info["codebook_size"]))
    c[3].metric("Items in collisions", f"{len(coll):,}")

    st.subheader("Codebook tree")
    prefix: tuple[int, ...] = ()
    cols = st.columns(levels or 1)
    for lv in range(levels):
        counts = data.code_counts(ctx.root, ctx.stamp, int(sv), prefix)
        if counts.empty:
            break
        with cols[lv]:
            letter = LETTERS[lv]
            options = [ALL] + counts["code"].tolist()
            n_of = dict(zip(counts["code"], counts["items"]))
            pick = st.selectbox(f"Level {letter} ({len(counts)} codes used)", options, key=f"sids_level_{lv}_{prefix}",
                                format_func=lambda v, n_of=n_of, letter=letter:
                                    v if v == ALL else f"{letter}{v} · {n_of[v]} items")
            st.bar_chart(counts.set_index("code")["items"].head(64), height=160, x_label=f"code ({letter})",
                         y_label="items")
        if pick == ALL:
            break
        prefix = prefix + (int(pick),)
    label = "·".join(f"{LETTERS[i]}{c}" for i, c in enumerate(prefix)) or "all codes"
    st.caption(f"Items under {label}")
    frame(data.items_with_prefix(ctx.root, ctx.stamp, int(sv), prefix), key="sids_items")

    st.subheader("Collisions")
    if coll.empty:
        st.caption(f"No collisions: every item's first {levels} codes are unique.")
    else:
        st.caption(f"{coll['base_codes'].astype(str).nunique():,} prefixes shared by several items; "
                   "each item gets an extra level to stay unique.")
        frame(coll, key="sids_collisions")
    _search(ctx, int(sv))


def _search(ctx: Ctx, sv: int | None) -> None:
    st.subheader("Find an item")
    text = st.text_input("Title, item id or SID", key="sids_search")
    if text.strip():
        frame(data.search_items(ctx.root, ctx.stamp, sv, text.strip()), key="sids_search_results")
