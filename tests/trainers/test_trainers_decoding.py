"""Two-stage (think, then answer) decoding with a scripted causal LM: a real tokenizer (the embedded SmolLM2's,
extended with SID tokens) and a tiny `generate`-capable model whose next-token scores follow a script — in the
reasoning it writes a fixed text (quoting a history SID), in the answer it prefers SIDs in a fixed order."""
from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from storage.sid import SidTrie, format_sid, vocabulary_for
from trainers.decoding import SidIdTrie, decode, generate_ranked, sample_constrained

# 8 catalog items: codes (a, b, c) with a, b, c in {0, 1}
SIDS = [format_sid((a, b, c)) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
CITED = format_sid((0, 0, 0))            # the history SID the reasoning quotes
PROMPT = [{"role": "user", "content": f"History: {CITED} Movie 0. What next? /think"}]


class ScriptConfig(PretrainedConfig):
    model_type = "recot_script"


class ScriptedLM(PreTrainedModel, GenerationMixin):
    """Scores depend only on the text so far (no cache): inside an open `<think>` the next token of `script`;
    after `</think>` code tokens scored by `pref` (higher first), EOS likewise."""

    config_class = ScriptConfig

    def __init__(self, config, tok, script: str, pref: dict[str, float]):
        super().__init__(config)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.vocab = tok, len(tok)
        self.script = tok(script, add_special_tokens=False)["input_ids"]
        self.answer_scores = torch.zeros(self.vocab)
        for t, v in pref.items():
            self.answer_scores[tok.convert_tokens_to_ids(t)] = v
        self.generation_config = GenerationConfig(use_cache=False, eos_token_id=tok.eos_token_id,
                                                  pad_token_id=tok.eos_token_id)

    def _next(self, row: list[int]) -> torch.Tensor:
        text = self.tok.decode(row, skip_special_tokens=False)
        if text.rfind("<think>") > text.rfind("</think>"):         # reasoning: follow the script
            m = max(m for m in range(min(len(row), len(self.script)) + 1) if row[len(row) - m:] == self.script[:m])
            out = torch.full((self.vocab,), -10.0)
            out[self.script[m] if m < len(self.script) else self.tok.eos_token_id] = 10.0
            return out
        return self.answer_scores.clone()

    def forward(self, input_ids=None, attention_mask=None, **kw):
        # generation reads only the last position's scores: compute those, repeat them along the sequence
        last = torch.stack([self._next(row) for row in input_ids.tolist()]).unsqueeze(1)
        return CausalLMOutputWithPast(logits=last.expand(-1, input_ids.shape[1], -1))


@pytest.fixture(scope="module")
def tok(local_model_path):
    from transformers import AddedToken, AutoTokenizer

    t = AutoTokenizer.from_pretrained(local_model_path)
    t.add_tokens([AddedToken(x, special=False, normalized=False) for x in vocabulary_for(SIDS)])
    return t


def scripted(tok, script: str, order: list[str]) -> ScriptedLM:
    """Answer preferences: SIDs in `order` get descending scores on their last code, levels a/b favour them."""
    pref: dict[str, float] = {"<|sid_begin|>": 5.0, "<|sid_end|>": 5.0, tok.eos_token: 5.0}
    for rank, sid in enumerate(order):
        for lv, c in zip("abc", sid.split("><")[1:4]):
            key = f"<s_{lv}_{c.split('_')[-1].rstrip('>')}>"
            pref[key] = max(pref.get(key, 0.0), 4.0 - rank * 0.5)
    return ScriptedLM(ScriptConfig(), tok, script, pref)


def test_sid_quoted_in_reasoning_is_not_the_answer(tok):
    target = format_sid((1, 1, 1))
    model = scripted(tok, f" The user watched {CITED} twice, so a sequel fits.\n</think>", [target])
    (d,) = decode(model, tok, SidTrie(SIDS), [PROMPT], think=True, num_beams=4, think_budget=64)
    assert d.closed and CITED in d.reasoning and "sequel" in d.reasoning     # reasoning kept, SID and all
    assert len(d.sids) == 4 == len(set(d.sids)) and set(d.sids) <= set(SIDS)
    assert d.sids[0] == target                         # the answer stage decides, not the quote
    assert d.text.startswith("<think>\n") and d.text.endswith(f"</think>\n\n{target}")


def test_think_budget_closes_the_block_and_still_answers(tok):
    model = scripted(tok, " la" * 200, [format_sid((0, 1, 0))])
    (d,) = decode(model, tok, SidTrie(SIDS), [PROMPT], think=True, num_beams=3, think_budget=6)
    assert not d.closed and d.reasoning.count("la") == 6         # cut at the budget …
    assert d.sids[0] == format_sid((0, 1, 0)) and len(d.sids) == 3  # … closed for the model, then answered


def test_no_think_answers_directly_batched_and_excludes_seen(tok):
    order = [format_sid((1, 0, 1)), format_sid((0, 0, 1))]
    model = scripted(tok, "never used", order)
    prompts = [PROMPT, [{"role": "user", "content": "Another user, longer prompt text here. /no_think"}]]
    got = generate_ranked(model, tok, SidTrie(SIDS), prompts, think=False, num_beams=8, batch_size=2,
                          exclude=[[order[0]], []])
    assert got[1][:2] == order and len(got[1]) == 8 == len(set(got[1]))   # every catalog item, ranked
    assert order[0] not in got[0] and got[0][0] == order[1] and len(got[0]) == 7


def test_excluding_a_whole_branch_prunes_it():
    class Tok:
        def get_vocab(self):
            return {t: i for i, t in enumerate(vocabulary_for(SIDS))}
    idx = SidIdTrie(SidTrie(SIDS), Tok())
    both = [format_sid((0, 0, 0)), format_sid((0, 0, 1))]
    root = idx.without(both)
    v = Tok().get_vocab()
    a0 = root[v["<|sid_begin|>"]][v["<s_a_0>"]]
    assert v["<s_b_0>"] not in a0 and v["<s_b_1>"] in a0        # emptied branch removed …
    assert v["<s_b_0>"] in idx.root[v["<|sid_begin|>"]][v["<s_a_0>"]]   # … in a copy only


def test_constrained_sampler_gives_n_completions_with_one_catalog_sid_each(tok):
    model = scripted(tok, " Thinking about sequels.\n</think>", [format_sid((1, 1, 0))])
    outs = sample_constrained(model, tok, SidTrie(SIDS), [PROMPT, PROMPT], [True, False], n=3,
                              think_budget=32, seed=1)
    assert [len(o) for o in outs] == [3, 3]
    from storage.sid import extract_sids

    for text in outs[0]:
        assert text.startswith("<think>\nThinking about sequels.\n</think>\n\n")
        assert len(extract_sids(text.split("</think>")[1])) == 1
    for text in outs[1]:
        assert text.startswith("<think>\n\n</think>\n\n") and extract_sids(text)[0] in SIDS


def test_think_mode_batches_prompts_of_different_lengths(tok):
    model = scripted(tok, " Short thought.\n</think>", [format_sid((1, 0, 0))])
    prompts = [PROMPT, [{"role": "user", "content": "A much longer history: " + " ".join(SIDS) + " /think"}],
               [{"role": "user", "content": "x /think"}]]
    out = decode(model, tok, SidTrie(SIDS), prompts, think=True, num_beams=2, think_budget=40, batch_size=3)
    assert [d.reasoning for d in out] == ["Short thought."] * 3 and all(d.closed for d in out)
    assert all(d.sids[0] == format_sid((1, 0, 0)) and len(d.sids) == 2 for d in out)
