"""Attention on CPU in bf16: bf16 batched matmuls around an fp32 softmax, with a hand-written
backward. PyTorch's bf16 attention kernels on CPU are several times slower than fp32 (the backward
most of all), and its fp32 flash kernel is slow for short sequences; this keeps the probabilities
in fp32 and takes a third less time per attention call than autograd's composition of the same ops."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
           dropout: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs) + mask) v for q (B, nh, T, hs) and k, v (B, nh, S, hs) on CPU, in q's
    dtype; mask (B, 1, T, S) bool, True where a query may attend to a key, else causal (the last T of
    S positions); dropout on the probabilities (training only)."""
    dtype, bf16, contiguous = q.dtype, torch.bfloat16, torch.contiguous_format
    # contiguous heads: the batched matmuls run faster on them than on the transposed views. Every
    # matmul input is bf16 already, so an autocast around this changes nothing and stays on.
    q, k, v = q.to(bf16, memory_format=contiguous), k.to(bf16, memory_format=contiguous), v.to(bf16, memory_format=contiguous)
    bias = _bias(mask, q.size(2), k.size(2), q.device)
    if dropout > 0:
        return _math_bf16(q, k, v, bias, dropout).to(dtype)
    return BF16Attention.apply(q, k, v, bias).to(dtype)


def _math_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, dropout: float) -> torch.Tensor:
    """BF16Attention's arithmetic in autograd's ops, with dropout on the probabilities."""
    scores = (q @ k.transpose(-1, -2)).float() * q.size(-1) ** -0.5  # (B, nh, T, S)
    if bias is not None:
        scores = scores + bias
    att = F.dropout(scores.softmax(-1), dropout)
    return att.to(torch.bfloat16) @ v  # (B, nh, T, hs)


class BF16Attention(torch.autograd.Function):
    """softmax(q k^T / sqrt(hs) + bias) v for bf16 q, k, v (B, nh, T|S, hs): bf16 matmuls, the
    scores and probabilities in fp32, and a hand-written backward. Autograd's version of the same
    arithmetic makes about twice the passes over the (B, nh, T, S) scores (casts, the scale, the
    mask and their backwards, each a new tensor); this one takes a third less time per attention call
    on one CPU thread and gives bitwise the same outputs and gradients (tests/cpu/test_bf16_attention.py)."""

    @staticmethod
    def forward(ctx, q, k, v, bias):
        scale = q.size(-1) ** -0.5
        scores = q @ k.transpose(-1, -2)  # (B, nh, T, S) bf16
        scores = scores.float().mul_(scale) if bias is None else torch.add(bias, scores, alpha=scale)  # fp32
        probs = scores.softmax(-1)  # fp32
        probs16 = probs.to(torch.bfloat16)
        ctx.save_for_backward(q, k, v, probs, probs16)
        return probs16 @ v  # (B, nh, T, hs)

    @staticmethod
    def backward(ctx, dy):
        q, k, v, probs, probs16 = ctx.saved_tensors
        dv = probs16.transpose(-1, -2) @ dy
        dprobs = (dy @ v.transpose(-1, -2)).float()
        dscores = torch._softmax_backward_data(dprobs, probs, -1, torch.float32)
        dscores = dscores.mul_(q.size(-1) ** -0.5).to(torch.bfloat16)
        return dscores @ k, dscores.transpose(-1, -2) @ q, dv, None


def _bias(mask: torch.Tensor | None, T: int, S: int, device: torch.device) -> torch.Tensor | None:
    """The additive form (0 / -inf, fp32) of a bool mask (B, 1, T, S), of the causal mask when there
    is none and T > 1, or None (one new token sees every cached key)."""
    if mask is not None:
        return torch.zeros(mask.shape, device=device).masked_fill_(~mask, float("-inf"))
    return _causal_bias(T, S, device) if T > 1 else None


@functools.lru_cache(maxsize=16)
def _causal_bias(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) fp32: 0 where query i (the last T of S positions) may see key j <= S - T + i, -inf elsewhere."""
    allowed = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)
    return torch.zeros(T, S, device=device).masked_fill_(~allowed, float("-inf"))
