"""A tiny, self-contained training workspace: 16 items with 3-level SIDs (codebook 4), 6 users with
chronological splits, and a small curated R3 dataset (thinking + non-thinking rows, a few rejected),
all written through the storage APIs. Built once per session and copied per test."""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from storage.records import CURATED_SCHEMA, stable_id
from storage.sid import format_sid

N_ITEMS = 16
N_USERS = 6
HIST = 6  # interactions per user: 4 train, 1 valid, 1 test


def _codes(i: int) -> tuple[int, int, int]:
    return (i // 8, (i // 2) % 4, i % 2)


def build_tiny_ws(root):
    import pyarrow as pa

    from storage.datasets import write_version
    from storage.workspace import Workspace
    from trainers.prompts import r3_messages

    ws = Workspace.open(root)
    items = [(str(i), f"Movie {i}", f"A film about topic {i % 4}", ["Drama" if i % 2 else "Comedy"])
             for i in range(N_ITEMS)]
    sids = {str(i): format_sid(_codes(i)) for i in range(N_ITEMS)}
    t0 = datetime(2024, 1, 1)
    splits = []
    for u in range(N_USERS):
        seq = [(u * 3 + k * 2) % N_ITEMS for k in range(HIST)]
        for pos, it in enumerate(seq):
            split = "test" if pos == HIST - 1 else "valid" if pos == HIST - 2 else "train"
            splits.append((str(u), str(it), t0 + timedelta(days=u * 10 + pos), pos, split))
    with ws.transaction("test") as con:
        for it in items:
            con.execute("INSERT INTO items VALUES (?, ?, ?, ?, NULL, 'default')", list(it))
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 4, ?, '{}', '{}')", [N_ITEMS])
        for it, s in sids.items():
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [it, list(_codes(int(it))), s])
        for u, it, ts, pos, sp in splits:
            con.execute("INSERT INTO interactions VALUES (?, ?, ?, 4.0, 'default')", [u, it, ts])
            con.execute("INSERT INTO splits VALUES (?, ?, ?, ?, ?, 'default')", [u, it, ts, pos, sp])
    # curated R3 samples: predict the valid item from the train history (never the test item)
    rows = []
    now = datetime.now(UTC)
    for u in range(N_USERS):
        seq = [s for s in splits if s[0] == str(u)]
        hist = [(f"Movie {s[1]}", sids[s[1]], s[2]) for s in seq[:HIST - 2]]
        target = seq[HIST - 2][1]
        for think in (True, False):
            prompt = r3_messages(hist, think=think)
            # synth's stored answer shape (Qwen3): a think block, empty for /no_think
            answer = (f"<think>\nThe user likes topic {int(target) % 4}.\n</think>\n\n{sids[target]} Movie {target}"
                      if think else f"<think>\n\n</think>\n\n{sids[target]} Movie {target}")
            pid = stable_id("r3", u, think)
            rows.append({
                "sample_id": stable_id(pid, 0), "prompt_id": pid, "task": "r3_recommend", "level": "R3",
                "mode": "blind", "think": think, "domain": "default", "user_id": str(u),
                "history_item_ids": [s[1] for s in seq[:HIST - 2]], "target_item_ids": [target],
                "target_sids": [sids[target]], "messages": prompt + [{"role": "assistant", "content": answer}],
                "reasoning": None, "answer": answer, "answer_sids": [sids[target]], "reference": None,
                "extra": None, "teacher": "test:fixture", "template_version": "r3@test", "request_key": None,
                "run_id": None, "sid_version": 1, "error": None, "created_at": now,
                "keep": u != 5, "rejected_by": None if u != 5 else "outcome",
                "reject_reason": None if u != 5 else "wrong SID", "scores": json.dumps({})})
    write_version(ws, "r3_curated", pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), step="test")
    return ws


@pytest.fixture(scope="session")
def _tiny_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_train") / "ws"
    build_tiny_ws(root)
    return root


@pytest.fixture
def tiny_ws(_tiny_template, tmp_path):
    """A private copy of the tiny training workspace (SID version 1, dataset r3_curated@v1)."""
    from storage.workspace import Workspace

    dst = tmp_path / "ws"
    shutil.copytree(_tiny_template, dst, ignore=shutil.ignore_patterns(".lock"))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def tiny_model(_tiny_template, tmp_path_factory):
    """A from-scratch 1-layer, 64-wide Llama (seeded) with SmolLM2's tokenizer and chat template plus the tiny
    workspace's SID tokens (version 1): an ordinary model folder every trainer takes as `model:`.

    For tests of plumbing that does not depend on what a pretrained LM knows (routing, lineage, rejection
    sampling, constrained decoding, a loss that drops on a repeated row): a step costs milliseconds instead of
    the seconds a SmolLM2-135M step takes on CPU. Read-only: trainers write their outputs elsewhere."""
    from storage.workspace import Workspace
    from trainers.models import scratch_model

    out = tmp_path_factory.mktemp("tiny_model") / "scratch"
    scratch_model(Workspace.open(_tiny_template), out, layers=1, hidden=64, heads=2, seed=0)
    return out
