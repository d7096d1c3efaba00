"""The CPU switch of TRL's fused LM head (trainers/trl_cpu.py): the compact branch is taken on CPU and gives the
same loss and gradients as the model's ordinary cross-entropy over the labelled positions."""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def _tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 20), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, 15:] = ids[:, 15:]          # loss on a short "answer" only, as completion_only_loss does
    labels[2, 17:] = -100                 # rows with different answer lengths
    return ids, labels


def test_compact_path_on_cpu_gives_the_plain_loss_and_gradients():
    import trl.trainer.utils as tu
    from trl.trainer.utils import add_fused_lm_head

    from trainers.trl_cpu import compact_lm_head_on_cpu

    ids, labels = _batch()
    plain = _tiny_model()
    ref = plain(input_ids=ids, labels=labels).loss
    ref.backward()
    ref_grad = plain.get_input_embeddings().weight.grad.clone()

    assert compact_lm_head_on_cpu() is True
    assert compact_lm_head_on_cpu() is True                   # idempotent
    assert tu._use_triton(torch.device("cpu")) is True         # the compact branch is what CPU now takes

    fused = _tiny_model()
    add_fused_lm_head(fused, outputs=("log_probs",))
    out = fused(input_ids=ids, labels=labels, fused_lm_head=True)
    # compact scoring projects only the labelled positions, then scatters them back: zeros elsewhere
    assert out.log_probs.shape == labels[:, 1:].shape
    assert torch.all(out.log_probs[~out.label_mask] == 0)
    assert torch.allclose(out.loss, ref, atol=1e-5)
    out.loss.backward()
    assert torch.allclose(fused.get_input_embeddings().weight.grad, ref_grad, atol=1e-5)
