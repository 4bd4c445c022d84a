"""The CPU bf16 attention core (BF16Attention): the same numbers as autograd's composition of the
same ops, and a GPT under bf16 autocast that stays close to fp32."""
from __future__ import annotations

import pytest
import torch

from genforge.cpu.attention import BF16Attention, _causal_bias
from genforge.models.gpt import GPT, GPTConfig, packed_mask


def _reference(q, k, v, bias):
    scores = (q @ k.transpose(-1, -2)).float() * q.size(-1) ** -0.5
    if bias is not None:
        scores = scores + bias
    return scores.softmax(-1).to(torch.bfloat16) @ v


def _bias(kind: str, B: int, T: int, S: int):
    if kind == "causal":
        return _causal_bias(T, S, torch.device("cpu"))
    if kind == "packed":  # two documents per row, split at different places
        doc_ids = torch.tensor([[0] * 5 + [1] * (T - 5), [0] * 9 + [1] * (T - 9)])
        mask, _ = packed_mask(doc_ids)
        return torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))
    return None  # one new token attending to every cached key


@pytest.mark.parametrize("kind,T,S", [("causal", 16, 16), ("causal", 4, 16), ("packed", 16, 16), ("none", 1, 16)])
def test_matches_autograd_composition_bitwise(kind, T, S):
    torch.manual_seed(0)
    B, H, hs = 2, 3, 8
    q = torch.randn(B, H, T, hs).bfloat16().requires_grad_()
    k, v = (torch.randn(B, H, S, hs).bfloat16().requires_grad_() for _ in range(2))
    dy = torch.randn(B, H, T, hs).bfloat16()
    bias = _bias(kind, B, T, S)
    outs = []
    for f in (BF16Attention.apply, _reference):
        y = f(q, k, v, bias)
        grads = torch.autograd.grad(y, (q, k, v), dy)
        outs.append((y, *grads))
    for ours, ref in zip(*outs):
        assert torch.equal(ours, ref)


def test_gpt_under_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=2, n_embd=32, block_size=16))
    idx = torch.randint(0, 50, (3, 16))
    grads = []
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(idx)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), idx.roll(-1, 1).flatten())
        grads.append(torch.autograd.grad(loss, model.transformer.h[0].attn.c_attn.weight)[0])
        if not bf16:
            ref_logits = logits
    assert (logits.float() - ref_logits).abs().max() < 0.05
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.99


def test_attention_dropout_under_bf16_autocast():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=32, block_size=16, dropout=0.5))
    idx = torch.randint(0, 50, (3, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = model(idx)[0], model(idx)[0]
        model.eval()
        c, d = model(idx)[0], model(idx)[0]
    assert not torch.equal(a, b) and torch.equal(c, d)
    a.float().square().mean().backward()
    assert torch.isfinite(model.transformer.h[0].attn.c_attn.weight.grad).all()
