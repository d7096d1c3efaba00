"""Curation fixtures (helpers live in curation_samples.py)."""
from __future__ import annotations

import pytest
from curation_samples import build_catalog


@pytest.fixture
def cat_ws(tmp_ws):
    """An empty workspace with 12 MovieLens-like items and SID version 1 (3 levels)."""
    build_catalog(tmp_ws)
    return tmp_ws
