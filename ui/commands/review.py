"""`recot review`: human review of curated samples in Argilla (local stack, push, pull, agreement report)."""
from __future__ import annotations

import json
from typing import Annotated, Literal

import typer
from rich.table import Table

from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws

app = typer.Typer(no_args_is_help=True, help=(
    "Human review in Argilla: start a local Argilla stack in the workspace (or use ARGILLA_API_URL / "
    "ARGILLA_API_KEY), push curated samples with the filters' suggestions, pull annotations back into the "
    "`reviews` table and measure how well filters and judge agree with annotators."))

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Curated dataset: NAME (latest version) or NAME@vN.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def _printed_json(as_json: bool, result) -> bool:
    """With --json, print `result.as_dict()` as JSON and say so (the caller then prints nothing else)."""
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    return as_json


def _fmt(x) -> str:
    return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


@app.command()
def up(workspace: WorkspaceOpt = DEFAULT_WS,
       timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to answer.")] = 180.0) -> None:
    """Start the local Argilla stack (server, worker, Redis, in-memory search) in <workspace>/argilla/.
    A no-op when it already runs. Prints the URL and the owner's username (never the key)."""
    from curation.review import stack

    ws = open_ws(workspace)
    with console.status("starting Argilla (first start ≈ 15–20 s)…"):
        st = stack.up(ws, timeout_s=timeout)
    _print_status(st, ws)


@app.command()
def status(workspace: WorkspaceOpt = DEFAULT_WS,
           show_key: Annotated[bool, typer.Option("--show-key", help="Also print the owner's API key.")] = False,
           as_json: JsonOpt = False) -> None:
    """URL, state and owner username of the workspace's Argilla stack."""
    from curation.review import stack

    ws = open_ws(workspace)
    st = stack.status(ws)
    if _printed_json(as_json, st):
        return
    _print_status(st, ws, show_key=show_key)
    if st.state not in ("running", "external"):
        raise typer.Exit(1)


def _print_status(st, ws, show_key: bool = False) -> None:
    from curation.review import stack

    color = {"running": "green", "external": "cyan", "degraded": "yellow"}.get(st.state, "red")
    console.print(f"Argilla: [{color}]{st.state}[/]" + (f" — {st.detail}" if st.detail else ""))
    if st.url:
        console.print(f"  URL:      {st.url}")
    if st.username:
        console.print(f"  {'user' if st.state == 'external' else 'owner'}:    {st.username}")
    if st.state in ("running", "degraded"):
        console.print("  processes: " + ", ".join(f"{n} {p}{'' if st.alive.get(n) else ' (dead)'}"
                                                  for n, p in st.pids.items()))
        console.print(f"  credentials: {stack.credentials_path(ws)} (mode 0600)")
    if show_key:
        creds = stack.load_credentials(ws) if st.state != "external" else None
        key = (creds or {}).get("api_key") if creds else None
        console.print(f"  API key:  {key or '(external server: see ARGILLA_API_KEY)'}")
        if creds:
            console.print(f"  password: {creds.get('password')}")


@app.command()
def down(workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """Stop the local Argilla stack. Its data (SQLite) stays in <workspace>/argilla/home and is reindexed
    by the next `up`."""
    from curation.review import stack

    ws = open_ws(workspace)
    stopped = stack.down(ws)
    console.print("Argilla stack stopped" if stopped else "Argilla stack was not running")


@app.command("add-annotator")
def add_annotator(name: Annotated[str, typer.Argument(help="Username (lowercase letters, digits, '-', '_').")],
                  workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """Create an annotator user (role annotator, member of the 'recot' Argilla workspace) and print its
    own credentials to hand to the annotator."""
    from curation.review.users import add_annotator as _add

    ws = open_ws(workspace)
    a = _add(ws, name)
    if as_json:
        console.print_json(json.dumps({"username": a.username, "password": a.password, "api_key": a.api_key,
                                       "created": a.created}))
        return
    console.print(f"annotator [bold]{a.username}[/] {'created' if a.created else 'already existed'}")
    console.print(f"  password: {a.password or '(unchanged; set when the user was created)'}")
    console.print(f"  API key:  {a.api_key}")


@app.command()
def push(dataset: DatasetOpt,
         size: Annotated[int, typer.Option("--size", "-n", help="How many samples to put up for review.")] = 100,
         strategy: Annotated[Literal["stratified", "uncertain", "random"], typer.Option(
             help="stratified (level × task × keep), uncertain (filters "
                  "disagree / judge near its boundary first) or random.")]
         = "stratified",
         seed: Annotated[int, typer.Option(help="Seed of the sample selection (same seed → same samples).")] = 0,
         batch_size: Annotated[int, typer.Option(help="Records per upload request.")] = 64,
         workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """Push samples of a curated version to Argilla (record id = sample id). Re-running, or running after
    an interruption, sends only the records not yet on the server. The Argilla SDK shows its own
    'Sending records' bar on stderr."""
    from curation.review.push import push as _push

    ws = open_ws(workspace)
    res = _push(ws, dataset, size=size, strategy=strategy, seed=seed, batch_size=batch_size)
    if _printed_json(as_json, res):
        return
    console.print(f"{res.dataset} → Argilla dataset [bold]{res.argilla_dataset}[/] (workspace 'recot') at {res.url}")
    console.print(f"  selected {res.selected} ({strategy}), already there {res.already_there}, "
                  f"sent {res.sent} in {res.batches} batch(es)")


@app.command()
def pull(dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this curated dataset "
                                                       "(default: every dataset pushed from this workspace).")] = None,
         workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """Pull submitted and discarded responses into the `reviews` table (only new or changed ones are written)."""
    from curation.review.pull import pull as _pull

    ws = open_ws(workspace)
    res = _pull(ws, dataset)
    if _printed_json(as_json, res):
        return
    console.print(f"pulled from {', '.join(res.datasets)}: {res.seen} responses — {res.new} new, "
                  f"{res.updated} updated, {res.unchanged} unchanged" +
                  (f" ({res.skipped_drafts} drafts left on the server)" if res.skipped_drafts else ""))


@app.command()
def report(dataset: DatasetOpt, workspace: WorkspaceOpt = DEFAULT_WS, as_json: JsonOpt = False) -> None:
    """Agreement of each filter, the judge and the final curation decision with the annotators: Cohen's
    kappa and precision / recall of the drops against human 'bad' decisions (incorrect or rated 1–2)."""
    from curation.review.report import agreement

    ws = open_ws(workspace)
    rep = agreement(ws, dataset)
    if _printed_json(as_json, rep):
        return
    console.print(f"{rep.dataset}: {rep.reviewed} reviewed samples, {rep.human_bad} judged bad by "
                  f"{', '.join(rep.annotators)}")
    t = Table("source", "kind", "n", "kappa", "drop prec", "drop rec", "tp", "fp", "fn", "tn", "rating κw")
    for r in rep.rows:
        t.add_row(r.name, r.kind, str(r.n), _fmt(r.kappa), _fmt(r.precision), _fmt(r.recall), str(r.tp),
                  str(r.fp), str(r.fn), str(r.tn), _fmt(r.rating_kappa))
    console.print(t)


@app.command()
def apply(dataset: DatasetOpt, workspace: WorkspaceOpt = DEFAULT_WS) -> None:
    """New version of a curated dataset where human review decisions override the filters' verdicts
    (same as `recot curate --apply-reviews`)."""
    from curation.review.overrides import apply_reviews

    ws = open_ws(workspace)
    dv = apply_reviews(ws, dataset)
    r = dv.manifest["reviews"]
    console.print(f"{dv.ref}: {r['reviewed_samples']} reviewed samples by {', '.join(r['annotators'])}; "
                  f"{len(r['flipped_to_keep'])} now kept, {len(r['flipped_to_drop'])} now dropped "
                  f"(parent {dv.parents[0]['name']}@v{dv.parents[0]['version']})")
