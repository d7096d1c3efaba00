"""Teach a tokenizer the SID language: add one token per SID code of a SID version (plus begin/end), resize
the model's embeddings and initialise the new rows with the mean of the existing ones.

Why plain added tokens and not "special" ones: TRL decodes completions with `skip_special_tokens=True`
before scoring them; special SID tokens would vanish from the text the rewards see. Added tokens are still
matched atomically, so `<s_a_12>` is always exactly one id (which constrained decoding relies on).

Why mean-init: a random row gives the new tokens huge or tiny logits at step 0; the mean embedding makes
them start as "an average token" (Hewitt 2021, used by MiniOneRec/OpenOneRec for SID tokens).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from storage.sid import SID_BEGIN, SID_END, vocabulary_for
from storage.workspace import Workspace

log = logging.getLogger(__name__)


def sid_tokens(ws: Workspace, sid_version: int | None = None) -> list[str]:
    """The SID tokens of a version (latest when None): begin/end + every code token its SIDs use."""
    from storage.sid_catalog import SidCatalog

    return vocabulary_for(SidCatalog.load(ws, sid_version).all_sids())


@torch.no_grad()
def add_sid_tokens(model, tokenizer, tokens: Iterable[str]) -> int:
    """Add the tokens that are missing, resize embeddings, mean-init new input (and untied output) rows.
    Returns how many tokens were added (0 when the tokenizer already knows them all)."""
    from transformers import AddedToken

    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    if not new:
        return 0
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False) for t in new])
    emb_in = model.get_input_embeddings()
    old_rows = emb_in.weight.shape[0]
    old_out = model.get_output_embeddings()
    tied = old_out is not None and old_out.weight.data_ptr() == emb_in.weight.data_ptr()
    out_mean = None if old_out is None or tied else old_out.weight[:old_rows].float().mean(0)
    in_mean = emb_in.weight[:old_rows].float().mean(0)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    n_rows = model.get_input_embeddings().weight.shape[0]
    model.get_input_embeddings().weight[old_rows:n_rows] = in_mean.to(model.get_input_embeddings().weight.dtype)
    out = model.get_output_embeddings()
    if out_mean is not None and out is not None:
        out.weight[old_rows:n_rows] = out_mean.to(out.weight.dtype)
    log.info("added %d SID tokens (vocab %d → %d), mean-initialised", len(new), old_rows, n_rows)
    return len(new)


def check_sid_tokenization(tokenizer) -> None:
    """Fail early when the tokenizer would split a SID token (e.g. a normalizer rewrote it)."""
    ids = tokenizer(SID_BEGIN + SID_END, add_special_tokens=False)["input_ids"]
    if ids != [tokenizer.convert_tokens_to_ids(SID_BEGIN), tokenizer.convert_tokens_to_ids(SID_END)]:
        raise RuntimeError(f"the tokenizer splits SID tokens: {SID_BEGIN}{SID_END} → {ids}")


def extend_and_save(base_model: str | Path, ws: Workspace, out: str | Path, sid_version: int | None = None,
                    *, dtype: torch.dtype | None = None) -> dict:
    """Load `base_model`, add the SID tokens of `sid_version`, save model + tokenizer into `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_model))
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype or torch.float32)
    toks = sid_tokens(ws, sid_version)
    added = add_sid_tokens(model, tok, toks)
    check_sid_tokenization(tok)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"added_tokens": added, "sid_tokens": len(toks), "vocab_size": len(tok)}
