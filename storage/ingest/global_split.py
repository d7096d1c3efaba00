"""A global chronological split beside the default per-user leave-last-out (`storage.ingest.catalog`).

MiniOneRec-style: every interaction of a domain inside an optional date window `[start, end)` is ordered by
time over ALL users and cut at the `ratios` (default 8:1:1) — the oldest 80 % train, the next 10 % valid,
the newest 10 % test — so no test interaction precedes a train one (no leakage from the future), and a user can
have several test items or none. Interactions outside the window leave the split (they stay in
`interactions`). The `splits` rows of the domain are rewritten in one transaction; `position` stays the
0-based rank in the user's time order, so history windows (`trainers.windows`) work unchanged. Re-ingesting
the domain restores leave-last-out.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.errors import ConfigError, NotFound
from storage.workspace import Workspace


def global_chronological_split(ws: Workspace, *, domain: str | None = None,
                               ratios: Sequence[float] = (0.8, 0.1, 0.1), start: datetime | str | None = None,
                               end: datetime | str | None = None) -> dict[str, int]:
    """Rewrite the split of `domain` (None = every domain) as a global time split; returns rows per split."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConfigError(f"ratios {list(ratios)}: expected three non-negative train/valid/test shares")
    total = float(sum(ratios))
    c1, c2 = ratios[0] / total, (ratios[0] + ratios[1]) / total
    conds, params = ["TRUE"], []
    if domain is not None:
        conds.append("domain = ?")
        params.append(domain)
    if start is not None:
        conds.append("ts >= CAST(? AS TIMESTAMP)")
        params.append(str(start))
    if end is not None:
        conds.append("ts < CAST(? AS TIMESTAMP)")
        params.append(str(end))
    where = " AND ".join(conds)
    with ws.transaction("split") as con:
        n = con.execute(f"SELECT count(*) FROM interactions WHERE {where}", params).fetchall()[0][0]
        if not n:
            raise NotFound(f"no interactions{' in domain ' + repr(domain) if domain else ''} inside the window "
                           f"[{start or '-inf'}, {end or '+inf'})")
        dom_cond = "WHERE domain = ?" if domain is not None else ""
        con.execute(f"DELETE FROM splits {dom_cond}", [domain] if domain is not None else [])
        con.execute(f"""INSERT INTO splits (user_id, item_id, ts, position, split, domain)
            SELECT user_id, item_id, ts, CAST(row_number() OVER (PARTITION BY user_id ORDER BY ts, item_id) - 1
                                              AS INTEGER),
                   CASE WHEN g < ? THEN 'train' WHEN g < ? THEN 'valid' ELSE 'test' END, domain
            FROM (SELECT *, (row_number() OVER (ORDER BY ts, user_id, item_id) - 1) / {int(n)}::DOUBLE AS g
                  FROM interactions WHERE {where})""", [c1, c2, *params])
        counts = dict(con.execute(f"SELECT split, count(*) FROM splits {dom_cond} GROUP BY split",
                                  [domain] if domain is not None else []).fetchall())
    return {k: int(counts.get(k, 0)) for k in ("train", "valid", "test")}
