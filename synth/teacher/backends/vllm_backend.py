"""Offline vLLM on a GPU: `vllm.LLM(model).chat(conversations, sampling_params)`.

Everything queued while the GPU is busy goes into ONE `chat` call (vLLM schedules the batch itself and
takes a list of per-request SamplingParams, so different temperatures, n and seeds mix freely), run in a
worker thread so the engine's event loop keeps writing the cache and the progress bar. JSON requests use
vLLM's structured outputs (`StructuredOutputsParams(json=...)` on vLLM >= 0.11, `GuidedDecodingParams` on
older releases). vllm is imported only when this backend starts, with a clear error when it is missing."""
from __future__ import annotations

import json
import logging
import threading

from synth.teacher.backends.base import Completion
from synth.teacher.backends.batching import BatchingBackend
from synth.teacher.config import LOCAL_MODEL_NAME, TeacherConfig
from synth.teacher.errors import BackendUnavailable
from synth.teacher.types import ChatRequest, Usage

log = logging.getLogger(__name__)


def import_vllm():
    """The vllm module, or BackendUnavailable saying how to get it."""
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailable(f"the vllm backend needs vLLM on a CUDA machine: pip install 'recot[vllm]' "
                                 f"(import failed: {exc}); or serve the model with `vllm serve` and use the "
                                 f"openai backend with base_url") from None
    return vllm


def sampling_params(vllm, request: ChatRequest):
    """vllm.SamplingParams for one request (structured JSON output when the request asks for it)."""
    p = request.params
    kw = dict(n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens, seed=p.seed)
    if p.stop:
        kw["stop"] = list(p.stop)
    if request.json_schema is not None:
        schema = json.loads(request.json_schema)
        try:
            from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.11
            kw["structured_outputs"] = StructuredOutputsParams(json=schema)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams  # vLLM 0.6 – 0.10
            kw["guided_decoding"] = GuidedDecodingParams(json=schema)
    return vllm.SamplingParams(**kw)


class VLLMBackend(BatchingBackend):
    name = "vllm"

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.max_batch = 4096
        self._llm = None
        self._vllm = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        self._vllm = import_vllm()     # fail fast, before any request is queued
        await super().start()

    def _load(self):
        with self._lock:
            if self._llm is None:
                kwargs = dict(self.config.vllm_kwargs)
                model = self.config.model
                if model == LOCAL_MODEL_NAME:       # the embedded model also runs under vLLM (GPU smoke tests)
                    from synth.teacher.local_model import ensure_local_model
                    model = self.config.local_model_path or str(ensure_local_model())
                kwargs.setdefault("model", model)
                log.info("loading vLLM model %s", kwargs["model"])
                self._llm = self._vllm.LLM(**kwargs)
        return self._llm

    def generate_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        llm = self._load()
        conversations = [r.message_dicts() for r in requests]
        params = [sampling_params(self._vllm, r) for r in requests]
        outputs = llm.chat(conversations, sampling_params=params, use_tqdm=False)
        results = []
        for out in outputs:
            texts = [o.text for o in out.outputs]
            reasons = [o.finish_reason or "stop" for o in out.outputs]
            completion_tokens = sum(len(o.token_ids or []) for o in out.outputs)
            results.append(Completion(texts, reasons, Usage(len(out.prompt_token_ids or []), completion_tokens)))
        return results
