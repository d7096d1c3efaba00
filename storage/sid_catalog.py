"""Read side of semantic IDs: one SID version of the catalog as in-memory maps.

Tasks, curation, review and trainers all need the same three things from a SID version — item → SID,
SID → item, and the titles to show next to a SID — plus a prefix trie for constrained decoding. Loading
them in one place keeps every consumer on the same version semantics ("latest unless told otherwise").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from storage.errors import NotFound
from storage.sid import SidTrie
from storage.workspace import Workspace


def latest_sid_version(ws: Workspace) -> int | None:
    """The highest SID version in the catalog, or None when no SIDs were built yet. Item SIDs written without a
    `sid_versions` row (older or hand-made workspaces) still count: the viewer shows them. Read-only."""
    row = ws.query("SELECT coalesce((SELECT max(sid_version) FROM sid_versions), "
                   "(SELECT max(sid_version) FROM item_sids))")
    return None if not row or row[0][0] is None else int(row[0][0])


def list_sid_versions(ws: Workspace) -> list[dict[str, Any]]:
    """All SID versions, newest first (version, created_at, levels, codebook_size, n_items)."""
    rows = ws.query("SELECT sid_version, created_at, levels, codebook_size, n_items FROM sid_versions "
                    "ORDER BY sid_version DESC")
    return [dict(zip(["sid_version", "created_at", "levels", "codebook_size", "n_items"], r)) for r in rows]


@dataclass
class SidCatalog:
    """One SID version: the item ↔ SID maps, item titles and the build's config and quality report."""

    version: int
    levels: int
    codebook_size: int
    item_to_sid: dict[str, str]
    sid_to_item: dict[str, str]
    titles: dict[str, str]
    codes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    report: dict[str, Any] = field(default_factory=dict, repr=False)
    _trie: SidTrie | None = field(default=None, repr=False)

    @classmethod
    def load(cls, ws: Workspace, sid_version: int | None = None) -> SidCatalog:
        """Load `sid_version` (the latest when None). NotFound says how to build one."""
        if sid_version is None:
            sid_version = latest_sid_version(ws)
            if sid_version is None:
                raise NotFound(f"no semantic IDs in workspace {ws.root}; run `recot sids build` first")
        with ws.reader() as con:
            meta = con.execute("SELECT levels, codebook_size, config, report FROM sid_versions "
                               "WHERE sid_version = ?", [int(sid_version)]).fetchone()
            if meta is None:
                known = [r[0] for r in con.execute(
                    "SELECT sid_version FROM sid_versions ORDER BY 1").fetchall()]
                raise NotFound(f"SID version {sid_version} does not exist in {ws.root} "
                               f"(known: {known or 'none'}); run `recot sids build` to make one")
            rows = con.execute(
                "SELECT s.item_id, s.sid, s.codes, i.title FROM item_sids s "
                "LEFT JOIN items i USING (item_id) WHERE s.sid_version = ? ORDER BY s.item_id",
                [int(sid_version)]).fetchall()
        item_to_sid = {r[0]: r[1] for r in rows}
        return cls(
            version=int(sid_version), levels=int(meta[0]), codebook_size=int(meta[1]),
            item_to_sid=item_to_sid,
            sid_to_item={r[1]: r[0] for r in rows},
            titles={r[0]: r[3] for r in rows if r[3] is not None},
            codes={r[0]: tuple(int(c) for c in r[2]) for r in rows},
            config=json.loads(meta[2]) if meta[2] else {},
            report=json.loads(meta[3]) if meta[3] else {},
        )

    # ------------------------------------------------------------------ lookups
    @property
    def trie(self) -> SidTrie:
        """Prefix trie over all SIDs of this version (built on first use)."""
        if self._trie is None:
            self._trie = SidTrie(self.item_to_sid.values())
        return self._trie

    def __len__(self) -> int:
        return len(self.item_to_sid)

    @property
    def sid_version(self) -> int:
        """Alias of `version` (the name datasets use for it)."""
        return self.version

    def sid_of(self, item_id: str) -> str:
        try:
            return self.item_to_sid[str(item_id)]
        except KeyError:
            raise NotFound(f"item {item_id!r} has no SID in SID version {self.version}") from None

    def item_of(self, sid: str) -> str:
        try:
            return self.sid_to_item[sid.strip()]
        except KeyError:
            raise NotFound(f"SID {sid!r} is not in SID version {self.version}") from None

    def get_item(self, sid: str) -> str | None:
        """Like item_of, but None for an unknown SID (for scoring model outputs)."""
        return self.sid_to_item.get(sid.strip())

    def title_of_sid(self, sid: str) -> str | None:
        return self.titles.get(self.item_of(sid))

    def all_sids(self) -> list[str]:
        return list(self.item_to_sid.values())

    @property
    def max_levels(self) -> int:
        """Levels of the longest SID (levels + 1 when some items needed the collision level)."""
        return max((len(c) for c in self.codes.values()), default=self.levels)
