"""Versioned prompt templates: `synth/prompts/<task>.v<N>[.<lang>].yaml`, a flat mapping of named parts
(e.g. `system`, `user`, `student`, `hint`) with `${name}` placeholders.

Why files and versions: a sample records `template_version` ("r3_recommend@v1"), and the teacher cache key
includes it, so editing a prompt means adding `<task>.v2.yaml` — old samples stay traceable to the exact
text that produced them and the cache never serves answers to a prompt that changed.

Why `${name}` (string.Template syntax, braces required): prompts contain JSON examples with `{` `}`, and
deterministic tasks compile the same templates into SQL string concatenations (see `to_sql`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from storage.errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
FILE_RE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)(?:\.(?P<lang>[a-z]{2,3}))?\.ya?ml$")
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    language: str
    parts: dict[str, str]
    path: Path

    @property
    def ref(self) -> str:
        """What samples store as `template_version`, e.g. 'r3_recommend@v1' (language suffix when not English)."""
        return f"{self.name}@v{self.version}" + ("" if self.language == "en" else f".{self.language}")

    def part(self, key: str) -> str:
        try:
            return self.parts[key]
        except KeyError:
            raise ConfigError(f"{self.path}: template part '{key}' is missing "
                              f"(has: {', '.join(sorted(self.parts))})") from None

    def has(self, key: str) -> bool:
        return key in self.parts

    def render(self, key: str, **values: object) -> str:
        """Fill `${var}` placeholders of part `key`; a placeholder without a value is a ConfigError."""
        text = self.part(key)

        def sub(m: re.Match) -> str:
            v = m.group(1)
            if v not in values:
                raise ConfigError(f"{self.path}: part '{key}' uses ${{{v}}} but the task gives no value for it "
                                  f"(gives: {', '.join(sorted(values))})")
            return "" if values[v] is None else str(values[v])

        return VAR_RE.sub(sub, text)

    def variables(self, key: str) -> list[str]:
        return VAR_RE.findall(self.part(key))

    def to_sql(self, key: str, columns: dict[str, str]) -> str:
        """Compile part `key` into a DuckDB expression: literals quoted, `${var}` → the SQL expression
        `columns[var]` (wrapped in coalesce(..., '') so one NULL does not blank the whole text)."""
        text = self.part(key)
        pieces: list[str] = []
        pos = 0
        for m in VAR_RE.finditer(text):
            if m.start() > pos:
                pieces.append(sql_str(text[pos:m.start()]))
            v = m.group(1)
            if v not in columns:
                raise ConfigError(f"{self.path}: part '{key}' uses ${{{v}}} but the task's SQL gives no column "
                                  f"for it (gives: {', '.join(sorted(columns))})")
            pieces.append(f"coalesce(CAST(({columns[v]}) AS VARCHAR), '')")
            pos = m.end()
        if pos < len(text):
            pieces.append(sql_str(text[pos:]))
        if not pieces:
            return "''"
        return "concat(" + ", ".join(pieces) + ")" if len(pieces) > 1 else pieces[0]


def sql_str(s: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + s.replace("'", "''") + "'"


def available(name: str) -> list[tuple[int, str, Path]]:
    """(version, language, path) of every template file of task `name`."""
    out = []
    for p in PROMPTS_DIR.glob(f"{name}.v*.y*ml"):
        m = FILE_RE.match(p.name)
        if m and m.group("name") == name:
            out.append((int(m.group("version")), m.group("lang") or "en", p))
    return sorted(out)


def load_template(name: str, version: int | None = None, language: str = "en") -> Template:
    """The template of task `name`: `version` (latest when None) in `language` (falls back to the English
    file when no translation exists; the task then asks the teacher to answer in `language`)."""
    files = available(name)
    if not files:
        raise ConfigError(f"no prompt template for task '{name}' in {PROMPTS_DIR} (expected {name}.v1.yaml)")
    versions = sorted({v for v, _, _ in files})
    v = versions[-1] if version is None else int(version)
    if v not in versions:
        raise ConfigError(f"task '{name}' has no template version {v} (available: "
                          f"{', '.join(f'v{x}' for x in versions)})")
    lang = (language or "en").lower()
    by_lang = {lang_: p for vv, lang_, p in files if vv == v}
    path = by_lang.get(lang) or by_lang.get("en")
    if path is None:
        raise ConfigError(f"task '{name}' v{v} has no English template and none in {lang!r}")
    used_lang = lang if lang in by_lang else "en"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(t, str) for k, t in data.items()):
        raise ConfigError(f"{path}: a template is a mapping of part name -> text")
    return Template(name=name, version=v, language=used_lang, parts=dict(data), path=path)
