"""Shared ingest test data (importable by name; a conftest is not: several test folders have one)."""
from __future__ import annotations

import gzip
from pathlib import Path

# 4 users x a few items; timestamps chosen so the split is predictable (u1: i1 < i2 < i3 < i4).
REVIEWS = [
    ("u1", "B001", 5.0, 1_300_000_000), ("u1", "B002", 4.0, 1_300_000_100), ("u1", "B003", 3.0, 1_300_000_200),
    ("u1", "B004", 2.0, 1_300_000_300), ("u2", "B001", 4.0, 1_300_000_050), ("u2", "B003", 5.0, 1_300_000_150),
    ("u2", "B002", 1.0, 1_300_000_250), ("u3", "B004", 4.0, 1_300_000_000), ("u3", "B001", 3.0, 1_300_000_000),
    ("u4", "B002", 5.0, 1_300_000_500),
]
ITEMS = {"B001": "Red lipstick", "B002": "Face cream", "B003": "Nail polish", "B004": "Hair dryer"}


def write_lines(path: Path, lines: list[str], *, gz: bool | None = None) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if gz if gz is not None else path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path
