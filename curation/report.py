"""The curation funnel of a curated version: as data (`funnel`, read by the viewer) and as rich tables.

The funnel is written into the version's manifest by `run_chain`; for curated versions made another way
(e.g. review overrides) it is rebuilt from the `verdicts` table and the version's `keep`/`rejected_by`
columns.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from curation.base import reason_category
from storage.datasets import DatasetVersion, list_versions, resolve
from storage.errors import NotFound
from storage.workspace import Workspace


def latest_curated(ws: Workspace) -> DatasetVersion:
    versions = [v for v in list_versions(ws) if "funnel" in v.manifest or v.step == "curate"
                or "keep" in {f["name"] for f in v.manifest.get("schema", [])}]
    if not versions:
        raise NotFound(f"no curated dataset in {ws.root}; run `recot curate --dataset NAME` first")
    return max(versions, key=lambda v: (v.created_at, v.name, v.version))


def funnel(ws: Workspace, ref: str | DatasetVersion | None = None) -> dict[str, Any]:
    """The funnel report of a curated version (latest curated version when `ref` is None)."""
    dv = ref if isinstance(ref, DatasetVersion) else (resolve(ws, ref) if ref else latest_curated(ws))
    if "funnel" in dv.manifest:
        return {"dataset": dv.ref, **dv.manifest["funnel"]}
    return {"dataset": dv.ref, **_rebuild(ws, dv)}


def _rebuild(ws: Workspace, dv: DatasetVersion) -> dict[str, Any]:
    cols = {f["name"] for f in dv.manifest.get("schema", [])}
    if "keep" not in cols:
        raise NotFound(f"{dv.ref} is not a curated version (no keep column); curate it with `recot curate`")
    with ws.reader() as con:
        counts = con.execute(f"SELECT count(*), count(*) FILTER (WHERE keep) FROM {dv.sql}"
                             ).fetchone()
        total, kept = counts if counts is not None else (0, 0)  # an aggregate always returns one row
        rej = dict(con.execute(f"SELECT rejected_by, count(*) FROM {dv.sql} WHERE NOT keep "
                               "GROUP BY 1 ORDER BY 2 DESC").fetchall())
        rows = con.execute("SELECT filter, count(*), count(*) FILTER (WHERE NOT keep), min(rowid) FROM verdicts "
                           "WHERE dataset = ? AND version = ? GROUP BY filter ORDER BY 4",
                           [dv.name, dv.version]).fetchall()
        stages = []
        for name, evaluated, flagged, _ in rows:
            reasons: dict[str, int] = {}
            examples: dict[str, list[dict[str, Any]]] = {}
            for sid, reason in con.execute("SELECT sample_id, reason FROM verdicts WHERE dataset = ? AND version = ? "
                                           "AND filter = ? AND NOT keep ORDER BY sample_id",
                                           [dv.name, dv.version, name]).fetchall():
                cat = reason_category(reason) or "(no reason)"
                reasons[cat] = reasons.get(cat, 0) + 1
                if len(examples.setdefault(cat, [])) < 3:
                    examples[cat].append({"sample_id": sid, "reason": reason})
            stages.append({"name": name, "evaluated": evaluated, "flagged": flagged, "dropped": rej.get(name, 0),
                           "reasons": reasons, "examples": examples, "scores": None})
    return {"rows": total, "kept": kept, "rejected": total - kept, "rejected_by": rej, "filters": stages,
            "rebuilt": True}


def _trunc(s: str | None, n: int = 110) -> str:
    s = (s or "").replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def render(report: dict[str, Any], console: Console | None = None, *, examples: bool = True) -> None:
    """Print the funnel, reasons histogram, examples per reason and score distributions."""
    console = console or Console()
    head = f"[bold]{report.get('dataset', '')}[/bold]"
    if report.get("input"):
        head += f" ← {report['input']} (chain {report.get('chain', '?')})"
    console.print(head)
    console.print(f"{report['rows']:,} samples: [green]{report['kept']:,} kept[/green], "
                  f"[red]{report['rejected']:,} rejected[/red]")
    t = Table(title="funnel", show_lines=False)
    for c in ("filter", "evaluated", "in", "dropped", "out", "flagged", "seconds"):
        t.add_column(c, justify="left" if c == "filter" else "right")
    for s in report["filters"]:
        t.add_row(s["name"], f"{s['evaluated']:,}", f"{s.get('in', ''):,}" if "in" in s else "",
                  f"{s['dropped']:,}", f"{s.get('out', ''):,}" if "out" in s else "", f"{s['flagged']:,}",
                  f"{s['seconds']:.3f}" if "seconds" in s else "")
    console.print(t)
    r = Table(title="rejection reasons (first filter to drop each sample)")
    for c in ("filter", "reason", "count"):
        r.add_column(c, justify="right" if c == "count" else "left")
    for s in report["filters"]:
        for reason, count in s["reasons"].items():
            r.add_row(s["name"], reason, f"{count:,}")
    console.print(r)
    if examples:
        e = Table(title="examples per reason")
        for c in ("filter", "sample_id", "reason"):
            e.add_column(c)
        for s in report["filters"]:
            for exs in s["examples"].values():
                for ex in exs:
                    e.add_row(s["name"], ex["sample_id"], _trunc(ex["reason"]))
        console.print(e)
    sc = Table(title="score distributions")
    for c in ("filter", "count", "mean", "min", "p10", "p50", "p90", "max"):
        sc.add_column(c, justify="left" if c == "filter" else "right")
    for s in report["filters"]:
        st = s.get("scores")
        if st:
            sc.add_row(s["name"], f"{st['count']:,}", *(f"{st[k]:.3f}" for k in ("mean", "min", "p10", "p50", "p90",
                                                                               "max")))
    if sc.row_count:
        console.print(sc)
