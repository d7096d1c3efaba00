"""The task registry: tasks register by name; the CLI and `run_task` look them up here.

Built-in tasks live in alignment.py, perception.py, narrative.py and cognition.py and register on import;
`_load_builtins` imports them the first time the registry is read, so importing the registry stays cheap
and there is no import cycle.
"""
from __future__ import annotations

import importlib
from typing import Any

from storage.errors import NotFound
from synth.tasks.base import Task

_TASKS: dict[str, Task] = {}
_BUILTINS = ("synth.tasks.alignment", "synth.tasks.perception", "synth.tasks.narrative", "synth.tasks.cognition")
_loaded = False


def register(task: Task) -> Task:
    """Add (or replace) a task under its name; returns it so modules can write `X = register(Task(...))`."""
    _TASKS[task.name] = task
    return task


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTINS:
            importlib.import_module(mod)


def get_task(name: str) -> Task:
    _load_builtins()
    try:
        return _TASKS[name]
    except KeyError:
        raise NotFound(f"unknown synthesis task {name!r}; known tasks: {', '.join(sorted(_TASKS))} "
                       "(see `recot synth list`)") from None


def list_tasks() -> list[dict[str, Any]]:
    """One dict per task: name, level, kind, description, default dataset and options (name, default, help)."""
    _load_builtins()
    order = {"alignment": 0, "R0": 1, "R1": 2, "R2": 3, "R3": 4}
    out = []
    for t in sorted(_TASKS.values(), key=lambda t: (order.get(t.level, 9), t.kind != "deterministic", t.name)):
        out.append({"name": t.name, "level": t.level, "kind": t.kind, "description": t.description,
                    "dataset": t.default_dataset,
                    "options": [{"name": o.name, "default": o.default, "help": o.help} for o in t.all_options()]})
    return out
