"""Trainer configurations: pydantic models loaded from YAML, with `key=value` overrides from the CLI.

Every trainer config shares `TrainConfig`'s fields (model, data, output, the usual optimisation knobs) and
passes anything TRL-specific through `trl:` — a mapping handed verbatim to the TRL config class
(`SFTConfig`, `GRPOConfig`, …), so a GPU YAML can set `use_vllm`, `vllm_mode`, `bf16` … without recot
re-declaring TRL's hundred options. TRL validates those names itself and fails loudly on a typo.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storage.config import load_model

C = TypeVar("C", bound="TrainConfig")


class TrainConfig(BaseModel):
    """Fields every trainer understands."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None                 # HF folder or hub id; None = the embedded SmolLM2-135M-Instruct
    dataset: str | None = None               # dataset ref in the workspace, e.g. "sft_curated@v2" (a mix too)
    domains: list[str] | None = None         # train only on these domains' rows (a specialist); None = all
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

    @field_validator("domains", mode="before")
    @classmethod
    def _domains_from_text(cls, v: Any) -> Any:
        """`domains=books` or `--domain books,movies` → a list."""
        if isinstance(v, str):
            return [d.strip() for d in v.split(",") if d.strip()] or None
        return v

    @field_validator("trl")
    @classmethod
    def _trl_keys_are_not_recot_fields(cls, trl: dict[str, Any]) -> dict[str, Any]:
        """A `trl:` key that recot sets itself would reach the TRL config twice (a duplicate-keyword crash, or
        one value silently winning): refuse it and say where it belongs."""
        own = set(cls.model_fields) - {"trl"}
        clash = sorted(k for k in trl if k in own or k == "output_dir")
        if clash:
            k = clash[0]
            where = ("set by recot (use `out:`)" if k == "output_dir"
                     else f"also the recot field `{k}`; set it once, as top-level `{k}:`")
            raise ValueError(f"trl.{k} is {where}" + (f" (also clashing: {', '.join(clash[1:])})"
                                                       if len(clash) > 1 else ""))
        return trl

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


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                **fields: Any) -> C:
    """Read YAML `path` (optional), apply `key=value` overrides (`trl.warmup_steps=2` reaches into `trl:`) and
    keyword fields (None values ignored), validate. Errors name the file, the field and its line."""
    return load_model(cls, path, overrides, what="training config", hint=" (see configs/train/*.yaml)",
                      expected="a mapping of training settings", fields=fields,
                      example="max_steps=5 or trl.warmup_steps=2")
