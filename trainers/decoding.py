"""Think-then-answer decoding: every place where a model answers with SIDs (eval, bench, RFT's constrained
sampler) goes through here.

Two stages, as the reference systems decode (SIDReasoner's evaluate_Qwen3_think.py, OneRec-Think's
test_model_hitrate.py, OneReason's recommendation config):

1. **Reasoning** (think mode only): free generation after `<think>\\n`, greedy or sampled, until the model writes
   `</think>` or `think_budget` new tokens are spent (then the block is closed for it). Nothing constrains this
   stage: a SID quoted while reasoning is text, never the answer.
2. **Answer**: the prompt + `<think>\\n{reasoning}\\n</think>\\n\\n` (no-think mode: the empty block
   `<think>\\n\\n</think>\\n\\n`, the Qwen3 convention synth stores) is extended by a search constrained to the SID
   prefix trie: the first token is `<|sid_begin|>`, then only catalog continuations, then EOS. Beam search
   returns K distinct ranked catalog SIDs (distinct token paths through the trie are distinct items); sampling
   returns one SID per reasoning (RFT).

Both stages batch several prompts per `generate` call. `exclude` removes given SIDs (a user's already-seen
items, when the protocol says so) from the trie of that prompt only, so beams are never spent on them.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

from storage.sid import SID_BEGIN, SID_END, SidTrie

THINK_OPEN = "<think>\n"
THINK_CLOSE = "</think>"

IdNode = dict[int, Any]       # token id → child node; a complete SID ends in {SID_END id: {}}


def answer_prefill(reasoning: str | None) -> str:
    """What the assistant turn holds before the answer SID: the empty think block for no-think (None), else the
    reasoning inside a closed think block."""
    if reasoning is None:
        return "<think>\n\n</think>\n\n"
    return f"{THINK_OPEN}{reasoning.strip()}\n{THINK_CLOSE}\n\n"


class SidIdTrie:
    """The SID trie over one tokenizer's ids, plus per-prompt copies without some SIDs."""

    def __init__(self, trie: SidTrie, tokenizer):
        vocab = tokenizer.get_vocab()
        missing = [t for t in (SID_BEGIN, SID_END) if t not in vocab]
        if missing:
            raise KeyError(f"{missing} not in the tokenizer; extend it with the SID version's tokens first "
                           "(trainers.tokenizer)")
        self.begin, self.end = vocab[SID_BEGIN], vocab[SID_END]
        self.root: IdNode = trie.to_ids(vocab).root
        self.paths: dict[str, tuple[int, ...]] = {}
        stack: list[tuple[Any, tuple[str, ...]]] = [(trie.root, ())]
        while stack:                                  # every complete SID's token-id path
            node, toks = stack.pop()
            if node.terminal:
                self.paths["".join(toks)] = tuple(vocab[t] for t in toks)
            stack += [(c, toks + (t,)) for t, c in node.children.items()]
        self.sid_len = max((len(p) for p in self.paths.values()), default=0)

    def without(self, sids: Collection[str]) -> IdNode:
        """A copy of the root without `sids` (copy-on-write along their paths; emptied branches removed)."""
        root = self.root
        own: set[int] = set()                         # ids of the nodes copied by this call (copy each once)
        for sid in sids:
            path = self.paths.get(sid)
            if path is None:
                continue
            if root is self.root:
                root = dict(root)
                own.add(id(root))
            chain = [root]                            # nodes along the path, each a private copy
            for tok in path[:-1]:
                child = chain[-1].get(tok)
                if child is None:
                    break
                if id(child) not in own:
                    child = dict(child)
                    own.add(id(child))
                    chain[-1][tok] = child
                chain.append(child)
            else:
                chain[-1].pop(path[-1], None)         # drop SID_END: this SID can no longer complete
                for depth in range(len(chain) - 1, 0, -1):
                    if chain[depth]:
                        break
                    del chain[depth - 1][path[depth - 1]]
        return root


def _allowed(root: IdNode, generated: Sequence[int], eos: list[int]) -> list[int]:
    node = root
    for t in generated:
        nxt = node.get(int(t))
        if nxt is None:                              # after EOS (finished beam) or off-trie: only EOS
            return eos
        node = nxt
    return list(node) or eos                         # complete SID → EOS


class SidConstraintProcessor(LogitsProcessor):
    """Answer-stage constraint as a logits mask: the tokens after the prompt must spell one SID of the row's
    trie, then EOS. `roots[i]` is the trie of prompt i; rows are prompt-major (`rows_per_prompt` beams or
    samples each), as `generate` lays them out."""

    def __init__(self, roots: Sequence[IdNode], *, prompt_len: int, rows_per_prompt: int, eos_token_ids: Sequence[int]):
        self.roots, self.prompt_len, self.per = list(roots), prompt_len, rows_per_prompt
        self.eos = list(eos_token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.zeros_like(scores, dtype=torch.bool)
        size = scores.shape[-1]
        for row in range(input_ids.shape[0]):
            allowed = _allowed(self.roots[row // self.per], input_ids[row, self.prompt_len:].tolist(), self.eos)
            mask[row, [a for a in allowed if a < size]] = True
        return scores.masked_fill(~mask, float("-inf"))


@dataclass
class Decoded:
    """One prompt's answer: the reasoning (None in no-think mode), whether the model closed `</think>` itself
    (False = closed at the budget), and the ranked distinct catalog SIDs."""

    reasoning: str | None
    closed: bool
    sids: list[str]

    @property
    def text(self) -> str:
        """The completion as synth stores it: think block, then the first SID."""
        return answer_prefill(self.reasoning) + (self.sids[0] if self.sids else "")


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    if isinstance(eos, (list, tuple)):
        return [int(e) for e in eos]
    return [int(eos if eos is not None else tokenizer.eos_token_id)]


def _prepare(tokenizer) -> None:
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _encode(tokenizer, texts: list[str], device):
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


def generate_reasoning(model, tokenizer, texts: list[str], *, think_budget: int, do_sample: bool = False,
                       temperature: float = 1.0, top_p: float = 1.0, n: int = 1,
                       batch_size: int = 8) -> list[tuple[str, bool]]:
    """Stage 1: for each text (a rendered prompt ending in `<think>\\n`), `n` reasonings as (text before
    `</think>`, closed by the model?) — prompt-major. Generation stops at `</think>`, EOS or the budget."""
    _prepare(tokenizer)
    eos = _eos_ids(model, tokenizer)
    stop = set(eos) | {tokenizer.pad_token_id}
    out: list[tuple[str, bool]] = []
    for i in range(0, len(texts), batch_size):
        enc = _encode(tokenizer, texts[i:i + batch_size], model.device)
        plen = enc["input_ids"].shape[1]
        kw: dict[str, Any] = dict(do_sample=True, temperature=temperature, top_p=top_p) if do_sample else \
            dict(do_sample=False)
        gen = model.generate(**enc, max_new_tokens=think_budget, num_return_sequences=n,
                             stop_strings=[THINK_CLOSE], tokenizer=tokenizer, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=eos, **kw)
        for row in gen[:, plen:].tolist():
            cut = next((j for j, t in enumerate(row) if t in stop), len(row))
            text = tokenizer.decode(row[:cut], skip_special_tokens=False)
            closed = THINK_CLOSE in text
            out.append((text.split(THINK_CLOSE, 1)[0].strip(), closed))
    return out


def _answer(model, tokenizer, index: SidIdTrie, texts: list[str], excludes: Sequence[Collection[str]], *,
            num_beams: int, do_sample: bool, temperature: float, batch_size: int) -> list[list[str]]:
    """Stage 2 over rendered texts that end right before the answer: ranked SIDs per text."""
    from transformers import LogitsProcessorList

    from storage.sid import extract_sids

    _prepare(tokenizer)
    eos = _eos_ids(model, tokenizer)
    per = 1 if do_sample else num_beams
    out: list[list[str]] = []
    for i in range(0, len(texts), batch_size):
        enc = _encode(tokenizer, texts[i:i + batch_size], model.device)
        plen = enc["input_ids"].shape[1]
        roots = [index.without(ex) if ex else index.root for ex in excludes[i:i + batch_size]]
        proc = SidConstraintProcessor(roots, prompt_len=plen, rows_per_prompt=per, eos_token_ids=eos)
        kw: dict[str, Any] = dict(do_sample=True, temperature=temperature) if do_sample else \
            dict(do_sample=False, num_beams=num_beams, num_return_sequences=num_beams)
        if per > 1:   # rank by the SID's total log-probability (collision SIDs are one token longer)
            kw.update(early_stopping=True, length_penalty=0.0)
        gen = model.generate(**enc, max_new_tokens=index.sid_len + 1, logits_processor=LogitsProcessorList([proc]),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, **kw)
        decoded = tokenizer.batch_decode(gen[:, plen:], skip_special_tokens=False)
        for j in range(len(roots)):
            ranked: list[str] = []
            for text in decoded[j * per:(j + 1) * per]:
                for s in extract_sids(text)[:1]:
                    if s in index.paths and s not in ranked and s not in excludes[i + j]:
                        ranked.append(s)
            out.append(ranked)
    return out


def _render(tokenizer, prompt: list[dict]) -> str:
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def decode(model, tokenizer, trie: SidTrie | SidIdTrie, prompts: list[list[dict]], *, think: bool, num_beams: int,
           think_budget: int = 1024, batch_size: int = 8, exclude: Sequence[Collection[str]] | None = None,
           think_sample: bool = False, temperature: float = 1.0, seed: int = 0) -> list[Decoded]:
    """Two-stage decoding of chat prompts: (think mode) a reasoning of at most `think_budget` tokens, greedy or
    sampled (`think_sample`), then a trie-constrained beam search of width `num_beams` for the answer.
    Returns one `Decoded` per prompt with up to `num_beams` distinct ranked catalog SIDs (none of `exclude[i]`)."""
    model.eval()
    torch.manual_seed(seed)
    index = trie if isinstance(trie, SidIdTrie) else SidIdTrie(trie, tokenizer)
    excludes: list[Collection[str]] = list(exclude) if exclude is not None else [()] * len(prompts)
    if len(excludes) != len(prompts):
        raise ValueError(f"exclude has {len(excludes)} entries for {len(prompts)} prompts")
    bases = [_render(tokenizer, p) for p in prompts]
    if think:
        reasonings = generate_reasoning(model, tokenizer, [b + THINK_OPEN for b in bases], think_budget=think_budget,
                                        do_sample=think_sample, temperature=temperature, batch_size=batch_size)
        heads: list[tuple[str | None, bool]] = [(r, c) for r, c in reasonings]
    else:
        heads = [(None, True)] * len(prompts)
    texts = [b + answer_prefill(r) for b, (r, _) in zip(bases, heads)]
    ranked = _answer(model, tokenizer, index, texts, excludes, num_beams=num_beams, do_sample=False,
                     temperature=1.0, batch_size=batch_size)
    return [Decoded(r, c, s) for (r, c), s in zip(heads, ranked)]


def generate_ranked(model, tokenizer, trie: SidTrie | SidIdTrie, prompts: list[list[dict]], *, think: bool,
                    num_beams: int, think_budget: int = 1024, batch_size: int = 8,
                    exclude: Sequence[Collection[str]] | None = None, max_new_tokens: int | None = None,
                    ) -> list[list[str]]:
    """For each chat prompt, a ranked list of up to `num_beams` distinct catalog SIDs (two-stage `decode`, greedy
    reasoning). `max_new_tokens` is the former name of `think_budget`."""
    budget = max_new_tokens if max_new_tokens is not None else think_budget
    return [d.sids for d in decode(model, tokenizer, trie, prompts, think=think, num_beams=num_beams,
                                   think_budget=budget, batch_size=batch_size, exclude=exclude)]


@torch.no_grad()
def sample_constrained(model, tokenizer, trie: SidTrie | SidIdTrie, prompts: list[list[dict]], thinks: list[bool], *,
                       n: int, temperature: float = 1.0, think_budget: int = 1024, seed: int = 0,
                       batch_size: int = 8) -> list[list[str]]:
    """`n` sampled completions per prompt (RFT's `constrained` sampler), each `<think>…</think>` then exactly one
    catalog SID: the reasoning is sampled freely (think prompts; no-think ones get the empty block), the answer
    is sampled inside the trie — rejection sampling then chooses among valid items."""
    model.eval()
    torch.manual_seed(seed)
    index = trie if isinstance(trie, SidIdTrie) else SidIdTrie(trie, tokenizer)
    bases = [_render(tokenizer, p) for p in prompts]
    heads: list[str | None] = []
    think_idx = [i for i, t in enumerate(thinks) if t]
    reasonings = generate_reasoning(model, tokenizer, [bases[i] + THINK_OPEN for i in think_idx],
                                    think_budget=think_budget, do_sample=True, temperature=temperature, n=n,
                                    batch_size=max(1, batch_size // n)) if think_idx else []
    by_prompt = {i: reasonings[k * n:(k + 1) * n] for k, i in enumerate(think_idx)}
    texts: list[str] = []
    for i, base in enumerate(bases):
        for j in range(n):
            r = by_prompt[i][j][0] if i in by_prompt else None
            heads.append(r)
            texts.append(base + answer_prefill(r))
    sids = _answer(model, tokenizer, index, texts, [()] * len(texts), num_beams=1, do_sample=True,
                   temperature=temperature, batch_size=batch_size)
    flat = [answer_prefill(r) + (s[0] if s else "") for r, s in zip(heads, sids)]
    return [flat[i * n:(i + 1) * n] for i in range(len(prompts))]
