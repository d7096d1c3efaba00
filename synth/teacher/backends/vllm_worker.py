"""The vLLM side of the `vllm` teacher backend: one process that loads `vllm.LLM` once and answers batches of
chat requests, one JSON line in, one JSON line out.

Why a separate process: vLLM pins its own torch/transformers/numpy, which clash with the project's (on CPU
machines it lives in its own venv, `.venv-vllm`, made by scripts/setup_vllm.sh), and `vllm.LLM` spawns an
engine process of its own, which needs a `__main__` guard in whatever script creates it. This file imports only
the standard library and vllm, so it runs under any interpreter that has vLLM; vllm_backend.py starts it.

Protocol (stdout carries nothing else: everything vLLM prints goes to stderr):
  argv[1]  JSON {"llm": {...vllm.LLM kwargs...}}
  out      {"ready": true, "vllm": "<version>", "device": "cpu"|"cuda"}  once the model is loaded,
           or {"fatal": "<why>"} and exit 1
  in       {"id": k, "requests": [{"messages": [...], "params": {...}, "json_schema": {...} | null}, ...],
            "extra_body": {...} | null}
  out      {"id": k, "results": [{"texts": [...], "finish_reasons": [...], "prompt_tokens": n,
                                  "completion_tokens": m} | {"error": "<why>"}, ...]}
EOF on stdin shuts the engine down.
"""
from __future__ import annotations

import json
import os
import sys


def _protocol_stream():
    """The real stdout, kept for protocol lines; fd 1 (Python and C code, the engine process) goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def sampling_params(vllm, p: dict, json_schema: dict | None, extra: dict | None = None):
    """vllm.SamplingParams for one request; JSON requests get vLLM's structured outputs (the answer is decoded
    under the schema's grammar, so it parses unless max_tokens cuts it). `extra`: the teacher's extra_body
    sampling fields (top_k, min_p, repetition_penalty, ...), as a vLLM server would read them."""
    kw = dict(extra or {})
    kw.update(n=p.get("n", 1), temperature=p.get("temperature", 0.7), top_p=p.get("top_p", 1.0),
              max_tokens=p.get("max_tokens", 512), seed=p.get("seed"))
    if p.get("stop"):
        kw["stop"] = list(p["stop"])
    if json_schema is not None:
        try:
            from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.11
            kw["structured_outputs"] = StructuredOutputsParams(json=json_schema)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams  # vLLM 0.6 – 0.10
            kw["guided_decoding"] = GuidedDecodingParams(json=json_schema)
    return vllm.SamplingParams(**kw)


def compact_json_config() -> dict | None:
    """Structured outputs emit compact JSON (xgrammar, no free whitespace between tokens): a small model can
    otherwise loop on whitespace inside a JSON answer until max_tokens. An engine-wide setting in vLLM
    (>= 0.11), not a per-request one; None on older releases."""
    try:
        from vllm.config import StructuredOutputsConfig
    except ImportError:
        return None
    if "disable_any_whitespace" not in getattr(StructuredOutputsConfig, "__dataclass_fields__", {}):
        return None
    return {"backend": "xgrammar", "disable_any_whitespace": True}


def _result(out) -> dict:
    return {"texts": [o.text for o in out.outputs],
            "finish_reasons": [o.finish_reason or "stop" for o in out.outputs],
            "prompt_tokens": len(out.prompt_token_ids or []),
            "completion_tokens": sum(len(o.token_ids or []) for o in out.outputs)}


def generate(vllm, llm, requests: list[dict], extra_body: dict | None = None) -> list[dict]:
    """One `LLM.chat` call for the whole batch (vLLM schedules it; per-request sampling params mix freely).
    `extra_body` is the teacher's: its `chat_template_kwargs` (e.g. {"enable_thinking": false} for Qwen3) go to
    the chat template, the rest into every SamplingParams. If the batch fails as a whole (one prompt longer
    than max_model_len, say), each request is retried alone so only the bad one comes back as an error."""
    extra = dict(extra_body or {})
    template_kwargs = extra.pop("chat_template_kwargs", None)
    convs = [r["messages"] for r in requests]
    try:
        params = [sampling_params(vllm, r["params"], r.get("json_schema"), extra) for r in requests]
        outs = llm.chat(convs, sampling_params=params, use_tqdm=False, chat_template_kwargs=template_kwargs)
        return [_result(o) for o in outs]
    except Exception as exc:
        if len(requests) == 1:
            return [{"error": f"{type(exc).__name__}: {exc}"}]
    return [generate(vllm, llm, [r], extra_body)[0] for r in requests]


def main() -> int:
    proto = _protocol_stream()

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj, ensure_ascii=False) + "\n")
        proto.flush()

    spec = json.loads(sys.argv[1])
    try:
        import torch
        import vllm

        kwargs = dict(spec["llm"])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":               # what works on vLLM's CPU build (see docs/teacher.md)
            kwargs.setdefault("dtype", "bfloat16")
            kwargs.setdefault("enforce_eager", True)
        if "structured_outputs_config" not in kwargs and compact_json_config() is not None:
            kwargs["structured_outputs_config"] = compact_json_config()
        llm = vllm.LLM(**kwargs)
    except Exception as exc:
        send({"fatal": f"loading vllm.LLM({spec['llm'].get('model')!r}) failed: {type(exc).__name__}: {exc}"})
        return 1
    send({"ready": True, "vllm": vllm.__version__, "device": device})
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            send({"id": msg["id"], "results": generate(vllm, llm, msg["requests"], msg.get("extra_body"))})
        except Exception as exc:  # a worker bug fails this batch, not the process
            send({"id": msg["id"], "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
