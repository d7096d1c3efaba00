"""recot viewer — the Streamlit script `recot ui` runs (`streamlit run ui/viewer/app.py -- --workspace W`).

One script, five pages chosen in the sidebar (a radio keyed "page", so other pages can switch to the trace
detail by setting `st.session_state.page`). A trace can also be deep-linked:
`?page=trace&dataset=NAME@vN&sample=SAMPLE_ID`.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `streamlit run` puts only this folder on sys.path
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from storage.errors import WorkspaceBusy  # noqa: E402
from ui.viewer import data  # noqa: E402
from ui.viewer.views import common, compare, overview, sids, trace, traces  # noqa: E402

PAGES = {"Overview": overview.render, "Traces": traces.render, "Trace detail": trace.render,
         "SIDs": sids.render, "Compare": compare.render}
_DEEP_LINK = {"overview": "Overview", "traces": "Traces", "trace": "Trace detail", "sids": "SIDs",
              "compare": "Compare"}


def _apply_deep_link() -> None:
    """Honour ?page=…&dataset=…&sample=… once per session."""
    if st.session_state.get("_deep_link_done"):
        return
    st.session_state["_deep_link_done"] = True
    qp = st.query_params
    if qp.get("sample"):
        st.session_state["trace_sample"] = qp.get("sample")
        if qp.get("dataset"):
            st.session_state["trace_dataset"] = qp.get("dataset")
        st.session_state["page"] = "Trace detail"
    elif qp.get("page") in _DEEP_LINK:
        st.session_state["page"] = _DEEP_LINK[qp.get("page")]


AUTO_REFRESH_S = 5


@st.fragment(run_every=AUTO_REFRESH_S)
def _watch(root: str, shown: tuple | None) -> None:
    """Every few seconds, re-check the catalog stamp; when a job has landed something new (a version, a
    finished run, pulled reviews), rerun the whole page so it shows up without a click."""
    if st.session_state.get("auto_refresh", True) and data.stamp(root) != shown:
        st.rerun(scope="app")


def main() -> None:
    st.set_page_config(page_title="recot viewer", page_icon="🎬", layout="wide")
    root = data.workspace_root()
    _apply_deep_link()
    with st.sidebar:
        st.title("recot viewer")
        st.radio("Page", list(PAGES), key="page")
        st.caption("Workspace")
        st.text(root)
        if st.button("Refresh", help="Re-read the catalog now (it is also re-checked every few seconds)."):
            st.cache_data.clear()
        st.toggle("Auto-refresh", value=True, key="auto_refresh",
                  help=f"Re-check the catalog every {AUTO_REFRESH_S} s and show new versions, runs and reviews.")
    try:
        stamp = data.stamp(root)
    except WorkspaceBusy as exc:  # a writer held the catalog for longer than reader()'s retries
        st.warning(f"{common.md(exc)} — the page will retry on the next refresh.")
        return
    with st.sidebar:
        _watch(root, stamp)
    if stamp is None:
        common.guidance_no_workspace(root)
        return
    ctx = common.Ctx(root=root, stamp=stamp)
    counts = data.counts(root, stamp)
    if common.is_empty(counts):
        common.guidance_empty(root)
        return
    PAGES[st.session_state.get("page") or "Overview"](ctx)


main()
