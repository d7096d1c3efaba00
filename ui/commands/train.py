"""`recot train` commands: one per trainer, each = a YAML config (configs/train/<name>.cpu.yaml or
.gpu.yaml) + optional --dataset/--model/--out + KEY=VALUE overrides, then one call into trainers/."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


def _run(name: str, workspace: Path, config: Path | None, dataset: str | None, model: str | None,
         out: Path | None, overrides: list[str] | None, **fields: str | None) -> None:
    from trainers.config import load_config
    from trainers.registry import get_trainer

    cfg_cls, fn = get_trainer(name)
    cfg = load_config(cfg_cls, config, overrides, dataset=dataset, model=model,
                      out=str(out) if out else None, **fields)
    ws = open_ws(workspace, create=False)
    with console.status(f"training {name} …"):
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
