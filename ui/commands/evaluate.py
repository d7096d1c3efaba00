"""`recot eval`: ranking metrics on the test split with SID-constrained beam search (think vs no-think side
by side), or `--bench` for one R0 → R3 table. Results are stored in the `evals` table."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from storage.errors import ConfigError
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: Annotated[Path, typer.Option("--model", "-m", help="Model folder (a recot training output or any "
                                                                  "HF causal LM; SID tokens are added if missing).")],
        split: Annotated[str, typer.Option("--split", help="Split to score; only 'test' (leave-last-out) is "
                                                           "supported.")] = "test",
        k: Annotated[str, typer.Option("--k", help="Cut-offs, comma separated.")] = "1,5,10",
        think: Annotated[bool | None, typer.Option(
            "--think/--no-think", help="Thinking or non-thinking prompts (default: no-think).")] = None,
        both: Annotated[bool, typer.Option("--both", help="Score thinking and non-thinking side by side.")] = False,
        beams: Annotated[int | None, typer.Option("--beams", help="Beam width (default max K).")] = None,
        max_users: Annotated[int | None, typer.Option("--max-users", help="Score only the first N test "
                                                                             "users (quick looks).")] = None,
        think_tokens: Annotated[int, typer.Option("--think-tokens", help="Token budget for reasoning before "
                                                                         "the SID in think mode.")] = 128,
        sid_version: Annotated[int | None, typer.Option("--sid-version", help="SID version (default: the "
                                                                                 "model's, else latest).")] = None,
        bench: Annotated[bool, typer.Option("--bench", help="Level-by-level benchmark R0 → R3 on the test "
                                                            "split.")] = False,
        history_format: Annotated[str, typer.Option(
            "--history-format", help="How prompts show history items: sid_title | sid | title (the one the "
                                     "model was trained with).")] = "sid_title",
        workspace: WorkspaceOpt = DEFAULT_WS,
    ) -> None:
        """Score a model: HR@K, Recall@K, NDCG@K on the test split with beam search constrained to catalog SIDs."""
        from trainers.evaluate import bench_model, evaluate_model

        if split != "test":
            raise ConfigError(f"--split {split!r}: only the test split is scored (history = train + valid)")
        try:
            ks = sorted({int(x) for x in k.split(",") if x.strip()})
        except ValueError:
            raise ConfigError(f"--k {k!r}: expected comma-separated integers like 1,5,10") from None
        if not ks or min(ks) < 1:
            raise ConfigError(f"--k {k!r}: cut-offs must be positive")
        if not model.exists():
            raise ConfigError(f"--model {model}: no such folder")
        ws = open_ws(workspace, create=False)
        if bench:
            with console.status("benchmarking R0 → R3 …"):
                res = bench_model(ws, model, sid_version=sid_version, max_users=max_users, ks=ks)
            t = Table(title=f"bench {res.eval_id}: {model}")
            t.add_column("level")
            t.add_column("metric")
            t.add_column("value", justify="right")
            for level, ms in res.metrics.items():
                if "scored" in ms and not ms["scored"]:
                    t.add_row(level, "—", "not scored (no reference)")
                    continue
                for name, v in ms.items():
                    t.add_row(level, name, f"{v:.4f}" if name != "n" else f"{int(v)}")
            console.print(t)
            return
        modes = ["no_think", "think"] if both else (["think"] if think else ["no_think"])
        with console.status(f"scoring {', '.join(modes)} …"):
            res = evaluate_model(ws, model, ks=ks, modes=modes, num_beams=beams, sid_version=sid_version,
                                 max_users=max_users, think_tokens=think_tokens, history_format=history_format)
        t = Table(title=f"{res.eval_id}: {model} ({res.n_users} test users)")
        t.add_column("metric")
        for m in modes:
            t.add_column(m, justify="right")
        for name in res.metrics[modes[0]]:
            t.add_row(name, *[f"{res.metrics[m][name]:.4f}" for m in modes])
        console.print(t)
