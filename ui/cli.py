"""`recot` — the command line. Each command group lives in ui/commands/<group>.py; this file only wires them
together and turns recot's errors into one-line messages with trustworthy exit codes:
0 ok, 1 error, 2 bad input/config, 3 workspace busy, 4 not found, 130 interrupted."""
from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, get_args, get_origin

import typer
import typer.core

from storage.errors import RecotError
from ui.commands import curate, datasets, demo, evaluate, ingest, review, runs, sids, synth, train, viewer, workspace


def _type_label(param: Any, ctx: Any) -> str | None:
    """The value column of `--help`, as click writes it (TEXT, INTEGER, PATH, a|b|c for choices) instead of
    typer 0.29's `<str>`, `<list[str]>` and `<bool>`; flags take no value, so they show none."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar is not None:
        return str(param.metavar)
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    ann = desc.annotation
    if get_origin(ann) in (list, tuple):  # repeatable options: the type of one value
        ann = (get_args(ann) or (str,))[0]
    name = getattr(ann, "__name__", str(ann))
    return {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}.get(name, name.upper())


def _usage_name(self: Any) -> str:
    """Arguments on the usage line: `TASK` / `[NAME]` (click's convention), not `{task}`."""
    name = self.metavar or str(self.name).upper()
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


typer.core.TyperOption.display_type_rich = _type_label  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _type_label  # type: ignore[method-assign]
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]
typer.core.TyperArgument._rich_display_name = lambda self: self.metavar or str(self.name).upper()  # type: ignore


def _quiet_third_party_progress() -> None:
    """One progress display per job, recot's own: HF datasets / hub, transformers and the Argilla SDK draw
    their own tqdm bars otherwise. Each library's documented switch (environment variables, read at import)."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm >= 4.66: argilla's and the Trainer's bars


def _recot_version() -> str:
    try:
        return version("recot")
    except PackageNotFoundError:
        return "unknown (not installed)"


app = typer.Typer(name="recot", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
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


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"recot {_recot_version()}")
        raise typer.Exit()


@app.callback()
def _root(version_: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=_show_version,
                                                 help="Print recot's version and exit.")] = False) -> None:
    """recot: generate, curate and review reasoning-about-recommendation training data (semantic IDs + chains of
    thought) and launch the trainings that use it."""



viewer.register(app)
demo.register(app)


def main() -> None:
    _quiet_third_party_progress()
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
