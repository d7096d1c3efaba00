"""Request/response types shared by every backend, the cache and the tasks.

The cache key covers exactly what changes an answer: backend, model, messages, sampling parameters
(including seed and n), the JSON schema and the prompt template version. Concurrency, limits and timeouts
change how a request is sent, never what it returns, so they are not in the key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        # spelled out rather than dataclasses.asdict: this runs for every cache key, and asdict's deep copy
        # was a third of the engine's per-request overhead
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "n": self.n,
                "seed": self.seed, "stop": list(self.stop) if self.stop else None}


@dataclass(frozen=True)
class ChatRequest:
    """One chat request. `meta` travels with the request to the response (e.g. the prompt's user and target)
    and is *not* part of the cache key."""

    messages: tuple[tuple[str, str], ...]  # ((role, content), ...) — hashable and order-preserving
    params: SamplingParams = field(default_factory=SamplingParams)
    json_schema: str | None = None          # JSON-encoded schema when structured output is required
    template_version: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_messages(cls, messages: list[dict[str, str]], params: SamplingParams | None = None, *,
                      json_schema: dict | None = None, template_version: str = "",
                      meta: dict | None = None) -> ChatRequest:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), params=params or SamplingParams(),
                   json_schema=json.dumps(json_schema, sort_keys=True) if json_schema else None,
                   template_version=template_version, meta=dict(meta or {}))

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def messages_digest(self) -> str:
        """sha256 of the messages alone: how the fault server and the cache log name a prompt, so tests can
        match the server's request log against the cache without knowing the cache key."""
        return messages_digest(self.message_dicts())

    def key(self, backend: str, model: str) -> str:
        """The durable cache key: sha256 over everything that determines the answer."""
        payload = {"backend": backend, "model": model, "messages": self.messages, "params": self.params.to_dict(),
                   "json_schema": self.json_schema, "template_version": self.template_version}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def messages_digest(messages: list[dict[str, str]]) -> str:
    """sha256 over [[role, content], ...] — the same on the client and on the fault server."""
    pairs = [[m["role"], m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])]
             for m in messages]
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatResponse:
    """The outcome of one request: `choices` (n texts) on success, or `error` + `error_kind` when retries
    were exhausted or the answer was unusable. `cached` is True when served from the durable cache."""

    request: ChatRequest
    key: str
    teacher: str                       # "<backend>:<model>"
    choices: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    # rate_limit | server_error | timeout | connection | malformed | empty | truncated | invalid_json | other
    error_kind: str | None = None
    attempts: int = 1
    latency_s: float = 0.0
    cached: bool = False
    index: int | None = None           # position in the request list given to engine.run/astream

    @property
    def text(self) -> str | None:
        """The first choice (the common n=1 case), or None on error."""
        return self.choices[0] if self.choices else None

    @property
    def ok(self) -> bool:
        return self.error is None
