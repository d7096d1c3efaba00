"""Global chronological split (ratios over all users' interactions by time, optional date window)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from storage.errors import ConfigError, NotFound
from storage.ingest.global_split import global_chronological_split
from storage.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.open(tmp_path / "ws")
    t0 = datetime(2024, 1, 1)
    with ws.transaction("test") as con:
        for k in range(100):               # 100 interactions, 5 users, one a day; plus another domain
            con.execute("INSERT INTO interactions VALUES (?, ?, ?, 4.0, 'books')",
                        [str(k % 5), str(k), t0 + timedelta(days=k)])
        con.execute("INSERT INTO interactions VALUES ('9', 'x', ?, 1.0, 'movies')", [t0])
        con.execute("INSERT INTO splits VALUES ('9', 'x', ?, 0, 'test', 'movies')", [t0])
    return ws


def test_global_split_cuts_by_time_over_all_users(ws):
    assert global_chronological_split(ws, domain="books") == {"train": 80, "valid": 10, "test": 10}
    rows = ws.query("SELECT split, max(ts), min(ts) FROM splits WHERE domain = 'books' GROUP BY split")
    span = {s: (lo, hi) for s, hi, lo in rows}
    assert span["train"][1] < span["valid"][0] and span["valid"][1] < span["test"][0]   # no future in train
    pos = ws.query("SELECT list(position ORDER BY ts) FROM splits WHERE user_id = '0'")[0][0]
    assert pos == list(range(20))
    assert ws.query("SELECT split FROM splits WHERE domain = 'movies'") == [("test",)]   # other domain untouched


def test_global_split_date_window_and_ratios(ws):
    got = global_chronological_split(ws, domain="books", ratios=(2, 1, 1), start="2024-01-11", end="2024-02-20")
    assert got == {"train": 20, "valid": 10, "test": 10}
    assert ws.query("SELECT min(ts) FROM splits WHERE domain = 'books'")[0][0] == datetime(2024, 1, 11)
    with pytest.raises(NotFound):
        global_chronological_split(ws, domain="books", start="2030-01-01")
    with pytest.raises(ConfigError):
        global_chronological_split(ws, ratios=(1, 1))
