"""Chain configuration: an ordered list of filters with typed parameters, read from YAML.

    name: default
    description: what this chain is for
    filters:
      - type: format            # registered filter type (see `recot curate filters`)
        name: format            # label in verdicts/funnel (default: the type); unique within a chain
        only_kept: false        # evaluate only samples still kept (default depends on the filter)
        params: {require_think: true}

A chain is referenced by name (`configs/curation/<name>.yaml`), by path, or given as a ChainConfig.
`overrides` ("near_dup.threshold=0.7") change parameters without editing the file, so thresholds can be
re-tried on an existing dataset.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from curation.base import Filter, get_filter_class, registry
from storage.config import Loc, parse_scalar, read_yaml
from storage.errors import ConfigError


def _configs_root() -> Path:
    """The configs/ folder: the data package `recot_configs` a wheel installs (setup.py maps configs/ to it),
    else the top-level configs/ of a source checkout."""
    spec = importlib.util.find_spec("recot_configs")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "curation").is_dir():
            return Path(loc)
    return Path(__file__).resolve().parents[1] / "configs"


CONFIG_DIR = _configs_root() / "curation"


class FilterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    name: str | None = None
    enabled: bool = True
    only_kept: bool | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.type


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    description: str = ""
    sid_version: int | None = None  # None: each sample's own sid_version (else the latest)
    filters: list[FilterSpec]

    @model_validator(mode="after")
    def _unique_labels(self) -> ChainConfig:
        seen: set[str] = set()
        for f in self.filters:
            if f.label in seen:
                raise ValueError(f"filter name {f.label!r} is used twice; give one of them another `name:`")
            seen.add(f.label)
        return self

    def build(self, source: str = "<chain>") -> list[Filter[Any]]:
        """Instantiate the enabled filters, validating each one's params (ConfigError names the filter)."""
        out: list[Filter[Any]] = []
        for i, spec in enumerate(self.filters):
            if not spec.enabled:
                continue
            try:
                cls = get_filter_class(spec.type)
            except KeyError:
                raise ConfigError(f"{source}: filter #{i + 1} has unknown type {spec.type!r}; known types: "
                                  f"{', '.join(sorted(registry()))}") from None
            try:
                params = cls.Params(**spec.params)
            except ValidationError as exc:
                msgs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                raise ConfigError(f"{source}: filter #{i + 1} ({spec.label}) has bad params: {msgs}") from None
            out.append(cls(params, label=spec.label, only_kept=spec.only_kept))
        if not out:
            raise ConfigError(f"{source}: the chain has no enabled filters")
        return out


def list_chains() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_chain(chain: str | Path | ChainConfig | dict[str, Any],
               overrides: list[str] | None = None) -> tuple[ChainConfig, str]:
    """Resolve a chain reference to (ChainConfig, source description)."""
    if isinstance(chain, ChainConfig):
        cfg, source = chain, f"<chain {chain.name}>"
    elif isinstance(chain, dict):
        cfg, source = _validate(chain, "<dict>"), "<dict>"
    else:
        path = Path(chain)
        if not path.suffix and not path.exists():
            path = CONFIG_DIR / f"{chain}.yaml"
        if not path.exists():
            raise ConfigError(f"chain {chain!r} not found: no file {path}; built-in chains: {', '.join(list_chains())}")
        data, lines = read_yaml(path, what="chain", expected="a mapping with a `filters:` list")
        data.setdefault("name", path.stem)
        cfg, source = _validate(data, str(path), lines), str(path)
        _check_params(cfg, source, lines)
    if overrides:
        cfg = apply_overrides(cfg, overrides, source)
    return cfg, source


def _line(lines: dict[Loc, int] | None, loc: Loc) -> str:
    """' (line N)' for the deepest part of `loc` the YAML file has a line for, else ''."""
    for n in range(len(loc), 0, -1):
        if lines and tuple(loc[:n]) in lines:
            return f" (line {lines[tuple(loc[:n])]})"
    return ""


def _validate(data: dict[str, Any], source: str, lines: dict[Loc, int] | None = None) -> ChainConfig:
    try:
        return ChainConfig(**data)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}{_line(lines, tuple(e['loc']))}: {e['msg']}"
                         for e in exc.errors())
        raise ConfigError(f"{source}: bad chain config: {msgs}") from None


def _check_params(cfg: ChainConfig, source: str, lines: dict[Loc, int]) -> None:
    """Validate each filter's params while the file's lines are known, so the error names the line."""
    for i, spec in enumerate(cfg.filters):
        try:
            cls = get_filter_class(spec.type)
        except KeyError:
            raise ConfigError(f"{source}: filter #{i + 1} has unknown type {spec.type!r}"
                              f"{_line(lines, ('filters', i, 'type'))}; known types: {', '.join(sorted(registry()))}"
                              ) from None
        try:
            cls.Params(**spec.params)
        except ValidationError as exc:
            msgs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}"
                             f"{_line(lines, ('filters', i, 'params', *e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{source}: filter #{i + 1} ({spec.label}) has bad params: {msgs}") from None


def apply_overrides(cfg: ChainConfig, overrides: list[str], source: str = "<chain>") -> ChainConfig:
    """Apply 'label.param=value' overrides (value parsed as YAML: 0.7, true, [a, b]); 'label.enabled=false'
    switches a filter off."""
    data = cfg.model_dump()
    by_label = {(f["name"] or f["type"]): f for f in data["filters"]}
    for ov in overrides:
        if "=" not in ov or "." not in ov.split("=", 1)[0]:
            raise ConfigError(f"bad override {ov!r}: expected FILTER.PARAM=VALUE, e.g. near_dup.threshold=0.7")
        key, raw = ov.split("=", 1)
        label, param = key.split(".", 1)
        if label not in by_label:
            raise ConfigError(f"override {ov!r}: no filter named {label!r} in {source} "
                              f"(filters: {', '.join(by_label)})")
        value = parse_scalar(raw)
        if param in ("enabled", "only_kept"):
            by_label[label][param] = value
        else:
            by_label[label]["params"][param] = value
    return _validate(data, source)
