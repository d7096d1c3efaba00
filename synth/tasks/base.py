"""What a task is: a versioned prompt template + a builder + a parser + a validator (curator's shape).

Two kinds:
- *deterministic* tasks (`generate(ctx) -> SQL`) write samples straight from the catalog and the splits
  with one DuckDB query; no teacher, millions of rows in seconds;
- *teacher* tasks (`build(ctx) -> [Prompt]`, `parse(prompt, text, finish_reason) -> Parsed`) turn catalog rows
  into teacher requests and each answer into sample rows; `run.py` owns everything in between (engine,
  cache, attribution, think/no_think variants, writing the version).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.answer import Parsed  # noqa: F401  (re-exported: tasks build Parsed values)
from storage.config import coerce
from storage.errors import ConfigError
from storage.workspace import Workspace
from synth.tasks.templates import Template

DETERMINISTIC = "deterministic"
TEACHER = "teacher"


@dataclass(frozen=True)
class Option:
    """One task option: name, default and a one-line help (shown by `recot synth list`)."""

    name: str
    default: Any
    help: str
    minimum: int | None = None  # numbers below it are refused (a negative limit would reach SQL as LIMIT -1)

    def coerce(self, value: Any) -> Any:
        """Options arrive as strings from the CLI (`--option k=v`); convert them to the default's type (read
        the way every config value is: storage.config.coerce)."""
        if value is None or self.default is None:
            return value
        out = coerce(value, type(self.default), self.name)
        if self.minimum is not None and isinstance(out, (int, float)) and out < self.minimum:
            raise ConfigError(f"option '{self.name}': must be >= {self.minimum}, got {value!r}")
        return out


# Options every task understands (run.py applies them).
COMMON_OPTIONS = (
    Option("seed", 0, "seed for every sampling decision (user order, pair sampling, noise, teacher seed)"),
    Option("limit", 0, "at most this many prompts / samples (0 = no limit)", minimum=0),
    Option("sid_version", 0, "SID version to use (0 = latest)", minimum=0),
    Option("language", "en", "prompt language (a translated template file if present, else English prompts "
                             "asking the teacher to answer in this language)"),
    Option("template_version", 0, "prompt template version (0 = latest file)", minimum=0),
    Option("domains", "", "only prompts whose target (the item, or the user's next item) is in these domains, "
                          "comma-separated ('' = every domain; an item without a domain is 'default')"),
)


def selected_domains(options: dict[str, Any]) -> list[str]:
    """The `domains` option as a list ([] = every domain)."""
    return [d.strip() for d in str(options.get("domains") or "").split(",") if d.strip()]

TEACHER_OPTIONS = (
    Option("n", 1, "samples per prompt (grouped by prompt_id, for rejection sampling)"),
    Option("temperature", 0.7, "teacher sampling temperature"),
    Option("max_tokens", 200, "teacher max new tokens"),
)

# Chain-of-thought tasks (cot=True) get this budget instead of TEACHER_OPTIONS' max_tokens.
COT_MAX_TOKENS = Option("max_tokens", 2048, "teacher max new tokens (real chain-of-thought needs thousands; a "
                                            "teacher config's max_tokens replaces this default, this option "
                                            "given explicitly wins)")

COT_OPTIONS = (
    Option("mode", "hint", "hint: the teacher sees the held-out target and reasons toward it; blind: it predicts"),
    Option("think", "think", "think | no_think | both: which chat variants to emit (/think, /no_think)"),
    Option("users", 0, "at most this many users (seeded order; 0 = all)"),
    Option("max_history", 20, "history length shown (most recent kept)"),
    Option("min_history", 3, "users need at least this many history items before the target"),
    Option("target_split", "train", "train: target = last TRAIN item, history = train items before it (no "
                                    "leakage); valid / test: evaluation prompts (history = everything before)"),
)


@dataclass
class Prompt:
    """One teacher prompt: what the teacher sees (`teacher_messages`) and what the training sample will show
    the student (`student_user`, never the hint). Everything else becomes sample columns."""

    prompt_id: str
    teacher_messages: list[dict[str, str]]
    student_user: str
    user_id: str | None = None
    domain: str | None = None
    history_item_ids: list[str] = field(default_factory=list)
    target_item_ids: list[str] = field(default_factory=list)
    target_sids: list[str] = field(default_factory=list)
    target_titles: list[str] = field(default_factory=list)
    mode: str = "none"
    reference: Any = None                  # JSON-able, stored in the `reference` column
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    """Everything a builder needs: the workspace, resolved options, SID version, template, run id."""

    ws: Workspace
    task: Task
    options: dict[str, Any]
    sid_version: int
    template: Template
    run_id: str
    created_at: datetime
    parents: list[tuple[str, int]] = field(default_factory=list)  # dataset versions read (lineage)

    @property
    def seed(self) -> int:
        return int(self.options.get("seed", 0))

    def opt(self, name: str) -> Any:
        return self.options[name]


@dataclass(frozen=True)
class Task:
    name: str
    level: str                                   # alignment | R0 | R1 | R2 | R3
    kind: str                                    # deterministic | teacher
    description: str
    options: tuple[Option, ...] = ()
    default_dataset: str = "alignment"
    template: str | None = None                  # template file stem (defaults to name)
    cot: bool = False                            # answers are <think>…</think> + answer (think/no_think variants)
    generate: Callable[[TaskContext], str] | None = None                 # deterministic: SQL producing samples
    build: Callable[[TaskContext], list[Prompt]] | None = None           # teacher: prompts
    parse: Callable[[Prompt, str, str | None], Parsed] | None = None     # teacher: (prompt, text, finish) → Parsed
    validate: Callable[[Prompt, Parsed], str | None] | None = None       # extra checks → error or None
    answer_schema: Callable[[], dict[str, Any]] | None = None            # JSON tasks: the answer's JSON schema
                                                                         # (structured outputs, run.py)
    resolver: Callable[[TaskContext], Callable[[Prompt, Parsed], None]] | None = None  # made once per run:
                                                   # maps a parsed answer onto the catalog (blind R3, resolve.py)

    @property
    def template_name(self) -> str:
        return self.template or self.name

    def all_options(self) -> tuple[Option, ...]:
        base = COMMON_OPTIONS + (TEACHER_OPTIONS if self.kind == TEACHER else ())
        if self.cot:
            base = tuple(COT_MAX_TOKENS if o.name == "max_tokens" else o for o in base)
        names = {o.name for o in self.options}
        return tuple(o for o in base if o.name not in names) + self.options

    def resolve_options(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with `given`; unknown names are a ConfigError listing the known ones."""
        opts = {o.name: o for o in self.all_options()}
        out = {name: o.default for name, o in opts.items()}
        for k, v in (given or {}).items():
            if k not in opts:
                raise ConfigError(f"task '{self.name}' has no option '{k}' (options: {', '.join(sorted(opts))})")
            out[k] = opts[k].coerce(v)
        return out


def dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)
