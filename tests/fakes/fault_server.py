"""A real OpenAI-compatible HTTP server with injected faults, for tests and benchmarks.

It speaks `POST /v1/chat/completions` and `GET /v1/models` over real HTTP on 127.0.0.1 (a plain ASGI app
under uvicorn, no framework, so it is fast enough to benchmark a client against), honours `n`, reports
usage, and answers each request according to its mode:

- `echo`: "echo: <last user message>" (a JSON object when a response_format asks for JSON), optionally
  through a `template`; the fast mode for benchmarks.
- `scripted`: `script` decides per request: a callable `(body, attempt) -> Fault | str`, a list consumed in
  arrival order, or a dict {marker: [outcome for attempt 1, attempt 2, ...]} matched against the last user
  message (the last outcome repeats; unmatched requests echo).
- `random`: each request draws a fault from `rates` ({"429": 0.1, "500": 0.05, ...}) with a seeded RNG.

Outcomes ("faults"): ok, 400 (bad request: not retryable), 429 (with Retry-After), 500, 503, delay (sleep past
the client's timeout, then answer), malformed (HTTP 200 with a broken JSON body), truncated (finish_reason
'length'), empty (""), or any other string = that answer text. Every request is logged (time, messages digest,
attempt number for that digest, outcome) in `server.log` and, when `log_path` is set, appended to a JSONL
file — the tests compare that log with the engine's accounting and cache. `server.bodies` keeps every request
body as received (what `extra_body` and `response_format` became on the wire).

Reasoning servers: a `Fault(text=answer, reasoning=thinking)` outcome answers like vLLM with
`--reasoning-parser`: the thinking in `message.<reasoning_field>` (default `reasoning_content`; `reasoning` is
what some other servers use) and only the answer in `content`.

Usage: by default whitespace-separated words; with `usage_tokenizer` (a local HF tokenizer folder) real token
counts — the prompt through the tokenizer's chat template, the completion (thinking included) encoded — so a
test can hold recot's token estimates against real numbers.

    with FaultServer("scripted", script={"q1": ["429", "ok"]}) as srv:
        cfg = TeacherConfig(backend="openai", model="fake", base_url=srv.base_url)

As a subprocess (by file path, so it needs nothing on sys.path but the installed recot packages):
`python tests/fakes/fault_server.py --mode echo --port-file p.txt --log log.jsonl`, or `subprocess_argv(...)`.

A test fake, not product code: it lives under tests/ and needs the dev extra (uvicorn). Tests import it as
`fakes.fault_server` (tests/ is on sys.path through tests/conftest.py).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.atomic import atomic_write_text
from synth.teacher.types import messages_digest

SCRIPT = Path(__file__).resolve()

FAULT_NAMES = ("ok", "400", "429", "500", "503", "delay", "malformed", "truncated", "empty")


@dataclass
class Fault:
    """What the server does with one request."""

    kind: str = "ok"                 # one of FAULT_NAMES, or "text" (answer `text`)
    text: str | None = None
    retry_after: float | None = 0.05  # for 429
    delay_s: float | None = None     # for delay (default: the server's delay_s)
    reasoning: str | None = None     # sent apart from the answer, in message.<reasoning_field>

    @classmethod
    def parse(cls, value: Fault | str | None) -> Fault:
        if isinstance(value, Fault):
            return value
        if value is None or value == "ok":
            return cls("ok")
        if value in FAULT_NAMES:
            return cls(value)
        return cls("text", text=value)


@dataclass
class FaultServer:
    mode: str = "echo"                                  # echo | scripted | random
    script: Any = None
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    latency_s: float = 0.0                              # added to every answer (a "slow-ish" server)
    delay_s: float = 5.0                                # how long a `delay` fault sleeps
    retry_after: float = 0.05                           # Retry-After sent with random-mode 429s
    template: str = "echo: {content}"
    log_path: str | os.PathLike | None = None
    reasoning_field: str = "reasoning_content"          # where a Fault's `reasoning` goes
    usage_tokenizer: str | None = None                  # count usage with this local HF tokenizer
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("echo", "scripted", "random"):
            raise ValueError(f"unknown fault server mode {self.mode!r}")
        self.log: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []           # every request body as received
        self._tok = None
        if self.usage_tokenizer:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.usage_tokenizer, local_files_only=True)
        self._attempts: Counter = Counter()
        self._arrivals = 0
        self._rng = random.Random(self.seed)
        self._log_f = open(self.log_path, "a", buffering=1) if self.log_path else None
        self._thread: threading.Thread | None = None
        self._server = None

    # ------------------------------------------------------------------ decisions
    def _decide(self, body: dict[str, Any], digest: str, attempt: int) -> Fault:
        if self.mode == "echo":
            return Fault("ok")
        if self.mode == "random":
            x, acc = self._rng.random(), 0.0
            for name, p in sorted(self.rates.items()):
                acc += p
                if x < acc:
                    return Fault(name, retry_after=self.retry_after)
            return Fault("ok")
        script = self.script
        if callable(script):
            return Fault.parse(script(body, attempt))
        if isinstance(script, list):
            i = self._arrivals - 1
            return Fault.parse(script[i] if i < len(script) else "ok")
        if isinstance(script, dict):
            last = _last_user(body)
            for marker, outcomes in script.items():
                if marker in last:
                    outs = outcomes if isinstance(outcomes, list) else [outcomes]
                    return Fault.parse(outs[min(attempt, len(outs)) - 1])
        return Fault("ok")

    # ------------------------------------------------------------------ ASGI app
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._handle(scope, receive, send)
        except asyncio.CancelledError:   # server stopping while a `delay` fault sleeps
            return

    async def _handle(self, scope, receive, send) -> None:
        path, method = scope["path"].rstrip("/"), scope["method"]
        if method == "GET" and path.endswith("/models"):
            return await _respond(send, 200, {"object": "list", "data": [
                {"id": "fault-model", "object": "model", "created": 0, "owned_by": "recot"}]})
        if method != "POST" or not path.endswith("/chat/completions"):
            return await _respond(send, 404, {"error": {"message": f"no route {method} {path}"}})
        raw = b""
        while True:
            msg = await receive()
            raw += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            body = json.loads(raw)
            messages = body["messages"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return await _respond(send, 400, {"error": {"message": "body must be JSON with 'messages'"}})
        digest = messages_digest(messages)
        self.bodies.append(body)
        self._arrivals += 1
        self._attempts[digest] += 1
        attempt = self._attempts[digest]
        fault = self._decide(body, digest, attempt)
        entry = {"i": self._arrivals, "t": time.time(), "messages_sha": digest, "attempt": attempt,
                 "n": int(body.get("n") or 1), "model": body.get("model"), "outcome": fault.kind}
        self.log.append(entry)
        if self._log_f:
            self._log_f.write(json.dumps(entry) + "\n")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        k = fault.kind
        if k == "429":
            headers = [(b"retry-after", str(fault.retry_after).encode())] if fault.retry_after is not None else []
            return await _respond(send, 429, {"error": {"message": "rate limited (injected)", "type": "rate_limit"}},
                                  headers)
        if k in ("400", "500", "503"):
            return await _respond(send, int(k), {"error": {"message": f"injected {k}"}})
        if k == "malformed":
            return await _respond(send, 200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind')
        if k == "delay":
            await asyncio.sleep(fault.delay_s if fault.delay_s is not None else self.delay_s)
        return await _respond(send, 200, self._completion(body, fault))

    def _completion(self, body: dict[str, Any], fault: Fault) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        content = _last_user(body)
        wants_json = (body.get("response_format") or {}).get("type") in ("json_schema", "json_object")
        choices, completion_tokens = [], 0
        for j in range(n):
            finish = "stop"
            if fault.kind == "text":
                text = fault.text or ""
            elif fault.kind == "empty":
                text = ""
            elif wants_json:
                text = json.dumps({"echo": content, "choice": j})
            else:
                text = self.template.format(content=content, j=j, n=n) + (f" #{j}" if n > 1 else "")
            if fault.kind == "truncated":
                text, finish = text[: max(1, len(text) // 2)], "length"
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if fault.reasoning is not None:
                message[self.reasoning_field] = fault.reasoning
            completion_tokens += self._count(text) + (self._count(fault.reasoning) if fault.reasoning else 0)
            choices.append({"index": j, "message": message, "finish_reason": finish, "logprobs": None})
        if self._tok is not None:
            msgs = [{"role": m["role"], "content": str(m.get("content", ""))} for m in body["messages"]]
            prompt_tokens = len(self._tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True,
                                                              return_dict=True)["input_ids"])
        else:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return {"id": f"chatcmpl-{self._arrivals}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fault-model"), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def _count(self, text: str) -> int:
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False))
        return len(text.split())

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def outcomes(self) -> Counter:
        return Counter(e["outcome"] for e in self.log)

    def start(self) -> FaultServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self, log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=30, backlog=2048, timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  (not main thread)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="fault-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fault server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._log_f:
            self._log_f.close()
            self._log_f = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _last_user(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else json.dumps(c)
    return ""


async def _respond(send, status: int, payload: Any, headers: list | None = None) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The request log a subprocess server wrote (a torn last line from a kill is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def subprocess_argv(*args: str) -> list[str]:
    """The command line that runs this server in its own process: `subprocess_argv("--mode", "echo", ...)`."""
    return [sys.executable, str(SCRIPT), *args]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="OpenAI-compatible fault-injecting test server (127.0.0.1 only)")
    ap.add_argument("--mode", default="echo", choices=["echo", "random"])
    ap.add_argument("--rates", default="{}", help='JSON, e.g. {"429": 0.1, "500": 0.05}')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--log", help="append the request log (JSONL) here")
    a = ap.parse_args(argv)
    srv = FaultServer(a.mode, rates=json.loads(a.rates), seed=a.seed, latency_s=a.latency, delay_s=a.delay,
                      log_path=a.log, port=a.port).start()
    if a.port_file:
        atomic_write_text(a.port_file, str(srv.port))
    print(f"fault server listening on {srv.base_url}", flush=True)
    try:
        while srv._thread is not None and srv._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
