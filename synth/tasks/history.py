"""User histories for teacher tasks, with the leakage rule in one place.

`target_split` decides what the held-out target is and what the prompt may show:
- "train" (default, for training data): target = the user's LAST TRAIN item, history = the train items before
  it. Valid and test items are never loaded into a prompt or a target.
- "valid": target = the valid item, history = all train items (evaluation-style prompts).
- "test": target = the test item, history = train + valid items.

`history_format` decides how a history line reads in the STUDENT turn (the teacher always sees SID + title):
"sid_title" (default) `SID Title (date)`, "sid" `SID (date)` — a model must then reason from the SIDs alone,
as the public SID-recommendation recipes train and evaluate — or "title" `Title (date)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.errors import ConfigError
from synth.tasks.base import TaskContext, selected_domains
from synth.tasks.sql import catalog_cte, hash_order

TARGET_SPLITS = ("train", "valid", "test")
HISTORY_FORMATS = ("sid_title", "sid", "title")
HISTORY_FIELDS = {"sid_title": "semantic ID, title", "sid": "semantic ID", "title": "title"}


def check_history_format(fmt: str) -> str:
    if fmt not in HISTORY_FORMATS:
        raise ConfigError(f"option history_format must be one of {', '.join(HISTORY_FORMATS)}, got {fmt!r}")
    return fmt


def history_line(sid: str | None, title: str | None, date: str | None = None, fmt: str = "sid_title") -> str:
    """One history line: 'SID Title (YYYY-MM-DD)' (sid_title), 'SID (…)' (sid) or 'Title (…)' (title)."""
    parts = {"sid_title": (sid, title), "sid": (sid,), "title": (title,)}[check_history_format(fmt)]
    d = f" ({date})" if date else ""
    return (" ".join(p for p in parts if p) + d).strip()


def history_fields(fmt: str = "sid_title", dates: bool = True) -> str:
    """What a history line holds, for the prompt's header: 'semantic ID, title, date'."""
    return HISTORY_FIELDS[check_history_format(fmt)] + (", date" if dates else "")


@dataclass
class Event:
    item_id: str
    sid: str
    title: str
    ts: datetime | None
    domain: str
    categories: list[str] = field(default_factory=list)

    def line(self, dates: bool = True, fmt: str = "sid_title") -> str:
        return history_line(self.sid, self.title, f"{self.ts:%Y-%m-%d}" if dates and self.ts is not None else None,
                            fmt)


@dataclass
class UserHistory:
    user_id: str
    domain: str
    history: list[Event]      # oldest first, everything allowed before the target (tasks truncate)
    target: Event | None
    known_items: set[str]     # every item of this user in any split (so noise never picks one)


def render_history(events: list[Event], dates: bool = True, fmt: str = "sid_title") -> str:
    return "\n".join(e.line(dates, fmt) for e in events)


def load_histories(ctx: TaskContext, *, need_target: bool = True) -> list[UserHistory]:
    """Selected users' histories (seeded order, `users` cap) with at least `min_history` items before the
    target (tasks truncate to `max_history` after any domain filtering). One SQL query; Python only groups."""
    o = ctx.options
    split = o.get("target_split", "train")
    if split not in TARGET_SPLITS:
        raise ConfigError(f"option target_split must be one of {', '.join(TARGET_SPLITS)}, got {split!r}")
    min_h = int(o.get("min_history", 3))
    n_users = int(o.get("users") or 0)
    domains = selected_domains(o)
    allowed = {"train": ("train",), "valid": ("train", "valid"), "test": ("train", "valid", "test")}[split]
    if not need_target:
        allowed = ("train",)
    sql = f"""
    WITH {catalog_cte(ctx)},
    s AS (SELECT sp.user_id, sp.item_id, sp.ts, sp.position, sp.split, c.sid, c.title, c.categories, c.domain
          FROM splits sp JOIN cat c ON c.item_id = sp.item_id)
    SELECT s.user_id, s.item_id, s.ts, s.split, s.sid, s.title, s.categories, s.domain,
           {hash_order(ctx, 's.user_id')} AS h
    FROM s ORDER BY h, s.user_id, s.position, s.ts, s.item_id
    """
    with ctx.ws.reader() as con:
        rows = con.execute(sql).fetchall()
    by_user: dict[str, list[tuple]] = {}
    for r in rows:
        by_user.setdefault(r[0], []).append(r)
    out: list[UserHistory] = []
    for uid, urows in by_user.items():
        known = {r[1] for r in urows}
        evs = [(r[3], Event(item_id=r[1], sid=r[4], title=r[5], ts=r[2], domain=r[7], categories=list(r[6] or [])))
               for r in urows if r[3] in allowed]
        if need_target:
            if split == "train":
                train = [e for sp, e in evs if sp == "train"]
                if not train:
                    continue
                target, before = train[-1], train[:-1]
            else:
                tgt = [e for sp, e in evs if sp == split]
                if not tgt:
                    continue
                target = tgt[-1]
                before = [e for sp, e in evs if sp != split]
        else:
            target, before = None, [e for _, e in evs]
        if len(before) < min_h:
            continue
        domain = (target or before[-1]).domain
        if domains and (domain or "default") not in domains:   # before the `users` cap: N users of the domain
            continue
        out.append(UserHistory(user_id=uid, domain=domain, history=before, target=target, known_items=known))
        if n_users and len(out) >= n_users:
            break
    return out
