"""The one interface every backend implements.

A backend turns one `ChatRequest` into one `Completion` (n choices + finish reasons + token usage) or
raises `TeacherAttemptError(kind)`. It knows nothing of caching, retries, limits or accounting: those live
once, in the engine. `start()`/`aclose()` bracket one event loop's use (clients bound to a loop are made
there); heavy, loop-independent state (model weights) is kept across runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from synth.teacher.types import ChatRequest, Usage


@dataclass
class Completion:
    choices: list[str]
    finish_reasons: list[str]
    usage: Usage = field(default_factory=Usage)


class Backend:
    name: str = "base"
    #: whether the engine should bound each attempt with config.timeout_s. In-process backends (local,
    #: vllm) cannot abandon a generation that is running in a worker thread, so for them it is False.
    network: bool = True

    async def start(self) -> None:
        """Called inside the event loop before the first request of a run."""

    async def complete(self, request: ChatRequest) -> Completion:  # pragma: no cover - interface
        raise NotImplementedError

    async def aclose(self) -> None:
        """Called inside the event loop after the last request of a run."""
