"""Small starting models for CPU experiments, built from the embedded SmolLM2-135M so that they share its
tokenizer (and chat template) and get the workspace's SID tokens:

- `truncated_model`: the base model's first N decoder layers, with its embeddings, final norm and LM head
  (a shallower model that keeps what the base knows about words);
- `scratch_model`: a small Llama-style model initialised from scratch (seeded), same tokenizer + SID tokens.

Why: a full SmolLM2-135M SFT step of 8 short samples takes ~15-20 s on 2 CPU cores, so a recommender trained
on tens of thousands of history windows within an hour needs a model an order of magnitude cheaper per token.
Both write an ordinary Hugging Face folder (AutoModelForCausalLM loads it) plus recot's lineage file, so every
trainer accepts it as `model:`; the SID tokens are already there, so trainers add none.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from storage.errors import ConfigError, NotFound
from storage.workspace import Workspace

log = logging.getLogger(__name__)


def _sid_version(ws: Workspace, sid_version: int | None) -> int:
    from storage.sid_catalog import latest_sid_version

    v = sid_version if sid_version is not None else latest_sid_version(ws)
    if v is None:
        raise NotFound(f"no semantic IDs in {ws.root}; run `recot sids build` first")
    return int(v)


def _save(model: Any, tok: Any, out: str | Path, lineage: dict[str, Any]) -> Path:
    from trainers.common import LINEAGE_FILE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, default=str))
    return out


def n_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied input/output embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def truncated_model(ws: Workspace, out: str | Path, *, layers: int, base: str | None = None,
                    sid_version: int | None = None) -> dict[str, Any]:
    """Keep the first `layers` decoder layers of `base` (None = embedded SmolLM2-135M-Instruct), add the SID
    tokens (mean-initialised) and save to `out`. Returns a summary (layers, parameters, added tokens)."""
    from trainers.common import base_model_path, load_model_and_tokenizer

    base_path = base_model_path(base)
    v = _sid_version(ws, sid_version)
    model, tok, added = load_model_and_tokenizer(base_path, ws=ws, sid_version=v, add_tokens=True)
    stack = model.model.layers
    if not 1 <= layers <= len(stack):
        raise ConfigError(f"layers must be within 1..{len(stack)} for {base_path}, got {layers}")
    model.model.layers = torch.nn.ModuleList(list(stack)[:layers])
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:layers]
    info = {"kind": "init-truncated", "base_model": base_path, "layers": layers, "sid_version": v,
            "parameters": n_parameters(model), "added_tokens": added}
    _save(model, tok, out, info)
    log.info("truncated %s to %d layers (%d parameters) → %s", base_path, layers, info["parameters"], out)
    return info


def scratch_model(ws: Workspace, out: str | Path, *, layers: int = 2, hidden: int = 256, heads: int = 4,
                  kv_heads: int | None = None, intermediate: int | None = None, max_positions: int = 2048,
                  tokenizer_from: str | None = None, sid_version: int | None = None, seed: int = 0) -> dict[str, Any]:
    """A Llama-style model initialised from scratch (seeded) with `tokenizer_from`'s tokenizer (None = the
    embedded SmolLM2's) plus the SID tokens; tied input/output embeddings. Saved to `out`."""
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from trainers.common import base_model_path
    from trainers.tokenizer import check_sid_tokenization, sid_tokens

    if hidden % heads:
        raise ConfigError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    src = base_model_path(tokenizer_from)
    v = _sid_version(ws, sid_version)
    tok = AutoTokenizer.from_pretrained(src)
    from transformers import AddedToken

    vocab = tok.get_vocab()
    tok.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False)
                    for t in sid_tokens(ws, v) if t not in vocab])
    check_sid_tokenization(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads or heads, intermediate_size=intermediate or 4 * hidden,
                      max_position_embeddings=max_positions, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    try:  # keep the base's generation settings (its EOS is the chat's end-of-turn token)
        model.generation_config = GenerationConfig.from_pretrained(src)
    except OSError:
        model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    info = {"kind": "init-scratch", "tokenizer": src, "layers": layers, "hidden": hidden, "heads": heads,
            "kv_heads": kv_heads or heads, "intermediate": intermediate or 4 * hidden, "seed": seed,
            "sid_version": v, "parameters": n_parameters(model), "vocab": len(tok)}
    _save(model, tok, out, info)
    log.info("from-scratch model %d layers × %d (%d parameters) → %s", layers, hidden, info["parameters"], out)
    return info
