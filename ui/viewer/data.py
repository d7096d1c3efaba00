"""Cached wrappers around `queries` for the Streamlit pages.

Every cached function takes the workspace root and the catalog *stamp* (`queries.catalog_stamp`): while
nothing changes in the catalog, reruns are served from the cache; when a job lands a new dataset version,
finishes a run or pulls reviews, the stamp changes and the pages re-query. The stamp itself is cached
for a few seconds so a burst of widget clicks opens the catalog once.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from storage.datasets import DatasetVersion, get_version
from ui.viewer import queries as q

STAMP_TTL_S = 3
DATA_TTL_S = 600
ENV_VAR = "RECOT_VIEWER_WORKSPACE"


def workspace_root() -> str:
    """`--workspace W` after `--` on the streamlit command line, else $RECOT_VIEWER_WORKSPACE, else
    $RECOT_WORKSPACE, else ./recot-data (what `recot ui` passes, in that order of precedence)."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a in ("--workspace", "-w") and i + 1 < len(argv):
            return str(Path(argv[i + 1]).expanduser().resolve())
        if a.startswith("--workspace="):
            return str(Path(a.split("=", 1)[1]).expanduser().resolve())
    env = os.environ.get(ENV_VAR) or os.environ.get("RECOT_WORKSPACE") or "./recot-data"
    return str(Path(env).expanduser().resolve())


def _ws(root: str):
    ws = q.open_readonly(root)
    if ws is None:
        raise FileNotFoundError(f"no workspace catalog at {root}")
    return ws


@st.cache_data(ttl=STAMP_TTL_S, show_spinner=False)
def stamp(root: str) -> tuple | None:
    ws = q.open_readonly(root)
    return None if ws is None else q.catalog_stamp(ws)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def counts(root: str, stamp_: tuple) -> dict[str, int]:
    return q.counts(_ws(root))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def datasets(root: str, stamp_: tuple) -> pd.DataFrame:
    return q.datasets_table(_ws(root))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def version(root: str, stamp_: tuple, name: str, ver: int) -> DatasetVersion:
    return get_version(_ws(root), name, ver)


def dv_of(root: str, stamp_: tuple, ref: str) -> DatasetVersion:
    name, _, v = ref.rpartition("@v")
    return version(root, stamp_, name, int(v))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def runs(root: str, stamp_: tuple) -> pd.DataFrame:
    return q.runs_table(_ws(root))


@st.cache_data(ttl=3, show_spinner=False)   # a running job's counts move without a new version: re-read often
def running(root: str, stamp_: tuple) -> pd.DataFrame:
    return q.running_runs(_ws(root))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def review_progress(root: str, stamp_: tuple) -> pd.DataFrame:
    return q.review_progress(_ws(root))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def funnel(root: str, stamp_: tuple, ref: str) -> pd.DataFrame:
    return q.funnel(_ws(root), dv_of(root, stamp_, ref))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def choices(root: str, stamp_: tuple, ref: str, column: str) -> list[str]:
    return q.choices(dv_of(root, stamp_, ref), column)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def reason_choices(root: str, stamp_: tuple, ref: str) -> list[str]:
    return q.reason_choices(_ws(root), dv_of(root, stamp_, ref))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def has_verdicts(root: str, stamp_: tuple, ref: str) -> bool:
    return q.has_verdicts(_ws(root), dv_of(root, stamp_, ref))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def review_status_choices(root: str, stamp_: tuple) -> list[str]:
    return q.review_status_choices(_ws(root))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=256)
def count_traces(root: str, stamp_: tuple, ref: str, filt: tuple) -> int:
    return q.count_traces(_ws(root), dv_of(root, stamp_, ref), q.TraceFilter(*filt))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=256)
def trace_page(root: str, stamp_: tuple, ref: str, filt: tuple, limit: int, offset: int) -> pd.DataFrame:
    return q.trace_page(_ws(root), dv_of(root, stamp_, ref), q.TraceFilter(*filt), limit=limit, offset=offset)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=64)
def trace_detail(root: str, stamp_: tuple, ref: str, sample_id: str) -> dict | None:
    return q.trace_detail(_ws(root), dv_of(root, stamp_, ref), sample_id)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=64)
def lineage(root: str, stamp_: tuple, sample_id: str) -> list[dict]:
    return q.lineage_of(_ws(root), sample_id)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def sid_versions(root: str, stamp_: tuple) -> pd.DataFrame:
    return q.sid_versions_table(_ws(root))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def code_counts(root: str, stamp_: tuple, sid_version: int, prefix: tuple) -> pd.DataFrame:
    return q.code_counts(_ws(root), sid_version, prefix)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def items_with_prefix(root: str, stamp_: tuple, sid_version: int, prefix: tuple) -> pd.DataFrame:
    return q.items_with_prefix(_ws(root), sid_version, prefix)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def collisions(root: str, stamp_: tuple, sid_version: int) -> pd.DataFrame:
    return q.collisions(_ws(root), sid_version)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def base_levels(root: str, stamp_: tuple, sid_version: int) -> int:
    return q.base_levels(_ws(root), sid_version)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=64)
def search_items(root: str, stamp_: tuple, sid_version: int | None, text: str) -> pd.DataFrame:
    return q.search_items(_ws(root), sid_version, text)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=32)
def compare(root: str, stamp_: tuple, ref_a: str, ref_b: str) -> dict:
    return q.compare(_ws(root), dv_of(root, stamp_, ref_a), dv_of(root, stamp_, ref_b))


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False, max_entries=32)
def added_removed(root: str, stamp_: tuple, ref_a: str, ref_b: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return q.added_removed(dv_of(root, stamp_, ref_a), dv_of(root, stamp_, ref_b))
