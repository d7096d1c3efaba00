"""Shared record types: the Arrow schema of a sample (what synth writes, curation filters, review shows and
trainers read) and of a verdict. Kept in storage/ so that no package imports another sideways.

A *sample* is one chat example (alignment or CoT). Samples of one prompt share `prompt_id` (n samples per
prompt → rejection sampling). Every sample can be traced to its run, teacher, template version and the
teacher request that produced it (`request_key`, the teacher cache key).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

LEVELS = ("alignment", "R0", "R1", "R2", "R3")
MODES = ("none", "hint", "blind")

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])

SAMPLE_SCHEMA = pa.schema([
    ("sample_id", pa.string()),          # stable id: hash of (prompt_id, choice index) or of the deterministic content
    ("prompt_id", pa.string()),          # groups the n samples drawn for one prompt
    ("task", pa.string()),               # registered task name, e.g. "r3_recommend"
    ("level", pa.string()),              # one of LEVELS
    ("mode", pa.string()),               # one of MODES
    ("think", pa.bool_()),               # True: thinking variant (/think), False: /no_think variant
    ("domain", pa.string()),
    ("user_id", pa.string()),            # null for item-level tasks
    ("history_item_ids", pa.list_(pa.string())),
    ("target_item_ids", pa.list_(pa.string())),
    ("target_sids", pa.list_(pa.string())),
    ("messages", pa.list_(MESSAGE_TYPE)),  # the full chat, assistant answer last
    ("reasoning", pa.string()),          # text inside <think>…</think> (null when none)
    ("answer", pa.string()),             # text after </think> (or the whole completion)
    ("answer_sids", pa.list_(pa.string())),  # well-formed SIDs found in the answer, in order
    ("reference", pa.string()),          # JSON: task-specific reference (e.g. an R2 chain), may be null
    ("extra", pa.string()),              # JSON: task-specific extras (e.g. item pair relation)
    ("teacher", pa.string()),            # "<backend>:<model>" or "catalog" for deterministic tasks
    ("template_version", pa.string()),   # "<template name>@<version>"
    ("request_key", pa.string()),        # teacher cache key (null for deterministic tasks)
    ("run_id", pa.string()),
    ("sid_version", pa.int32()),
    ("error", pa.string()),              # null when the sample parsed; else why it did not (kept, filtered later)
    ("created_at", pa.timestamp("us", tz="UTC")),
])

# Columns a curated version adds to SAMPLE_SCHEMA: the final decision and the first reason to drop.
CURATED_FIELDS = [
    ("keep", pa.bool_()),
    ("rejected_by", pa.string()),
    ("reject_reason", pa.string()),
    ("scores", pa.string()),  # JSON {filter: score}
]
CURATED_SCHEMA = pa.schema(list(SAMPLE_SCHEMA) + [pa.field(n, t) for n, t in CURATED_FIELDS])

VERDICT_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("filter", pa.string()),
    ("keep", pa.bool_()),
    ("reason", pa.string()),
    ("score", pa.float64()),
])


def stable_id(*parts: Any, length: int = 20) -> str:
    """Deterministic id from parts (JSON-encoded), so re-running a step yields the same ids."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()
    return h[:length]


@dataclass
class Item:
    item_id: str
    title: str
    description: str | None = None
    categories: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    domain: str = "default"


@dataclass
class Interaction:
    user_id: str
    item_id: str
    ts: Any  # datetime
    rating: float | None = None
    domain: str = "default"


def empty_samples() -> pa.Table:
    return SAMPLE_SCHEMA.empty_table()


def samples_from_pylist(rows: list[dict[str, Any]]) -> pa.Table:
    """Build a sample table from dicts, filling absent columns with nulls; rejects unknown columns so a
    typo in a task's parser fails loudly instead of silently dropping data."""
    names = set(SAMPLE_SCHEMA.names)
    for i, r in enumerate(rows):
        unknown = set(r) - names
        if unknown:
            raise ValueError(f"sample row {i}: unknown column(s) {sorted(unknown)}")
    return pa.Table.from_pylist([{n: r.get(n) for n in SAMPLE_SCHEMA.names} for r in rows], schema=SAMPLE_SCHEMA)
