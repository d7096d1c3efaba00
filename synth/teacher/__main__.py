"""Run a JSONL file of chat requests through the teacher engine (resumable: re-run the same command after
an interruption and only the unfinished requests are sent).

    python -m synth.teacher --workspace W --teacher teacher.yaml --requests requests.jsonl [--out out.jsonl]

Each input line: {"messages": [{"role": ..., "content": ...}, ...], "params": {"temperature": ..., "n": ...,
"seed": ..., "max_tokens": ...}, "json_schema": {...} | null, "template_version": "", "meta": {...}}.
Prints the run's accounting as JSON on the last line of stdout."""
from __future__ import annotations

import argparse
import json
import os
import sys

from storage.atomic import atomic_open
from storage.errors import InputError, RecotError
from synth.teacher.types import ChatRequest, SamplingParams


def read_requests(path: str | os.PathLike) -> list[ChatRequest]:
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not JSON: {exc}", file=str(path), line=lineno) from None
            if not isinstance(d.get("messages"), list) or not d["messages"]:
                raise InputError("needs a non-empty list of messages", file=str(path), line=lineno, field="messages")
            params = dict(d.get("params") or {})
            if params.get("stop"):
                params["stop"] = tuple(params["stop"])
            try:
                sp = SamplingParams(**params)
            except TypeError as exc:
                raise InputError(str(exc), file=str(path), line=lineno, field="params") from None
            out.append(ChatRequest.from_messages(d["messages"], sp, json_schema=d.get("json_schema"),
                                                 template_version=d.get("template_version", ""), meta=d.get("meta")))
    return out


def main(argv: list[str] | None = None) -> int:
    from storage.workspace import Workspace
    from synth.teacher.engine import make_engine

    ap = argparse.ArgumentParser(prog="python -m synth.teacher", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", "-w", required=True)
    ap.add_argument("--teacher", default=None, help="YAML path or 'backend:model' (default: the embedded model)")
    ap.add_argument("--requests", required=True, help="JSONL of requests")
    ap.add_argument("--out", help="write responses (JSONL, request order) here")
    ap.add_argument("--run-id", default=None)
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args(argv)
    try:
        ws = Workspace.open(a.workspace)
        reqs = read_requests(a.requests)
        with make_engine(a.teacher, ws, run_id=a.run_id) as engine:
            responses = engine.run(reqs, progress=a.progress)
            if a.out:
                with atomic_open(a.out, "w") as f:
                    for r in responses:
                        f.write(json.dumps({"key": r.key, "ok": r.ok, "choices": r.choices, "error": r.error,
                                            "error_kind": r.error_kind, "cached": r.cached,
                                            "meta": r.request.meta}) + "\n")
            print(json.dumps(engine.stats))
    except RecotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
