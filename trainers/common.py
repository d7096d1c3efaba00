"""What every trainer does around its one TRL call: pick the base model, add SID tokens, open a run row,
save the final model with a lineage file, and check that the logged loss/reward is finite."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.datasets import DatasetVersion
from storage.errors import ConfigError, RecotError
from storage.runs import RecordedRun, recorded_run
from storage.workspace import Workspace

log = logging.getLogger(__name__)

LINEAGE_FILE = "recot_lineage.json"


@dataclass
class TrainResult:
    """What a trainer returns: the run id, where the model is, the metrics and the raw log history."""

    run_id: str
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)


def base_model_path(model: str | None) -> str:
    """A model folder or hub id; None → the embedded SmolLM2-135M-Instruct (no network)."""
    if model:
        return str(model)
    from synth.teacher.local_model import ensure_local_model

    return str(ensure_local_model())


def model_lineage(model_dir: str | Path) -> dict[str, Any]:
    """The lineage file a recot trainer wrote next to a model ({} for foreign models)."""
    p = Path(model_dir) / LINEAGE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def dataset_sid_version(dv: DatasetVersion | None) -> int | None:
    """The SID version a dataset's samples were written with (one value expected)."""
    if dv is None:
        return None
    import duckdb

    names = {f["name"] for f in dv.manifest.get("schema", [])}
    if "sid_version" not in names:
        return None
    con = duckdb.connect()
    try:
        vals = [r[0] for r in con.execute(
            f"SELECT DISTINCT sid_version FROM {dv.sql} WHERE sid_version IS NOT NULL").fetchall()]
    finally:
        con.close()
    if len(vals) > 1:
        raise RecotError(f"{dv.ref} mixes SID versions {sorted(vals)}; train on one SID version at a time")
    return int(vals[0]) if vals else None


def resolve_sid_version(ws: Workspace, wanted: int | None, dv: DatasetVersion | None = None,
                        model_dir: str | Path | None = None) -> int | None:
    """Config value, else the dataset's, else the base model's (lineage), else the latest in the workspace."""
    from storage.sid_catalog import latest_sid_version

    for v in (wanted, dataset_sid_version(dv),
              model_lineage(model_dir).get("sid_version") if model_dir else None):
        if v is not None:
            return int(v)
    return latest_sid_version(ws)


def load_model_and_tokenizer(path: str, *, ws: Workspace | None = None, sid_version: int | None = None,
                             add_tokens: bool = True, bf16: bool = False):
    """Load a causal LM + tokenizer; add the SID tokens of `sid_version` (mean-initialised) when asked."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.tokenizer import add_sid_tokens, check_sid_tokenization, sid_tokens

    if Path(path).expanduser().is_absolute() or path.startswith((".", "~")):
        if not (Path(path).expanduser() / "config.json").exists():  # else transformers takes it for a hub id
            raise ConfigError(f"model folder {path} not found (no config.json); set `model:` to a model folder "
                              "or a Hugging Face hub id, or leave it empty for the embedded SmolLM2")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32)
    added = 0
    if add_tokens and ws is not None and sid_version is not None:
        added = add_sid_tokens(model, tok, sid_tokens(ws, sid_version))
        check_sid_tokenization(tok)
    return model, tok, added


def default_out_dir(ws: Workspace, run_id: str) -> Path:
    return ws.root / "models" / run_id


def training_run(ws: Workspace, kind: str, config: dict[str, Any]) -> RecordedRun:
    """The `runs` row (kind 'train-<kind>') around a training job: see `storage.runs.recorded_run`."""
    return recorded_run(ws, f"train-{kind}", config)


def summarize_logs(log_history: list[dict[str, Any]], keys: tuple[str, ...] = ("loss", "reward")) -> dict:
    """First/last value of each logged metric whose name contains one of `keys`; raises when any is not
    finite — a NaN loss means the saved model is garbage, so the run must fail, not 'succeed'."""
    series: dict[str, list[float]] = {}
    for entry in log_history:
        for k, v in entry.items():
            if isinstance(v, (int, float)) and any(s in k for s in keys):
                series.setdefault(k, []).append(float(v))
    bad = {k: v for k, v in series.items() if not all(math.isfinite(x) for x in v)}
    if bad:
        raise RecotError(f"training produced non-finite values: {bad}")
    return {k: {"first": v[0], "last": v[-1], "n": len(v)} for k, v in series.items()}


def save_model(trainer_or_model, tokenizer, out_dir: Path, lineage: dict[str, Any]) -> Path:
    """Save weights + tokenizer + lineage into `out_dir` through a temp folder renamed into place, so a
    crash never leaves a half-written model where a finished one is expected."""
    from storage.atomic import publish_dir

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / LINEAGE_FILE).exists():
        # never wipe a folder recot did not write (think `--out .`)
        raise RecotError(f"output folder {out_dir} exists and is not a recot model folder; choose another --out")

    def write(tmp: Path) -> None:
        if hasattr(trainer_or_model, "save_model"):
            trainer_or_model.save_model(str(tmp))
        else:
            trainer_or_model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, default=str))
        for junk in ("training_args.bin",):
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp / junk)

    publish_dir(out_dir, write, kind="model")
    return out_dir


def finish(run: RecordedRun, kind: str, *, trainer, tokenizer, out_dir: Path, base_model: str,
           datasets: list[str], sid_version: int | None, config: dict[str, Any],
           extra: dict[str, Any] | None = None, keys: tuple[str, ...] = ("loss", "reward")) -> TrainResult:
    """Check the logs, save model + lineage, and set the stats the run row is closed with."""
    history = list(getattr(getattr(trainer, "state", None), "log_history", []) or [])
    metrics = summarize_logs(history, keys)
    # `domains`: the domains this model was trained on (None = all) — a specialist's domain for rft/distill
    lineage = {"run_id": run.id, "kind": kind, "base_model": base_model, "datasets": datasets,
               "sid_version": sid_version, "domains": config.get("domains"), "config": config,
               "metrics": metrics, **(extra or {})}
    save_model(trainer, tokenizer, out_dir, lineage)
    run.stats = {"out_dir": str(out_dir), "metrics": metrics, "datasets": datasets,
                 "domains": config.get("domains"),
                 "sid_version": sid_version, "base_model": base_model, **(extra or {})}
    log.info("%s run %s saved to %s", kind, run.id, out_dir)
    return TrainResult(run_id=run.id, out_dir=out_dir, metrics=metrics, log_history=history)
