"""Every config shipped in configs/ loads with the code that uses it (a typo there would only show up when a
user ran it)."""
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "teachers").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_teacher_configs_load(path):
    from synth.teacher.config import TeacherConfig

    cfg = TeacherConfig.coerce(str(path))
    assert cfg.teacher_id.startswith(cfg.backend + ":")
    assert "api_key" not in path.read_text().replace("api_key_env", "")


@pytest.mark.parametrize("path", sorted((CONFIGS / "curation").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_curation_chains_build(path):
    from curation.config import load_chain

    cfg, source = load_chain(str(path))
    assert cfg.build(source), f"{path.name} builds no filters"
