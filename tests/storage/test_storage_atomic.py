"""storage.atomic: a file is either the old one or the new one, never torn, and permissions are exact."""
from __future__ import annotations

import json
import os
import stat

import pytest

from storage.atomic import atomic_open, atomic_replace, atomic_write_bytes, atomic_write_json, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_create_parents_and_replace_the_old_content(tmp_path):
    p = tmp_path / "a" / "b" / "f.json"
    atomic_write_json(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.json"]  # no temp file left behind


def test_mode_is_exact_even_under_a_restrictive_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_json(tmp_path / "secret.json", {"k": "v"}, mode=0o600)
        atomic_write_text(tmp_path / "shared.txt", "x", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret.json") == 0o600
    assert _mode(tmp_path / "shared.txt") == 0o644


def test_default_mode_is_what_open_gives(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.txt")


def test_a_failure_mid_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    p = tmp_path / "state.json"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(p, "w") as fh:
            fh.write("half of the new cont")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_atomic_replace_publishes_a_streamed_file(tmp_path):
    src = tmp_path / "tmp" / "part.jsonl"
    src.parent.mkdir()
    src.write_text('{"a": 1}\n')
    atomic_replace(src, tmp_path / "out" / "rejects.jsonl")
    assert not src.exists() and (tmp_path / "out" / "rejects.jsonl").read_text() == '{"a": 1}\n'


def test_publish_dir_replaces_whole_and_cleans_only_dead_writers_leftovers(tmp_path):
    """A folder is published whole (the old one swapped out), a failing write leaves the old one untouched,
    and temp folders of a killed writer of the same kind go while a live writer's and other kinds' stay."""
    import os
    import subprocess
    import sys

    from storage.atomic import publish_dir

    out = tmp_path / "model"
    publish_dir(out, lambda d: (d / "w.bin").write_text("v1"), kind="model")
    assert (out / "w.bin").read_text() == "v1"

    def failing(d):
        (d / "w.bin").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish_dir(out, failing, kind="model")
    assert (out / "w.bin").read_text() == "v1" and not list(tmp_path.glob(".tmp-model-*"))

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f".tmp-model-{dead}-abc").mkdir()             # a killed writer's
    (tmp_path / f".tmp-model-{os.getpid()}-live").mkdir()      # this live process's
    (tmp_path / f".tmp-export-{dead}-abc").mkdir()            # another kind's: not this writer's business
    publish_dir(out, lambda d: (d / "w.bin").write_text("v2"), kind="model")
    assert (out / "w.bin").read_text() == "v2"
    left = sorted(p.name for p in tmp_path.glob(".tmp-*"))
    assert left == [f".tmp-export-{dead}-abc", f".tmp-model-{os.getpid()}-live"], left
