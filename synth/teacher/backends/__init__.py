"""Backends: one small module each, one interface (`base.Backend`). `make_backend(config)` picks one.
`skeleton` is not a model: it puts a prompt's data-derived cognition skeleton into words (skeleton_backend.py)."""
from __future__ import annotations

from synth.teacher.backends.base import Backend, Completion
from synth.teacher.config import TeacherConfig


def make_backend(config: TeacherConfig) -> Backend:
    if config.backend == "openai":
        from synth.teacher.backends.openai_backend import OpenAIBackend
        return OpenAIBackend(config)
    if config.backend == "vllm":
        from synth.teacher.backends.vllm_backend import VLLMBackend
        return VLLMBackend(config)
    if config.backend == "local":
        from synth.teacher.backends.local_backend import LocalBackend
        return LocalBackend(config)
    if config.backend == "skeleton":
        from synth.teacher.backends.skeleton_backend import SkeletonBackend
        return SkeletonBackend(config)
    raise ValueError(f"unknown teacher backend {config.backend!r}")


__all__ = ["Backend", "Completion", "make_backend"]
