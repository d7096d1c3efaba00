"""Generation constrained to valid SIDs: a transformers `LogitsProcessor` driven by the SID prefix trie.

Per sequence (beam) it looks at the tokens generated so far:
- inside a SID (after the last `<|sid_begin|>`): only the trie's continuations are allowed, and once the
  SID is complete only EOS — so a finished answer always holds exactly one catalog SID;
- before any SID: in *no-think* mode `<|sid_begin|>` is forced at once; in *think* mode free text is allowed
  (but no stray code tokens and no EOS: every answer must name an item), and `<|sid_begin|>` is forced when
  only enough budget for one SID is left. The first SID opened is the answer (a thinking model that quotes
  a history SID while reasoning commits to it — the price of a one-pass constraint).

This is what `prefix_allowed_tokens_fn` does, as a tensor mask instead of Python lists of ~50k allowed ids
per beam and step (the free-text mask is built once).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from storage.sid import CODE_TOKEN_RE, SID_BEGIN, SID_END, IdTrie, SidTrie


class SidConstraintProcessor(LogitsProcessor):
    def __init__(self, trie: SidTrie, tokenizer, *, prompt_len: int, think: bool, max_new_tokens: int,
                 eos_token_ids: Sequence[int]):
        vocab = tokenizer.get_vocab()
        self.id_trie: IdTrie = trie.to_ids(vocab)
        self.begin, self.end = vocab[SID_BEGIN], vocab[SID_END]
        self.code_ids = [i for t, i in vocab.items() if CODE_TOKEN_RE.fullmatch(t)]
        self.prompt_len, self.think, self.max_new = prompt_len, think, max_new_tokens
        self.eos = list(eos_token_ids)
        depth, stack = 0, [(self.id_trie.root, 0)]
        while stack:  # the longest SID in tokens, to know when the budget forces the answer
            node, d = stack.pop()
            depth = max(depth, d)
            stack += [(c, d + 1) for c in node.values()]
        self.sid_len = depth
        self._free_mask: torch.Tensor | None = None

    def _free(self, size: int, device) -> torch.Tensor:
        if self._free_mask is None or self._free_mask.shape[0] != size:
            m = torch.ones(size, dtype=torch.bool)
            m[[i for i in self.code_ids + [self.end] + self.eos if i < size]] = False
            self._free_mask = m
        return self._free_mask.to(device)

    def allowed(self, generated: list[int]) -> list[int] | None:
        """Allowed next ids after `generated` (None = free text)."""
        if self.begin in generated:
            start = len(generated) - 1 - generated[::-1].index(self.begin)
            nxt = self.id_trie.allowed_ids(generated[start:])
            return nxt if nxt else self.eos           # complete SID → stop
        if not self.think or len(generated) >= self.max_new - self.sid_len:
            return [self.begin]
        return None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for row in range(input_ids.shape[0]):
            allowed = self.allowed(input_ids[row, self.prompt_len:].tolist())
            if allowed is None:
                mask[row] = self._free(scores.shape[-1], scores.device)
            else:
                mask[row, [a for a in allowed if a < scores.shape[-1]]] = True
        return scores.masked_fill(~mask, float("-inf"))


@torch.no_grad()
def generate_ranked(model, tokenizer, trie: SidTrie, prompts: list[list[dict]], *, think: bool, num_beams: int,
                    max_new_tokens: int = 16, batch_size: int = 4) -> list[list[str]]:
    """For each chat prompt, a ranked list of up to `num_beams` distinct catalog SIDs (beam order)."""
    from transformers import LogitsProcessorList

    from storage.sid import extract_sids
    from trainers.prompts import NO_THINK_PREFILL

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = model.generation_config.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [eos if eos is not None else tokenizer.eos_token_id]
    out: list[list[str]] = []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        # /no_think: prefill the empty think block synth stores before a no-think answer (Qwen3 style)
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 + ("" if think else NO_THINK_PREFILL) for p in prompts[i:i + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        plen = enc["input_ids"].shape[1]
        proc = SidConstraintProcessor(trie, tokenizer, prompt_len=plen, think=think,
                                      max_new_tokens=max_new_tokens, eos_token_ids=eos_ids)
        # no-think: the answer is the SID, so the budget is exactly one SID (+ EOS)
        budget = max_new_tokens if think else proc.sid_len + 1
        gen = model.generate(**enc, max_new_tokens=budget, num_beams=num_beams, num_return_sequences=num_beams,
                             do_sample=False, logits_processor=LogitsProcessorList([proc]),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=eos_ids)
        decoded = tokenizer.batch_decode(gen[:, plen:], skip_special_tokens=False)
        for j in range(len(texts)):
            ranked: list[str] = []
            for text in decoded[j * num_beams:(j + 1) * num_beams]:
                for s in extract_sids(text)[:1]:
                    if s not in ranked:
                        ranked.append(s)
            out.append(ranked)
    return out


@torch.no_grad()
def sample_constrained(model, tokenizer, trie: SidTrie, prompts: list[list[dict]], thinks: list[bool], *, n: int,
                       temperature: float = 1.0, max_new_tokens: int = 48, seed: int = 0) -> list[list[str]]:
    """`n` sampled completions per prompt, each ending in exactly one catalog SID (RFT's `constrained`
    sampler: rejection sampling then chooses among valid items instead of discarding malformed answers)."""
    from transformers import LogitsProcessorList

    from trainers.prompts import NO_THINK_PREFILL

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = model.generation_config.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [eos if eos is not None else tokenizer.eos_token_id]
    torch.manual_seed(seed)
    model.eval()
    out = []
    for prompt, think in zip(prompts, thinks):
        prefill = "" if think else NO_THINK_PREFILL
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) + prefill
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        plen = enc["input_ids"].shape[1]
        proc = SidConstraintProcessor(trie, tokenizer, prompt_len=plen, think=think,
                                      max_new_tokens=max_new_tokens, eos_token_ids=eos_ids)
        gen = model.generate(**enc, do_sample=True, temperature=temperature, num_return_sequences=n,
                             max_new_tokens=max_new_tokens if think else proc.sid_len + 1,
                             logits_processor=LogitsProcessorList([proc]), pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=eos_ids)
        out.append([prefill + t for t in tokenizer.batch_decode(gen[:, plen:], skip_special_tokens=True)])
    return out
