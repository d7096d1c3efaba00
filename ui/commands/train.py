"""`recot train` commands: one per trainer, each = a YAML config (configs/train/<name>.cpu.yaml or
.gpu.yaml) + optional --dataset/--model/--out + KEY=VALUE overrides, then one call into trainers/."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws

app = typer.Typer(no_args_is_help=True, help="Train models on curated datasets (thin TRL launches: pretrain, "
                                             "sft, rl, rft, merge, distill).")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/train/).")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset ref NAME or NAME@vN "
                                                                           "(overrides the config's).")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Base model folder or hub id "
                                                                       "(default: the config's, else the "
                                                                       "embedded SmolLM2-135M).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output model folder "
                                                                    "(default <workspace>/models/<run id>).")]
DomainOpt = Annotated[str | None, typer.Option("--domain", help="Train only on this domain's rows (comma-separated "
                                                                 "for several): a per-domain specialist; the "
                                                                 "lineage records it.")]
SpecialistsOpt = Annotated[str | None, typer.Option("--specialists", help="DOMAIN=MODEL_DIR,...: sample each "
                                                                             "prompt from its domain's specialist.")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides, e.g. max_steps=10 "
                                                                  "trl.use_vllm=true")]


def _progress_callback(progress: Any, task: Any) -> Any:
    """A transformers TrainerCallback that drives one rich progress bar: step k of max_steps and the last loss."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args, state, control, **kw):
            progress.update(task, total=state.max_steps or args.max_steps or None, completed=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            progress.update(task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                progress.update(task, loss=f"loss {logs['loss']:.4f}")

    return RichProgress()


@contextmanager
def training_progress(name: str) -> Iterator[Any]:
    """One progress display for a training job. Every Trainer built inside (TRL's and transformers' alike) gets
    the callback through transformers' DEFAULT_CALLBACKS, restored on exit; the trainers themselves stay thin."""
    import transformers.trainer as hf_trainer
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("steps  {task.fields[loss]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(f"training {name}", total=None, loss="")
        cb = _progress_callback(progress, task)
        saved = list(hf_trainer.DEFAULT_CALLBACKS)
        hf_trainer.DEFAULT_CALLBACKS.append(cb)
        try:
            yield progress
        finally:
            hf_trainer.DEFAULT_CALLBACKS[:] = saved


def _describe_defaults(name: str, cfg: Any) -> str:
    """What a run without -c trains with: said out loud, since the built-in defaults are a smoke test."""
    model = cfg.model or "the embedded SmolLM2-135M-Instruct"
    return (f"no --config: using the built-in {name} defaults — a {cfg.max_steps}-step smoke config "
            f"(model {model}, lr {cfg.learning_rate:g}, batch {cfg.per_device_train_batch_size}, max_length "
            f"{cfg.max_length}). For a real run pass -c configs/train/{name}.cpu.yaml or .gpu.yaml, or "
            f"override: max_steps=500")


def _run(name: str, workspace: Path, config: Path | None, dataset: str | None, model: str | None,
         out: Path | None, overrides: list[str] | None, **fields: str | None) -> None:
    from trainers.config import load_config
    from trainers.registry import get_trainer

    cfg_cls, fn = get_trainer(name)
    cfg = load_config(cfg_cls, config, overrides, dataset=dataset, model=model,
                      out=str(out) if out else None, **fields)
    ws = open_ws(workspace, create=False)
    if config is None:
        console.print(_describe_defaults(name, cfg), style="yellow", markup=False, highlight=False)
    with training_progress(name):
        res = fn(ws, cfg)
    t = Table(title=f"{name}: run {res.run_id}")
    t.add_column("metric")
    t.add_column("first", justify="right")
    t.add_column("last", justify="right")
    for k, v in res.metrics.items():
        if isinstance(v, dict) and "first" in v:
            t.add_row(k, f"{v['first']:.4g}", f"{v['last']:.4g}")
    console.print(t)
    console.print(f"model saved to [bold]{res.out_dir}[/bold]")


def _command(name: str, help_text: str):
    if name == "merge":  # no dataset, so no domain to select
        def cmd(config: ConfigOpt = None, dataset: DatasetOpt = None, model: ModelOpt = None, out: OutOpt = None,
                overrides: OverridesArg = None, workspace: WorkspaceOpt = DEFAULT_WS) -> None:
            _run(name, workspace, config, dataset, model, out, overrides)
    elif name == "rft":
        def cmd(config: ConfigOpt = None, dataset: DatasetOpt = None, model: ModelOpt = None, out: OutOpt = None,
                overrides: OverridesArg = None, domain: DomainOpt = None, specialists: SpecialistsOpt = None,
                workspace: WorkspaceOpt = DEFAULT_WS) -> None:
            _run(name, workspace, config, dataset, model, out, overrides, domains=domain, specialists=specialists)
    else:
        def cmd(config: ConfigOpt = None, dataset: DatasetOpt = None, model: ModelOpt = None, out: OutOpt = None,
                overrides: OverridesArg = None, domain: DomainOpt = None,
                workspace: WorkspaceOpt = DEFAULT_WS) -> None:
            _run(name, workspace, config, dataset, model, out, overrides, domains=domain)

    cmd.__doc__ = help_text
    app.command(name)(cmd)


_command("pretrain", "Causal-LM training on the alignment corpus (or the catalog), SID tokens added.")
_command("sft", "Supervised fine-tuning on curated CoT chats (thinking/non-thinking mixed by think_ratio).")
_command("rl", "GRPO with SID rewards (format, validity, exact, prefix-partial, NDCG); trl.use_vllm on GPU.")
_command("rft", "Rejection-sampling fine-tuning: sample n from the current model (or each prompt's domain "
                "specialist: --specialists), keep correct ones, SFT; repeat for `rounds`.")
_command("merge", "Average the weights of specialist models (equal or given weights).")
_command("distill", "Multi-teacher on-policy distillation: each prompt's domain/task specialist teaches one "
                    "student, groups mixed inside batches (route_by=domain teachers='{a: DIR, b: DIR}').")
