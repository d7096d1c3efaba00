"""Loading configs: a YAML file into a pydantic model, `key=value` overrides from the CLI, and errors that name
the file, the field and (where the file has it) the line.

Every config in recot goes through here — trainer configs (`trainers/config.py`), teacher configs
(`synth/teacher/config.py`), curation chains (`curation/config.py`) and synthesis task options
(`synth/tasks/base.py`) — so a value given on the command line means the same thing everywhere:

- an override is `key=value`; dots reach into nested mappings (`trl.use_vllm=true`);
- the value is read by the type of the field it sets: a text field keeps the text as typed (`model=1e-3` is
  the string "1e-3"), a list field takes `a,b` or YAML `[a, b]`, anything else is a YAML scalar (`3`, `0.5`,
  `true`, `null`) that the model then validates.
"""
from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from storage.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


# ---------------------------------------------------------------------------------------------- files
def read_yaml(path: str | os.PathLike[str], *, what: str, hint: str = "",
              expected: str | None = None) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The mapping in YAML file `path` and the line (1-based) of each key in it, keyed by its path.
    ConfigError when the file is missing ("<what> <path> not found<hint>"), is not YAML (with yaml's line and
    column) or is not a mapping ("expected <expected>", default "a mapping of <what> settings")."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} {p} not found{hint}")
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        lines = key_lines(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {_yaml_error(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected {expected or f'a mapping of {what} settings'}, "
                          f"got {type(data).__name__}")
    return data, lines


def _yaml_error(exc: yaml.YAMLError) -> str:
    """yaml's error on one line, with the line and column of each mark: 'while parsing a flow sequence (line 1,
    column 8): expected ',' or ']', but got '<stream end>' (line 2, column 1)'."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc)
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text:
            parts.append(f"{text} (line {mark.line + 1}, column {mark.column + 1})" if mark else text)
    return ": ".join(parts) or str(exc)


def key_lines(text: str) -> dict[Loc, int]:
    """{key path: 1-based line} for every mapping key and list entry of a YAML document."""
    out: dict[Loc, int] = {}

    def walk(node: yaml.Node | None, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*loc, k.value)
                out[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                out[(*loc, i)] = v.start_mark.line + 1
                walk(v, (*loc, i))

    walk(yaml.compose(text), ())
    return out


# ---------------------------------------------------------------------------------------------- values
def parse_scalar(raw: str) -> Any:
    """A CLI value read as a YAML scalar: '3' → 3, 'true' → True, '[1, 2]' → [1, 2]; text that is not
    YAML stays text."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _origin_types(annotation: Any) -> set[Any]:
    """The outer types an annotation allows, Optional/Union unpacked: `list[str] | None` → {list, None}."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_origin_types(a) for a in typing.get_args(annotation)))
    if annotation is type(None):
        return {None}
    if origin is typing.Literal:
        return {type(a) for a in typing.get_args(annotation)}
    return {origin or annotation}


def parse_value(raw: str, annotation: Any = Any) -> Any:
    """A CLI value read by the type of the field it sets (see the module doc)."""
    kinds = _origin_types(annotation) - {None}
    if kinds == {str}:
        return raw
    if kinds & {list, tuple, set} and not raw.strip().startswith("["):
        return [v.strip() for v in raw.split(",") if v.strip()]
    return parse_scalar(raw)


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """`value` (CLI text or a Python value) converted to `annotation`, e.g. for a task option whose type is
    its default's. ConfigError "option '<name>': expected <type>, got <value>" when it does not fit."""
    parsed = parse_value(value, annotation) if isinstance(value, str) else value
    try:  # numbers given for a text field become text, as they would typed on the command line
        return TypeAdapter(annotation, config=ConfigDict(coerce_numbers_to_str=True)).validate_python(parsed)
    except ValidationError:
        tname = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"option '{name}': expected {tname}, got {value!r}") from None


def field_annotation(model: type[BaseModel] | None, loc: Loc) -> Any:
    """The annotation of the field at dotted path `loc` of `model`, following nested models; Any when the
    path leaves the model (a free-form mapping such as `trl:`)."""
    ann: Any = model
    for part in loc:
        if isinstance(ann, type) and issubclass(ann, BaseModel) and part in ann.model_fields:
            ann = ann.model_fields[str(part)].annotation
        else:
            return Any
    return ann


# ---------------------------------------------------------------------------------------------- overrides
def split_override(ov: str, example: str = "max_steps=5") -> tuple[list[str], str]:
    """'a.b=value' → (['a', 'b'], 'value'); ConfigError when there is no '='."""
    if "=" not in ov:
        raise ConfigError(f"override {ov!r}: expected KEY=VALUE (e.g. {example})")
    key, raw = ov.split("=", 1)
    return key.strip().split("."), raw


def apply_overrides(data: dict[str, Any], overrides: list[str] | None, model: type[BaseModel] | None = None,
                    *, example: str = "max_steps=5") -> dict[str, Any]:
    """A copy of `data` with each `a.b=value` override set (dots reach into nested mappings), the value read
    by the type of `model`'s field at that path."""
    data = dict(data)
    for ov in overrides or []:
        parts, raw = split_override(ov, example)
        node = data
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {ov!r}: {p!r} is not a mapping")
            node[p] = child = dict(child)  # copy: never write into the caller's nested mappings
            node = child
        node[parts[-1]] = parse_value(raw, field_annotation(model, tuple(parts)))
    return data


# ---------------------------------------------------------------------------------------------- models
def validate(cls: type[M], data: dict[str, Any], source: str, lines: dict[Loc, int] | None = None) -> M:
    """`cls(**data)`; a ValidationError becomes ConfigError "<source>: field '<a.b>' (line N): <message>"
    for its first error (the line where `lines` knows the field or its nearest parent)."""
    try:
        return cls(**data)
    except ValidationError as exc:
        loc, field, msg = first_error(exc)
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if lines and loc[:n] in lines), None)
        where = f" (line {line})" if line else ""
        raise ConfigError(f"{source}: field '{field}'{where}: {msg}") from None


def first_error(exc: ValidationError) -> tuple[Loc, str, str]:
    """(path, dotted field name or '?', message) of a ValidationError's first error, the message without
    pydantic's 'Value error, ' prefix."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    return loc, ".".join(str(x) for x in loc) or "?", str(err.get("msg", "")).removeprefix("Value error, ")


def load_model(cls: type[M], path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None, *,
               what: str = "config", hint: str = "", expected: str | None = None,
               fields: dict[str, Any] | None = None, example: str = "max_steps=5") -> M:
    """Read YAML `path` (optional), apply `overrides` then `fields` (None values ignored), validate into
    `cls`. Errors name the file, the field and its line (see `read_yaml` for `what`/`hint`/`expected`,
    `apply_overrides` for `example`, `validate`)."""
    data: dict[str, Any] = {}
    lines: dict[Loc, int] = {}
    source = "<options>"
    if path is not None:
        data, lines = read_yaml(path, what=what, hint=hint, expected=expected)
        source = str(path)
    data = apply_overrides(data, overrides, cls, example=example)
    given = {k: v for k, v in (fields or {}).items() if v is not None}
    data.update(given)
    # a value set on the command line has no line in the file
    changed = [tuple(split_override(ov, example)[0]) for ov in overrides or []] + [(k,) for k in given]
    lines = {loc: n for loc, n in lines.items() if not any(loc[:len(c)] == c for c in changed)}
    return validate(cls, data, source, lines)
