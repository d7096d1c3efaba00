"""`recot` — the command line. Each command group lives in ui/commands/<group>.py; this file only wires them
together and turns recot's errors into one-line messages with trustworthy exit codes:
0 ok, 1 error, 2 bad input/config, 3 workspace busy, 4 not found, 130 interrupted."""
from __future__ import annotations

import logging
import os
import sys

import click
import typer

from storage.errors import RecotError

# typer >= 0.29 vendors its own click (typer._click): its usage errors and Abort are not click's classes,
# so catch both, or a typo'd option would end in a traceback with exit code 1.
try:
    from typer._click.exceptions import ClickException as _TyperClickException
    from typer.exceptions import Abort as _TyperAbort
except ImportError:  # older typer: plain click
    _TyperClickException, _TyperAbort = click.ClickException, click.exceptions.Abort
from ui.commands import (curate, datasets, demo, evaluate, ingest, review, runs, sids, synth, train, viewer,
                         workspace)

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
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, _TyperAbort):
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted (completed work is saved; re-run the same command to resume)", err=True)
        sys.exit(130)
    except (click.ClickException, _TyperClickException) as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
