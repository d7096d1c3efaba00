"""`recot sids` commands: build a SID version and inspect one (report, item ↔ SID lookups)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from storage.errors import ConfigError, InputError
from ui.commands.common import DEFAULT_WS, JsonOpt, WorkspaceOpt, console, emit_json, open_ws

app = typer.Typer(no_args_is_help=True, help="Semantic IDs: build residual K-means SIDs for the catalog's "
                                             "items and inspect them.")


def render_report(report: dict, title: str) -> None:
    """Print a SID quality report as rich tables (summary + one row per level)."""
    emb = report.get("embedding", {})
    rec = report.get("reconstruction", {})
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("metric", style="bold")
    t.add_column("value")
    rows = [
        ("items", f"{report.get('n_items', 0):,}"),
        ("levels x codebook", f"{report.get('levels')} x {report.get('codebook_size')}"
                              + (" (balanced)" if report.get("balanced") else "")),
        ("embedding", f"{emb.get('model', '?')}, {emb.get('dims', '?')} dims "
                      f"({emb.get('embedded', 0)} embedded, {emb.get('reused', 0)} reused, "
                      f"{emb.get('seconds', 0):.1f} s)"),
        ("collision rate, nearest centroid", f"{report.get('collision_rate_nearest', 0):.4f} "
                                             f"({report.get('reassigned_last_level', 0)} items moved to a free "
                                             "last-level code)" if report.get("collision_aware") else
                                             f"{report.get('collision_rate_nearest', 0):.4f}"),
        ("collision rate before extra level", f"{report.get('collision_rate_before', 0):.4f} "
                                              f"({report.get('colliding_items', 0)} items in "
                                              f"{report.get('collision_groups', 0)} groups, largest "
                                              f"{report.get('max_group_size', 0)})"),
        ("items given an extra level", f"{report.get('items_with_extra_level', 0)} "
                                       f"(codes 0..{max(report.get('extra_level_size', 0) - 1, 0)})"),
        ("collision rate after", f"{report.get('collision_rate_after', 0):.4f}"),
        ("unique SIDs", f"{report.get('unique_sids', 0):,}"),
        ("reconstruction error", f"mse {rec.get('mse', 0):.5f}, relative {rec.get('relative', 0):.4f}"),
        ("time", f"quantize {report.get('quantize_s', 0):.2f} s, total {report.get('total_s', 0):.2f} s"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    lv = Table(title="per level", title_justify="left")
    for col in ("level", "codes used", "utilisation", "entropy (bits)", "entropy (norm.)",
                "items/code min", "max", "mean"):
        lv.add_column(col, justify="right")
    for p in report.get("per_level", []):
        ipc = p["items_per_code"]
        lv.add_row(f"{p['level']} ({p['letter']})", f"{p['codes_used']}/{p['codebook_size']}",
                   f"{p['utilisation']:.3f}", f"{p['entropy_bits']:.3f}", f"{p['entropy_normalised']:.3f}",
                   str(ipc["min"]), str(ipc["max"]), f"{ipc['mean']:.2f}")
    console.print(lv)


@app.command("build")
def build(
    workspace: WorkspaceOpt = DEFAULT_WS,
    levels: Annotated[int, typer.Option(help="Codes per SID (before the collision level).")] = 3,
    codebook_size: Annotated[int, typer.Option("--codebook-size", "-k", help="Codes per level (K).")] = 256,
    seed: Annotated[int, typer.Option(help="k-means seed; same seed + same items → same codes.")] = 0,
    vectors: Annotated[Path | None, typer.Option(
        help="Parquet file with columns item_id, vector (list<float>) to use instead of text embeddings.")] = None,
    balanced: Annotated[bool, typer.Option(help="Capacity-constrained assignment (spreads items over codes).")] = False,
    progress: Annotated[bool, typer.Option(help="Show embedding progress.")] = True,
) -> None:
    """Embed item text (or read --vectors), quantize with residual K-means and store a new SID version."""
    from storage.config import first_error
    from synth.sids.build import SidConfig, build_sids

    if vectors is not None and not vectors.exists():
        raise InputError("file not found", file=str(vectors))
    ws = open_ws(workspace, create=False)
    try:
        cfg = SidConfig(levels=levels, codebook_size=codebook_size, seed=seed, balanced=balanced,
                        vectors_path=str(vectors) if vectors else None)
    except ValidationError as exc:  # e.g. --levels 0: one line naming the option, not a pydantic traceback
        _, field, msg = first_error(exc)
        raise ConfigError(f"option --{field.replace('_', '-')}: {msg}") from None
    res = build_sids(ws, cfg, progress=progress)
    render_report(res.report, f"SID version {res.sid_version}")


@app.command("show")
def show(
    workspace: WorkspaceOpt = DEFAULT_WS,
    version: Annotated[int | None, typer.Option("--version", "-v", help="SID version (default: latest).")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Show the SID of this item id.")] = None,
    sid: Annotated[str | None, typer.Option("--sid", help="Show the item behind this SID.")] = None,
    list_versions: Annotated[bool, typer.Option("--list", help="List all SID versions.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a SID version's report, or look an item / SID up."""
    from storage.sid import parse_sid
    from storage.sid_catalog import SidCatalog, list_sid_versions

    ws = open_ws(workspace, create=False)
    if list_versions and as_json:
        emit_json(list_sid_versions(ws))
        return
    if list_versions:
        t = Table(title="SID versions", title_justify="left")
        for c in ("version", "created", "levels", "codebook", "items"):
            t.add_column(c)
        for v in list_sid_versions(ws):
            t.add_row(str(v["sid_version"]), str(v["created_at"])[:19], str(v["levels"]),
                      str(v["codebook_size"]), str(v["n_items"]))
        console.print(t)
        return
    cat = SidCatalog.load(ws, version)
    if as_json:
        found = []
        if item is not None:
            found.append(str(item))
        if sid is not None:
            try:
                parse_sid(sid)
            except ValueError as exc:
                raise InputError(str(exc), field="--sid") from None
            found.append(cat.item_of(sid))
        emit_json({"version": cat.version, "report": cat.report} if not found else
                  {"version": cat.version, "items": [{"item_id": i, "sid": cat.sid_of(i), "codes": list(cat.codes[i]),
                                                      "title": cat.titles.get(i, "")} for i in found]})
        return
    if item is None and sid is None:
        render_report(cat.report, f"SID version {cat.version}")
        return
    # Plain lines, not a table: a SID must print whole (copy-pasteable), never folded or ellipsised.
    def line(iid: str, s: str) -> None:
        console.print(f"item {iid}  {s}  codes={list(cat.codes[iid])}  title={cat.titles.get(iid, '')!r}",
                      soft_wrap=True, markup=False, highlight=False)

    console.print(f"SID version {cat.version}", style="bold")
    if item is not None:
        line(str(item), cat.sid_of(item))
    if sid is not None:
        try:
            parse_sid(sid)
        except ValueError as exc:
            raise InputError(str(exc), field="--sid") from None
        line(cat.item_of(sid), sid.strip())
