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

    def key(self, backend: str, model: str, extra_body: dict[str, Any] | None = None) -> str:
        """The durable cache key: sha256 over everything that determines the answer. `extra_body` (the teacher
        config's server-specific request fields, e.g. Qwen3's enable_thinking) changes answers too; it enters
        the key only when set, so keys made before it existed stay valid."""
        payload = {"backend": backend, "model": model, "messages": self.messages, "params": self.params.to_dict(),
                   "json_schema": self.json_schema, "template_version": self.template_version}
        if extra_body:
            payload["extra_body"] = extra_body
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def join_reasoning(reasoning: str | None, content: str | None) -> str:
    """One answer text from a server that returns the thinking apart from the answer (vLLM's
    `--reasoning-parser` puts it in `message.reasoning_content`, other servers in `message.reasoning`):
    `<think>\n{reasoning}\n</think>\n\n{content}`, the shape every parser and the format rule read
    (storage/answer.py), so the sample keeps the reasoning and passes the format filter. A content that already
    has a think tag is kept as it is (the server did not split it); no reasoning gives the content unchanged."""
    content = content or ""
    if not reasoning or not reasoning.strip() or "<think>" in content or "</think>" in content:
        return content
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{content.lstrip()}"


def json_schema_of(model: Any) -> dict[str, Any]:
    """A pydantic model's JSON schema, self-contained (every `$ref` into `$defs` inlined) so any structured-
    output engine takes it: OpenAI-compatible `response_format` (vLLM serve, SGLang, llama.cpp) and vLLM's
    offline `StructuredOutputsParams(json=...)`."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.split("/")[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def r2_json_schema() -> dict[str, Any]:
    """The JSON schema of an R2 answer (`{"logic_chain": {"name", "events": [{"action", "logic", "date"}]}}`),
    built from the one R2 pydantic model, storage.answer.R2Answer: what r2_evolve asks structured-output
    servers for, and what the format filter then checks."""
    from storage.answer import R2Answer

    return json_schema_of(R2Answer)


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
