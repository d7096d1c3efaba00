"""Trainer configurations: pydantic models loaded from YAML, with `key=value` overrides from the CLI.

Every trainer config shares `TrainConfig`'s fields (model, data, output, the usual optimisation knobs) and
passes anything TRL-specific through `trl:` — a mapping handed verbatim to the TRL config class
(`SFTConfig`, `GRPOConfig`, …), so a GPU YAML can set `use_vllm`, `vllm_mode`, `bf16` … without recot
re-declaring TRL's hundred options. TRL validates those names itself and fails loudly on a typo.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storage.errors import ConfigError

C = TypeVar("C", bound="TrainConfig")


class TrainConfig(BaseModel):
    """Fields every trainer understands."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None                 # HF folder or hub id; None = the embedded SmolLM2-135M-Instruct
    dataset: str | None = None               # dataset ref in the workspace, e.g. "sft_curated@v2"
    sid_version: int | None = None           # SID version for tokens/catalog; None = the dataset's, else latest
    out: str | None = None                   # output dir; None = <workspace>/models/<kind>-<run id>
    max_steps: int = 3
    num_train_epochs: float = 1.0
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_length: int = 256
    max_samples: int | None = None           # cap on training rows (tests, quick looks)
    seed: int = 0
    logging_steps: int = 1
    bf16: bool = False
    gradient_checkpointing: bool = False
    add_sid_tokens: bool = True              # extend the tokenizer with the SID version's tokens first
    trl: dict[str, Any] = Field(default_factory=dict)  # passed verbatim to the TRL / transformers config

    def training_args(self) -> dict[str, Any]:
        """Keyword arguments shared by transformers' TrainingArguments and every TRL config."""
        args = dict(
            max_steps=self.max_steps, num_train_epochs=self.num_train_epochs, learning_rate=self.learning_rate,
            per_device_train_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps, seed=self.seed,
            logging_steps=self.logging_steps, bf16=self.bf16, gradient_checkpointing=self.gradient_checkpointing,
            save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        )
        args.update(self.trl)
        return args


def _coerce(value: str) -> Any:
    """CLI override values are YAML scalars: '3' → 3, 'true' → True, '[1, 2]' → [1, 2]."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `a.b=value` overrides (dots reach into nested mappings such as `trl.use_vllm=true`)."""
    data = dict(data)
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected KEY=VALUE (e.g. max_steps=5 or trl.use_vllm=true)")
        key, value = ov.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p!r} is not a mapping")
        node[parts[-1]] = _coerce(value)
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                **fields: Any) -> C:
    """Read YAML `path` (optional), apply overrides and keyword fields (None values ignored), validate.
    Errors name the file and the field."""
    data: dict[str, Any] = {}
    source = "<options>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.exists():
            raise ConfigError(f"training config {p} not found (see configs/train/*.yaml)")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of training settings, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, overrides)
    data.update({k: v for k, v in fields.items() if v is not None})
    try:
        return cls(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or "?"
        raise ConfigError(f"{source}: field '{field}': {err.get('msg')}") from None
