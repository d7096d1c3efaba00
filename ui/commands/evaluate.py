"""`recot eval`: ranking metrics on the test split — the model in think / no-think / race mode and the baselines
(random, most-popular, item-kNN) in one table, on the same users and protocol — or `--bench` for one R0 → R3
table. Results are stored in the `evals` table."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from storage.errors import ConfigError
from ui.commands.common import DEFAULT_WS, WorkspaceOpt, console, open_ws


def results_table(title: str, metrics: dict[str, dict[str, Any]], rows: list[str]) -> Table:
    """One row per system (baselines first, then model modes), one column per metric."""
    t = Table(title=title)
    t.add_column("row")
    names = list(dict.fromkeys(n for r in rows for n, v in metrics[r].items() if not isinstance(v, dict)))
    for n in names:
        t.add_column(n, justify="right")
    for r in rows:
        t.add_row(r, *[f"{metrics[r][n]:.4f}" if n in metrics[r] else "—" for n in names])
    return t


def by_domain_table(title: str, metrics: dict[str, dict[str, Any]], rows: list[str], only: str = "all") -> Table:
    """One row per (domain, row), domains in order; a single-domain result is its own only domain (`only`)."""
    per = metrics.get("by_domain") or {r: {only: metrics[r]} for r in rows}
    domains = list(dict.fromkeys(d for r in rows for d in per.get(r, {})))
    flat = {f"{d} · {r}": per[r][d] for d in domains for r in rows if d in per.get(r, {})}
    return results_table(title, flat, list(flat))


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: Annotated[Path | None, typer.Option(
            "--model", "-m", help="Model folder (a recot training output or any HF causal LM; SID tokens are added "
                                  "if missing). Without it only the baselines are scored.")] = None,
        split: Annotated[str, typer.Option("--split", help="Split to score; only 'test' (leave-last-out) is "
                                                           "supported.")] = "test",
        k: Annotated[str, typer.Option("--k", help="Cut-offs, comma separated.")] = "1,5,10",
        think: Annotated[bool | None, typer.Option(
            "--think/--no-think", help="Thinking or non-thinking prompts (default: no-think).")] = None,
        both: Annotated[bool, typer.Option("--both", help="Score think, no-think and race (half think, half "
                                                          "no-think candidates, think first) side by side.")] = False,
        baselines: Annotated[bool, typer.Option(
            "--baselines/--no-baselines", help="Also score random, most-popular (train split) and item-kNN on the "
                                               "same users.")] = True,
        exclude_seen: Annotated[bool, typer.Option(
            "--exclude-seen/--keep-seen", help="Remove each user's train+valid items from every ranked list "
                                               "(all rows alike; recorded with the results).")] = False,
        beams: Annotated[int | None, typer.Option("--beams", help="Beam width (default max K).")] = None,
        max_users: Annotated[int | None, typer.Option("--max-users", help="Score only the first N test "
                                                                             "users (quick looks).")] = None,
        think_budget: Annotated[int, typer.Option(
            "--think-budget", "--think-tokens", help="Reasoning tokens before </think> is forced (think "
                                                     "mode).")] = 1024,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Users per generate call.")] = 8,
        sid_version: Annotated[int | None, typer.Option("--sid-version", help="SID version (default: the "
                                                                                 "model's, else latest).")] = None,
        bench: Annotated[bool, typer.Option("--bench", help="Level-by-level benchmark R0 → R3 on the test "
                                                            "split.")] = False,
        history_format: Annotated[str, typer.Option(
            "--history-format", help="How prompts show history items: sid_title | sid | title (the one the "
                                     "model was trained with).")] = "sid_title",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the random baseline.")] = 0,
        by_domain: Annotated[bool, typer.Option("--by-domain", help="One table with a row per domain and "
                                                                     "mode/baseline (targets' domains).")] = False,
        domain: Annotated[list[str] | None, typer.Option(
            "--domain", help="Score only users whose test item is in this domain (repeat for several).")] = None,
        workspace: WorkspaceOpt = DEFAULT_WS,
    ) -> None:
        """Score a model and the baselines: HR@K, Recall@K, NDCG@K on the test split (model answers by beam search
        constrained to catalog SIDs, after its reasoning in think mode)."""
        from trainers.evaluate import bench_model, evaluate_baselines, evaluate_model

        if split != "test":
            raise ConfigError(f"--split {split!r}: only the test split is scored (history = train + valid)")
        try:
            ks = sorted({int(x) for x in k.split(",") if x.strip()})
        except ValueError:
            raise ConfigError(f"--k {k!r}: expected comma-separated integers like 1,5,10") from None
        if not ks or min(ks) < 1:
            raise ConfigError(f"--k {k!r}: cut-offs must be positive")
        if model is not None and not model.exists():
            raise ConfigError(f"--model {model}: no such folder")
        if model is None and (bench or not baselines):
            raise ConfigError("--model is required (only the baselines can be scored without a model)")
        if bench and domain:
            raise ConfigError("--domain selects test users of the ranking eval; --bench has no domain selection "
                              "(drop one of them)")
        ws = open_ws(workspace, create=False)
        if bench:
            assert model is not None
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
        if model is None:
            with console.status("scoring baselines …"):
                res = evaluate_baselines(ws, ks=ks, sid_version=sid_version, max_users=max_users,
                                         exclude_seen=exclude_seen, seed=seed, domains=domain)
            title = f"{res.eval_id}: baselines ({res.n_users} test users)"
        else:
            modes = ["no_think", "think", "race"] if both else (["think"] if think else ["no_think"])
            with console.status(f"scoring {', '.join(modes)}{' and baselines' if baselines else ''} …"):
                res = evaluate_model(ws, model, ks=ks, modes=modes, num_beams=beams, sid_version=sid_version,
                                     max_users=max_users, think_budget=think_budget, batch_size=batch_size,
                                     history_format=history_format, exclude_seen=exclude_seen,
                                     baselines=baselines, seed=seed, domains=domain)
            title = f"{res.eval_id}: {model} ({res.n_users} test users)"
        rows = [r for r in res.metrics if r != "by_domain"]
        seen = "seen items excluded" if exclude_seen else "seen items kept"
        if domain:
            title += f", domain {', '.join(domain)}"
        console.print(results_table(f"{title}, leave-last-out test, {seen}", res.metrics, rows))
        if by_domain:
            only = domain[0] if domain and len(domain) == 1 else "all"
            console.print(by_domain_table(f"{title} by domain", res.metrics, rows, only))
            return
        for r, doms in res.metrics.get("by_domain", {}).items():
            console.print(results_table(f"{r} by domain", doms, list(doms)))
