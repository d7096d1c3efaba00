"""The cognition skeleton of a (user, target) prompt: the facts a three-level R3 trace should verbalize,
computed from the catalog and the history the prompt shows (TRAIN items only under the default
`target_split=train`; see history.py for the leakage rule) — never from model output.

- **perception**: one fact per history item (SID, title, categories, date), oldest first;
- **interest points**: the history partitioned into groups of items sharing a key — a category or a SID
  prefix (the first 1..`prefix_levels` codes). Each item joins the key that the most history items share
  (ties: a category before a SID prefix, a longer prefix before a shorter one, then by name), so every
  item is in at most one point; groups of fewer than `min_support` items are dropped, at most `max_points`
  are kept, numbered 1.. by size (ties: the more recent first). A point has a label, its member SIDs, the
  categories at least half its members carry, the SID prefix all its members share (or null), its share of
  the history, how many members fall in the recent part (the last period) and its last date;
- **evolution**: the history cut into up to `periods` chronological periods of (nearly) equal size and at
  least two items each, each with its dominant point (most members; ties: the lower id; null when none of
  its items is in a point); `long_term` = the point present in the most periods (ties: the larger, then the
  lower id), `recent` = the last period's dominant point, `shifts` = consecutive changes of dominant point
  (dated by the start of the new period);
- **target_point** (hint mode only): the point the held-out target serves — one whose defining category or
  SID prefix the target has, else the one sharing the most categories / prefix codes with it; null when the
  target shares nothing with any point (and always null in blind mode: the target is never read then).

The key counting and the item → point assignment run as one DuckDB query over every prompt's history at
once; Python only shapes each prompt's (at most ~20-item) result into the JSON stored under
`extra["skeleton"]`. Deterministic: same histories, same skeletons. The JSON (version: storage/cognition.py
`SKELETON_VERSION`; curation's cognition filters and the viewer read exactly these keys):

    {"version": 1,
     "perception": [{"sid", "title", "categories": [str], "date": "YYYY-MM-DD" | null}],      # chronological
     "interest_points": [{"id": 1.., "label", "sids": [str], "categories": [str], "sid_prefix": str | null,
                          "count", "share", "recent_count", "last_date": str | null}],       # by share desc
     "evolution": {"periods": [{"start", "end", "items", "dominant": id | null}],
                   "long_term": id | null, "recent": id | null, "shifts": [{"from", "to", "date"}]},
     "target_point": id | null}                                   # hint mode only; null in blind mode

`sid_prefix` is written like a SID's start, e.g. "<|sid_begin|><s_a_12>"; prose uses `prefix_text` ("a_12")
because a bare code token in a trace reads as a malformed SID to curation.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from storage.cognition import SKELETON_VERSION
from storage.sid import CODE_TOKEN_RE, SID_BEGIN
from synth.tasks.history import Event

CATEGORY, PREFIX = 0, 1     # kinds of grouping key (the order is the tie-break: categories read better)


@dataclass(frozen=True)
class SkeletonParams:
    periods: int = 3          # evolution periods (fewer for short histories: each has at least 2 items)
    max_points: int = 5       # interest points kept (the largest)
    min_support: int = 2      # items an interest point needs
    prefix_levels: int = 2    # SID prefixes of 1..prefix_levels codes are grouping keys


def _codes(sid: str | None) -> list[str]:
    """'<|sid_begin|><s_a_1><s_b_2><|sid_end|>' → ['<s_a_1>', '<s_b_2>']."""
    return [m.group(0) for m in CODE_TOKEN_RE.finditer(sid or "")]


def prefix_text(sid_prefix: str | None) -> str:
    """A SID prefix written for prose, without SID tokens (a trace that held `<s_a_1>` outside a full SID
    would read as a malformed SID to curation): '<|sid_begin|><s_a_1><s_b_2>' → 'a_1/b_2'."""
    return "/".join(f"{m.group(1)}_{m.group(2)}" for m in CODE_TOKEN_RE.finditer(sid_prefix or ""))


def _date(e: Event) -> str | None:
    return f"{e.ts:%Y-%m-%d}" if e.ts is not None else None


# ---------------------------------------------------------------------------------------------- SQL part
_GROUPS_SQL = """
WITH it AS (
    SELECT h, pos, list_distinct(coalesce(cats, []::VARCHAR[])) AS cats,
           regexp_extract_all(sid, '<s_[a-z]_[0-9]+>') AS codes
    FROM hist
),
keys AS (
    SELECT h, pos, {cat} AS kind, unnest(cats) AS kval FROM it
    UNION ALL
    SELECT h, pos, {pre} AS kind, '{begin}' || array_to_string(codes[1:r.L], '') AS kval
    FROM it, range(1, {levels} + 1) AS r(L)
    WHERE len(codes) > r.L
),
kc AS (SELECT h, kind, kval, count(DISTINCT pos) AS cnt FROM keys GROUP BY ALL),
best AS (
    SELECT k.h, k.pos, k.kind, k.kval,
           row_number() OVER (PARTITION BY k.h, k.pos
                              ORDER BY kc.cnt DESC, k.kind, CASE WHEN k.kind = {pre} THEN -length(k.kval) ELSE 0 END,
                                       k.kval) AS rk
    FROM keys k JOIN kc ON kc.h = k.h AND kc.kind = k.kind AND kc.kval = k.kval
),
grp AS (
    SELECT h, kind, kval, list(DISTINCT pos ORDER BY pos) AS members, count(DISTINCT pos) AS cnt, max(pos) AS last_pos
    FROM best WHERE rk = 1
    GROUP BY ALL
    HAVING count(DISTINCT pos) >= {min_support}
)
SELECT h, kind, kval, members,
       row_number() OVER (PARTITION BY h ORDER BY cnt DESC, last_pos DESC, kind, kval) AS id
FROM grp
QUALIFY id <= {max_points}
ORDER BY h, id
"""


def _groups(histories: Sequence[Sequence[Event]],
            params: SkeletonParams) -> dict[int, list[tuple[int, str, list[int]]]]:
    """{history index: [(kind, key, member positions), …] in point-id order} for every history at once."""
    hs, pos, sids, cats = [], [], [], []
    for h, evs in enumerate(histories):
        for p, e in enumerate(evs):
            hs.append(h)
            pos.append(p)
            sids.append(e.sid)
            cats.append(list(e.categories or []))
    hist = pa.table({"h": pa.array(hs, pa.int32()), "pos": pa.array(pos, pa.int32()),
                     "sid": pa.array(sids, pa.string()), "cats": pa.array(cats, pa.list_(pa.string()))})
    sql = _GROUPS_SQL.format(cat=CATEGORY, pre=PREFIX, begin=SID_BEGIN.replace("'", "''"),
                             levels=int(params.prefix_levels), min_support=int(params.min_support),
                             max_points=int(params.max_points))
    out: dict[int, list[tuple[int, str, list[int]]]] = {}
    if not hs:
        return out
    con = duckdb.connect()
    try:
        con.register("hist", hist)
        for h, kind, kval, members, _ in con.execute(sql).fetchall():
            out.setdefault(h, []).append((kind, kval, list(members)))
    finally:
        con.close()
    return out


# ---------------------------------------------------------------------------------------------- shaping
def _common_prefix(sids: list[str]) -> str | None:
    """The SID prefix (begin token + codes) every SID shares, shorter than the shortest SID; None if none."""
    codes = [_codes(s) for s in sids]
    if not codes or not all(codes):
        return None
    n = 0
    limit = min(len(c) for c in codes) - 1
    while n < limit and all(c[n] == codes[0][n] for c in codes):
        n += 1
    return SID_BEGIN + "".join(codes[0][:n]) if n else None


def _periods(n: int, params: SkeletonParams) -> list[range]:
    """Chronological chunks of positions 0..n-1: up to `params.periods`, each of at least 2 items."""
    if n == 0:
        return []
    k = max(1, min(int(params.periods), n // 2))
    cuts = [i * n // k for i in range(k + 1)]          # sizes differ by at most one, the larger ones last
    return [range(a, b) for a, b in zip(cuts, cuts[1:])]


def _point(pid: int, kind: int, key: str, members: list[int], evs: Sequence[Event], recent: range) -> dict[str, Any]:
    m = len(members)
    cnt = Counter(c for p in members for c in dict.fromkeys(evs[p].categories or []))
    majority = [c for c, k in sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0])) if 2 * k >= m]
    if kind == CATEGORY:
        categories = [key] + [c for c in majority if c != key]
        shared = [key] + sorted(c for c in majority if c != key and cnt[c] == m)
        label = " & ".join(shared[:2])
    else:
        categories = majority
        label = " & ".join(categories[:2])
    sids = [evs[p].sid for p in members]
    sid_prefix = _common_prefix(sids)
    if kind == PREFIX:
        short = prefix_text(key)
        label = f"{label} (SID prefix {short})" if label else f"SID prefix {short}"
    dates = [d for d in (_date(evs[p]) for p in members) if d]
    return {"id": pid, "label": label, "sids": sids, "categories": categories[:3], "sid_prefix": sid_prefix,
            "count": m, "share": round(m / len(evs), 4), "recent_count": sum(1 for p in members if p in recent),
            "last_date": max(dates) if dates else None}


def _unique_labels(points: list[dict[str, Any]]) -> None:
    seen: Counter = Counter(p["label"] for p in points)
    for p in points:
        if seen[p["label"]] > 1:
            extra = prefix_text(p["sid_prefix"])
            p["label"] = f"{p['label']} (SID prefix {extra})" if extra and "SID prefix" not in p["label"] \
                else f"{p['label']} #{p['id']}"


def _target_point(points: list[dict[str, Any]], keys: list[tuple[int, str]], target: Event) -> int | None:
    tcats = set(target.categories or [])
    tsid = target.sid or ""
    tcodes = _codes(tsid)
    best, best_score = None, None
    for p, (kind, key) in zip(points, keys):
        defining = key in tcats if kind == CATEGORY else tsid.startswith(key)
        pcodes = _codes(p["sid_prefix"])
        pre = len(pcodes) if pcodes and tcodes[:len(pcodes)] == pcodes else 0
        overlap = len(tcats & set(p["categories"])) + pre
        if not defining and not overlap:
            continue
        score = (defining, overlap, p["count"], -p["id"])
        if best_score is None or score > best_score:
            best, best_score = p["id"], score
    return best


def _evolution(points: list[dict[str, Any]], member_of: dict[int, int], evs: Sequence[Event],
               periods: list[range]) -> dict[str, Any]:
    out_periods, present = [], Counter()
    for rg in periods:
        c = Counter(member_of[p] for p in rg if p in member_of)
        for pid in c:
            present[pid] += 1
        dom = min(c, key=lambda pid: (-c[pid], pid)) if c else None
        dates = [d for d in (_date(evs[p]) for p in rg) if d]
        out_periods.append({"start": min(dates) if dates else None, "end": max(dates) if dates else None,
                            "items": len(rg), "dominant": dom})
    by_id = {p["id"]: p for p in points}
    long_term = min(present, key=lambda pid: (-present[pid], -by_id[pid]["count"], pid)) if present else None
    recent = out_periods[-1]["dominant"] if out_periods else None
    shifts, prev = [], None
    for per in out_periods:
        d = per["dominant"]
        if d is None:
            continue
        if prev is not None and d != prev:
            shifts.append({"from": prev, "to": d, "date": per["start"]})
        prev = d
    return {"periods": out_periods, "long_term": long_term, "recent": recent, "shifts": shifts}


def compute_skeletons(histories: Sequence[Sequence[Event]], targets: Sequence[Event | None] | None = None,
                      params: SkeletonParams | None = None) -> list[dict[str, Any]]:
    """One skeleton (the JSON-able dict stored under extra["skeleton"]) per history, oldest event first.
    `targets[i]` is the held-out target of history i in hint mode (None, or `targets=None`, in blind mode:
    then `target_point` is null and the target is never looked at)."""
    params = params or SkeletonParams()
    if targets is not None and len(targets) != len(histories):
        raise ValueError(f"{len(targets)} targets for {len(histories)} histories")
    groups = _groups(histories, params)
    out = []
    for h, evs in enumerate(histories):
        evs = list(evs)
        periods = _periods(len(evs), params)
        recent = periods[-1] if periods else range(0)
        rows = groups.get(h, [])
        points = [_point(i + 1, kind, key, members, evs, recent) for i, (kind, key, members) in enumerate(rows)]
        _unique_labels(points)
        member_of = {p: i + 1 for i, (_, _, members) in enumerate(rows) for p in members}
        target = targets[h] if targets is not None else None
        out.append({
            "version": SKELETON_VERSION,
            "perception": [{"sid": e.sid, "title": e.title or "", "categories": list(e.categories or []),
                            "date": _date(e)} for e in evs],
            "interest_points": points,
            "evolution": _evolution(points, member_of, evs, periods),
            "target_point": _target_point(points, [(k, v) for k, v, _ in rows], target) if target else None,
        })
    return out


def compute_skeleton(history: Sequence[Event], target: Event | None = None,
                     params: SkeletonParams | None = None) -> dict[str, Any]:
    """The skeleton of one history (tests, notebooks); tasks call `compute_skeletons` once for all prompts."""
    return compute_skeletons([history], [target], params)[0]
