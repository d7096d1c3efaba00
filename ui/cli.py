"""`recot` — the command line. Each command group lives in ui/commands/<group>.py; this file only wires them
together and turns recot's errors into one-line messages with trustworthy exit codes:
0 ok, 1 error, 2 bad input/config, 3 workspace busy, 4 not found, 130 interrupted."""
from __future__ import annotations

import logging
import os
import sys

import typer

from storage.errors import RecotError
from ui.commands import curate, datasets, demo, evaluate, ingest, review, runs, sids, synth, train, viewer, workspace

app = typer.Typer(name="recot", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="recot: generate, curate and review reasoning-about-recommendation training data "
                       "(semantic IDs + chains of thought) and launch the trainings that use it.")
app.add_typer(ingest.app, name="ingest")
app.add_typer(datasets.app, name="datasets")
app.add_typer(workspace.app, name="workspace")
app.add_typer(runs.app, name="runs")
app.add_typer(sids.app, name="sids")
app.add_typer(synth.app, name="synth")
app.add_typer(curate.app, name="curate")
app.add_typer(review.app, name="review")
app.add_typer(train.app, name="train")
evaluate.register(app)
viewer.register(app)
demo.register(app)


def main() -> None:
    logging.basicConfig(level=os.environ.get("RECOT_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rc = app(standalone_mode=False)
    except RecotError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted (completed work is saved; re-run the same command to resume)", err=True)
        sys.exit(130)
    except typer.TyperException as exc:
        # Usage errors (unknown command or option, bad value: exit 2) and other command-line errors. typer
        # vendors click and exports only their public base class, TyperException; the usage-error subclasses
        # also print the usage line and a help hint through show().
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
