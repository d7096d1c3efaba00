"""storage.config: the one YAML + override loader every config (trainer, teacher, chain, task options) uses."""
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from storage.config import apply_overrides, coerce, load_model, parse_value, read_yaml
from storage.errors import ConfigError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = 0.5
    tags: list[str] = Field(default_factory=list)


class Demo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "x"
    model: str | None = None
    steps: int = 1
    flag: bool = False
    inner: Inner = Field(default_factory=Inner)
    extra: dict[str, Any] = Field(default_factory=dict)


def test_overrides_are_read_by_the_type_of_the_field_they_set(tmp_path):
    p = tmp_path / "demo.yaml"
    p.write_text("name: base\ninner:\n  threshold: 0.9\n")
    cfg = load_model(Demo, p, ["model=1e-3", "steps=4", "flag=yes", "inner.tags=a, b", "extra.x.y=[1, 2]",
                               "extra.z=true"])
    assert cfg.model == "1e-3"                        # a text field keeps the text as typed
    assert (cfg.steps, cfg.flag, cfg.inner.threshold) == (4, True, 0.9)
    assert cfg.inner.tags == ["a", "b"]               # a list field takes a,b ...
    assert load_model(Demo, None, ["inner.tags=[c]"]).inner.tags == ["c"]   # ... or YAML [c]
    assert cfg.extra == {"x": {"y": [1, 2]}, "z": True}                    # free-form: YAML scalars
    assert load_model(Demo, p, fields={"name": "kw", "model": None}).name == "kw"   # None fields ignored


def test_overrides_do_not_write_into_the_callers_data():
    data = {"inner": {"threshold": 0.1}}
    out = apply_overrides(data, ["inner.threshold=0.2"], Demo)
    assert out["inner"]["threshold"] == 0.2 and data == {"inner": {"threshold": 0.1}}
    with pytest.raises(ConfigError, match=r"override 'name.x=1': 'name' is not a mapping"):
        apply_overrides({"name": "a"}, ["name.x=1"], Demo)
    with pytest.raises(ConfigError, match=r"override 'steps': expected KEY=VALUE \(e.g. steps=2\)"):
        apply_overrides({}, ["steps"], Demo, example="steps=2")


def test_errors_name_the_file_the_field_and_the_line(tmp_path):
    p = tmp_path / "demo.yaml"
    p.write_text("name: a\ninner:\n  threshold: 0.9\n  tags: [a]\n  treshold: 1\n")
    with pytest.raises(ConfigError, match=r"demo.yaml: field 'inner.treshold' \(line 5\): Extra inputs"):
        load_model(Demo, p)
    p.write_text("steps: many\n")
    with pytest.raises(ConfigError, match=r"demo.yaml: field 'steps' \(line 1\): Input should be a valid integer"):
        load_model(Demo, p)
    # a value from the command line has no line in the file
    with pytest.raises(ConfigError, match=r"demo.yaml: field 'steps': Input should"):
        load_model(Demo, p, ["steps=lots"])
    p.write_text("steps: [unclosed\n")
    with pytest.raises(ConfigError, match=r"demo.yaml: not valid YAML: .*line 1"):
        load_model(Demo, p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"demo.yaml: expected a mapping of demo settings, got list"):
        load_model(Demo, p, what="demo")
    with pytest.raises(ConfigError, match=r"demo config .*none.yaml not found \(see docs\)"):
        read_yaml(tmp_path / "none.yaml", what="demo config", hint=" (see docs)")
    assert read_yaml(_write(tmp_path / "empty.yaml", ""), what="demo") == ({}, {})


def _write(p, text):
    p.write_text(text)
    return p


def test_coerce_converts_cli_text_and_python_values_or_names_the_option():
    assert coerce("on", bool, "think") is True and coerce("0", bool, "think") is False
    assert coerce("3", int, "n") == 3 and coerce("0.5", float, "noise") == 0.5 and coerce(2, float, "x") == 2.0
    assert coerce("R1, R2", list, "levels") == ["R1", "R2"] and coerce(("a",), list, "levels") == ["a"]
    assert coerce("007", str, "language") == "007" and coerce(7, str, "language") == "7"
    with pytest.raises(ConfigError, match=r"option 'n': expected int, got 'lots'"):
        coerce("lots", int, "n")
    with pytest.raises(ConfigError, match=r"option 'think': expected bool, got 'maybe'"):
        coerce("maybe", bool, "think")
    assert parse_value("not: [valid", Any) == "not: [valid"   # text that is not YAML stays text
