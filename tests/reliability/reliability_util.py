"""Shared pieces of the reliability suite: run the real `recot` CLI (in-process for bad-input cases, as a
subprocess for kill -9 cases), check a workspace with `recot workspace check`, and build synthetic
catalogs (items + users + interactions + splits + one SID version) directly with SQL, sized so a real
step takes a few seconds — long enough to be killed in the middle, short enough for a lean suite."""
from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECOT = str(Path(sys.executable).parent / "recot")
SEED = int(os.environ.get("RECOT_CRASH_SEED", "11"))


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(args: list[str], env: dict[str, str] | None = None) -> CliResult:
    """`recot ARGS` exactly as a user runs it (ui.cli.main: RecotError -> one line + exit code), in-process
    so a bad-input case costs milliseconds instead of an interpreter start. An exception that escapes
    main() is what a user would see as a traceback, so it is re-raised and fails the test."""
    from ui import cli

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_env = sys.argv, {k: os.environ.get(k) for k in (env or {})}
    sys.argv = ["recot", *map(str, args)]
    os.environ.update(env or {})
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_clean_error(r: CliResult, code: int, *needles: str) -> str:
    """A bad input must end with exit `code`, ONE `error:` line naming what is wrong, and no traceback."""
    assert r.code == code, (r.code, r.out, r.err)
    assert "Traceback" not in r.text, r.text
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error:") or ln.startswith("Error:")
            or ln.startswith("Usage:") or ln.startswith("Try ") or ln.startswith("╭") or ln.startswith("│")
            or ln.startswith("╰")]
    assert errs, r.text
    msg = next((ln for ln in lines if ln.startswith("error:")), None) or r.err.strip()
    for n in needles:
        assert n in r.err, (n, r.err)
    return msg


def recot_popen(args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """The real CLI as a separate process (so SIGKILL hits it, not the test)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "RECOT_LOG_LEVEL": "INFO", **(env or {})}
    fh = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([RECOT, *map(str, args)], cwd=ROOT, env=e, stdout=fh, stderr=fh)


def recot_run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "RECOT_LOG_LEVEL": "INFO", **(env or {})}
    return subprocess.run([RECOT, *map(str, args)], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=timeout)


def kill9(proc: subprocess.Popen) -> bool:
    """SIGKILL `proc` if it is still running; True when it was killed mid-work."""
    alive = proc.poll() is None
    if alive:
        proc.kill()
    proc.wait(timeout=30)
    return alive


def wait_until(cond, timeout: float = 60, proc: subprocess.Popen | None = None, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(step)
    return False


def workspace_check(ws: Path) -> CliResult:
    """`recot workspace check -w WS` (what the user runs after a crash)."""
    return run_cli(["workspace", "check", "-w", str(ws)])


def assert_check_after_kill(ws: Path) -> None:
    """Right after a kill -9 the check may only report repairable unfinished writes (`.tmp-*` leftovers, a
    version folder whose catalog row never committed), and `--repair` must then leave a workspace that checks
    clean."""
    r = workspace_check(ws)
    if r.code == 0:
        assert "consistent" in r.out
        return
    assert r.code == 1, r.text
    from storage.integrity import check_workspace
    from storage.workspace import Workspace

    problems = check_workspace(Workspace.open(ws, create=False))
    assert problems and all(p.kind in ("temp_leftover", "uncommitted_version") and p.repairable
                            for p in problems), \
        [str(p) for p in problems]
    r = run_cli(["workspace", "check", "-w", str(ws), "--repair"])
    assert r.code == 0 and "consistent" in r.out, r.text


def assert_check_ok(ws: Path) -> None:
    r = workspace_check(ws)
    assert r.code == 0 and "consistent" in r.out, r.text


# ------------------------------------------------------------------------------------------ catalogs
def sid_of(i: int) -> str:
    from storage.sid import format_sid

    return format_sid([i % 8, (i // 8) % 16, i])


def build_catalog(ws, *, n_items: int = 300, n_users: int = 120, seq_len: int = 8, seed: int = 0,
                  domain: str = "movies") -> None:
    """Items with titles/categories, users with `seq_len` chronological interactions each (leave-last-out
    split), and SID version 1 where item i is <a_{i%8}><b_{i//8%16}><c_i> (unique by the last level)."""
    rng = random.Random(seed)
    cats = ["Drama", "Comedy", "Action", "Romance", "Sci-Fi", "Horror", "Thriller"]
    items = [(f"m{i}", f"Movie {i} ({1950 + i % 70})", f"A film numbered {i}.", [cats[i % len(cats)]],
              json.dumps({"year": 1950 + i % 70}), domain) for i in range(n_items)]
    t0 = datetime(2020, 1, 1)
    inter, splits = [], []
    for u in range(n_users):
        seq = rng.sample(range(n_items), seq_len)
        for pos, i in enumerate(seq):
            ts = t0 + timedelta(days=pos, minutes=u)
            split = "test" if pos == seq_len - 1 else "valid" if pos == seq_len - 2 else "train"
            inter.append((f"u{u}", f"m{i}", ts, float(1 + (u + pos) % 5), domain))
            splits.append((f"u{u}", f"m{i}", ts, pos, split, domain))
    with ws.transaction() as con:
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", items)
        con.executemany("INSERT INTO interactions VALUES (?, ?, ?, ?, ?)", inter)
        con.executemany("INSERT INTO splits VALUES (?, ?, ?, ?, ?, ?)", splits)
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [n_items])
        rows = []
        for i in range(n_items):
            s = sid_of(i)
            rows.append((f"m{i}", [int(x) for x in re.findall(r"_(\d+)>", s)], s))
        con.executemany("INSERT INTO item_sids VALUES (1, ?, ?, ?)", rows)


def write_generic_files(folder: Path, *, n_items: int, n_inter: int, n_users: int, seed: int = 0) -> dict[str, Path]:
    """Generic-format CSV files (default column names) of a given size."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    items, inter = folder / "items.csv", folder / "interactions.csv"
    with open(items, "w") as f:
        f.write("item_id,title,categories\n")
        f.writelines(f"i{i},Item {i},Cat{i % 9}|Cat{i % 4}\n" for i in range(n_items))
    with open(inter, "w") as f:
        f.write("user_id,item_id,timestamp,rating\n")
        f.writelines(f"u{k % n_users},i{rng.randrange(n_items)},{1_500_000_000 + k},{1 + k % 5}\n"
                     for k in range(n_inter))
    return {"items": items, "interactions": inter}


def sample_table(n: int, prefix: str = "cs-"):
    """n SAMPLE_SCHEMA rows with varied reasoning text, built in SQL (fast for 100k+ rows)."""
    import duckdb
    import pyarrow as pa

    from storage.records import SAMPLE_SCHEMA

    con = duckdb.connect()
    try:
        t = con.sql(f"""
            SELECT '{prefix}' || i AS sample_id, 'p-' || i AS prompt_id, 'r3_recommend' AS task, 'R3' AS level,
                   'blind' AS mode, true AS think, 'movies' AS domain, 'u' || (i % 120) AS user_id,
                   ['m' || (i % 300)] AS history_item_ids, ['m' || ((i * 7) % 300)] AS target_item_ids,
                   [{{'role': 'user', 'content': 'History: film ' || (i % 300) || '. What next?'}},
                    {{'role': 'assistant', 'content': '<think>User ' || i || ' watched ' || (i * 31 % 997) ||
                      ' dramas and ' || (i * 17 % 89) || ' comedies lately, so a calmer pick fits.</think> '
                      || 'Answer: none'}}] AS messages,
                   'User ' || i || ' watched ' || (i * 31 % 997) || ' dramas and ' || (i * 17 % 89) ||
                      ' comedies lately, so a calmer pick fits.' AS reasoning,
                   'Answer: none' AS answer, 'test:fake' AS teacher
            FROM range({n}) r(i)""").to_arrow_table()
    finally:
        con.close()
    cols = [t.column(f.name) if f.name in t.column_names else pa.nulls(t.num_rows, f.type) for f in SAMPLE_SCHEMA]
    return pa.Table.from_arrays([c.cast(f.type) for c, f in zip(cols, SAMPLE_SCHEMA)], schema=SAMPLE_SCHEMA)
