"""Fixtures for the viewer tests (the workspace they browse is built in ui_workspace.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ui_workspace import APP_PATH, build_viewer_workspace

from storage.workspace import Workspace


@pytest.fixture(scope="session")
def viewer_ws_path(tmp_path_factory) -> Path:
    """A complete viewer workspace, shared by tests that only read it (the viewer never writes)."""
    root = tmp_path_factory.mktemp("viewer") / "ws"
    build_viewer_workspace(root)
    return root


@pytest.fixture
def viewer_ws_copy(viewer_ws_path, tmp_path) -> Workspace:
    """A private copy, for tests that add data while the viewer runs."""
    dst = tmp_path / "ws"
    shutil.copytree(viewer_ws_path, dst, ignore=shutil.ignore_patterns(".lock"))
    return Workspace.open(dst)


@pytest.fixture
def app_test(monkeypatch):
    """Factory: an AppTest of the viewer on a given workspace root."""
    from streamlit.testing.v1 import AppTest

    def make(root: Path) -> AppTest:
        monkeypatch.setenv("RECOT_VIEWER_WORKSPACE", str(root))
        at = AppTest.from_file(str(APP_PATH), default_timeout=60)
        return at

    return make
