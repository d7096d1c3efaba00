"""Shared fixtures. Expensive things (MovieLens ingest, SID build, the embedded model) are built once per
session into a template workspace and copied into each test's tmp dir, so tests stay independent and fast.

Area-specific fixtures live in tests/<area>/conftest.py; this file only holds what several areas share."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MiniLM item embeddings are cached per text hash; share them across test sessions and subprocesses so the
# MovieLens SID fixtures and the end-to-end demo embed the 1,682 titles once per machine, not per test.
os.environ.setdefault("RECOT_EMBEDDING_CACHE", str(Path.home() / ".cache" / "recot" / "embeddings"))


@pytest.fixture
def tmp_ws(tmp_path):
    """A fresh, empty workspace."""
    from storage.workspace import Workspace

    return Workspace.open(tmp_path / "ws")


@pytest.fixture(scope="session")
def _ml100k_template(tmp_path_factory) -> Path:
    from storage.ingest.movielens import ingest_movielens_100k
    from storage.workspace import Workspace

    root = tmp_path_factory.mktemp("ml100k") / "ws"
    ingest_movielens_100k(Workspace.open(root))
    return root


@pytest.fixture(scope="session")
def _ml100k_sids_template(_ml100k_template, tmp_path_factory) -> Path:
    from storage.workspace import Workspace
    from synth.sids.build import SidConfig, build_sids

    root = tmp_path_factory.mktemp("ml100k_sids") / "ws"
    shutil.copytree(_ml100k_template, root)
    build_sids(Workspace.open(root), SidConfig())
    return root


def _copy_ws(src: Path, dst: Path):
    from storage.workspace import Workspace

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return Workspace.open(dst)


@pytest.fixture
def ml100k_ws(_ml100k_template, tmp_path):
    """A private copy of a workspace with MovieLens-100k ingested (items, users, interactions, splits)."""
    return _copy_ws(_ml100k_template, tmp_path / "ws")


@pytest.fixture
def ml100k_sids_ws(_ml100k_sids_template, tmp_path):
    """A private copy of a MovieLens-100k workspace with a default SID version (3 x 256) built."""
    return _copy_ws(_ml100k_sids_template, tmp_path / "ws")


@pytest.fixture(scope="session")
def local_model_path() -> Path:
    """The embedded SmolLM2-135M-Instruct as a plain HF folder (converted once into the model cache)."""
    from synth.teacher.local_model import ensure_local_model

    return ensure_local_model()
