"""Any OpenAI-compatible chat server (vLLM serve, llama.cpp server, SGLang, hosted APIs) through the
`openai` async client. The client's own retries are off (`max_retries=0`): recot retries in one place,
the engine, so accounting sees every attempt. The key is read from `config.api_key_env` when a run starts.

Reasoning servers: vLLM with `--reasoning-parser` (and SGLang, DeepSeek's API) return the thinking in
`message.reasoning_content`, others (OpenRouter, newer vLLM) in `message.reasoning`, and only the answer in
`content`. The choice text is then rebuilt as `<think>reasoning</think>answer` (types.join_reasoning), the one
shape the parsers, the cache and the format filter know. `config.extra_body` goes into every request body
(`extra_body=`), e.g. `{"chat_template_kwargs": {"enable_thinking": false}}` for Qwen3 on vLLM.

Several endpoints (`base_url: [url1, url2, ...]`, servers of the same model; the cache key does not include
the URL, so any of them may answer any request): each request goes to the healthy endpoint with the fewest
requests in flight (ties: the one sent fewest so far), which follows each server's real speed. An endpoint
that fails with a transport fault (connection, timeout, 5xx, 429) rests for `endpoint_cooldown_s` (429: its
Retry-After when longer) and the failed attempt is retried at once on another endpoint — still one attempt
in the engine's accounting and retry budget. When every endpoint rests, the one back soonest is used."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from synth.teacher.backends.base import Backend, Completion
from synth.teacher.config import TeacherConfig
from synth.teacher.errors import BackendUnavailable, TeacherAttemptError
from synth.teacher.types import ChatRequest, Usage, join_reasoning

log = logging.getLogger(__name__)


def _retry_after(exc) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, when the server sent one."""
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except (TypeError, ValueError):   # an HTTP date: fall back to our own backoff
        return None
    return None


FAILOVER_KINDS = ("connection", "timeout", "server_error", "rate_limit")


@dataclass
class Endpoint:
    """One server of a multi-endpoint teacher, with the counters the balancer uses."""
    url: str | None
    client: Any = None
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    down_until: float = 0.0


class OpenAIBackend(Backend):
    name = "openai"
    network = True

    def __init__(self, config: TeacherConfig):
        self.config = config
        self.client: Any = None
        self.endpoints: list[Endpoint] = [Endpoint(u) for u in config.endpoints()]

    async def start(self) -> None:
        import openai

        key = self.config.api_key()
        if key is None:
            if self.config.base_url is None:
                raise BackendUnavailable(
                    f"no API key: set the environment variable {self.config.api_key_env} (or point base_url at "
                    f"a local OpenAI-compatible server)")
            key = "EMPTY"  # local servers (vLLM, llama.cpp) accept any key
        for ep in self.endpoints:
            ep.client = openai.AsyncOpenAI(base_url=ep.url, api_key=key, max_retries=0,
                                           timeout=self.config.timeout_s)
        self.client = self.endpoints[0].client

    def _pick(self) -> Endpoint:
        eps = self.endpoints
        if len(eps) == 1:
            return eps[0]
        now = time.monotonic()
        healthy = [e for e in eps if e.down_until <= now]
        if not healthy:
            return min(eps, key=lambda e: e.down_until)
        return min(healthy, key=lambda e: (e.in_flight, e.sent))

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint: url, requests sent, failed attempts, whether it is resting now."""
        now = time.monotonic()
        return [{"url": e.url, "sent": e.sent, "failed": e.failed, "resting": e.down_until > now}
                for e in self.endpoints]

    def request_kwargs(self, request: ChatRequest) -> dict:
        p = request.params
        kw: dict = {"model": self.config.model, "messages": request.message_dicts(), "temperature": p.temperature,
                    "top_p": p.top_p, "max_tokens": p.max_tokens}
        if p.n != 1:
            kw["n"] = p.n
        if p.seed is not None:
            kw["seed"] = p.seed
        if p.stop:
            kw["stop"] = list(p.stop)
        if request.json_schema is not None:
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "answer", "schema": json.loads(request.json_schema)}}
        if self.config.extra_body:
            kw["extra_body"] = dict(self.config.extra_body)
        return kw

    async def complete(self, request: ChatRequest) -> Completion:

        assert self.client is not None, "backend not started"
        ep = self._pick()
        ep.in_flight += 1
        ep.sent += 1
        try:
            return await self._complete_on(ep, request)
        except TeacherAttemptError as err:
            ep.failed += 1
            if len(self.endpoints) > 1 and err.kind in FAILOVER_KINDS:
                rest = self.config.endpoint_cooldown_s
                if err.kind == "rate_limit" and err.retry_after is not None:
                    rest = max(rest, err.retry_after)
                ep.down_until = time.monotonic() + rest
                if any(e.down_until <= time.monotonic() for e in self.endpoints):
                    log.info("teacher endpoint %s failed (%s); resting it %.0f s", ep.url, err.kind, rest)
                    err.retry_after = 0.0          # another endpoint is up: retry there at once
            raise
        finally:
            ep.in_flight -= 1

    async def _complete_on(self, ep: Endpoint, request: ChatRequest) -> Completion:
        import openai

        try:
            resp = await ep.client.chat.completions.create(**self.request_kwargs(request))
        except openai.RateLimitError as exc:
            raise TeacherAttemptError("rate_limit", f"429: {_msg(exc)}", retry_after=_retry_after(exc)) from None
        except openai.APITimeoutError:
            raise TeacherAttemptError("timeout", f"no answer within timeout_s={self.config.timeout_s}") from None
        except openai.APIConnectionError as exc:
            raise TeacherAttemptError("connection", f"connection failed: {exc}") from None
        except openai.APIStatusError as exc:
            code = exc.status_code
            if code >= 500 or code in (408, 409):
                raise TeacherAttemptError("server_error", f"{code}: {_msg(exc)}",
                                          retry_after=_retry_after(exc)) from None
            raise TeacherAttemptError("other", f"{code}: {_msg(exc)}") from None   # 400/401/404: not retried
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
            raise TeacherAttemptError("malformed", f"unreadable response body: {exc}") from None
        try:
            choices = sorted(resp.choices, key=lambda c: c.index or 0)
            texts = [_choice_text(c.message) for c in choices]
            reasons = [c.finish_reason or "stop" for c in choices]
        except (AttributeError, TypeError) as exc:
            raise TeacherAttemptError("malformed", f"unexpected response shape: {exc}") from None
        u = resp.usage
        usage = Usage(int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0))
        return Completion(texts, reasons, usage)

    async def aclose(self) -> None:
        for ep in self.endpoints:
            if ep.client is not None:
                await ep.client.close()
                ep.client = None
        self.client = None


def _choice_text(message) -> str:
    """The answer text of one choice, with the server's separate reasoning field (if any) put back in front
    as a think block."""
    if message is None:
        return ""
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    if reasoning is None:   # fields the SDK does not declare arrive in model_extra
        extra = getattr(message, "model_extra", None) or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    return join_reasoning(reasoning if isinstance(reasoning, str) else None, message.content)


def _msg(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(exc, "message", exc))
