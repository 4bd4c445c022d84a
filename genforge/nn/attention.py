"""Causal multi-head self-attention through `scaled_dot_product_attention`, with grouped-query
attention (Ainslie et al. 2023) and a preallocated KV cache for generation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genforge.nn.positions import RotaryEmbedding


class KVCache:
    """Keys and values of every layer, preallocated to `max_len` positions.

    Decoding writes in place (no concatenation), so each new token costs the same.
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (n_layer, batch, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len

    def update(self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs) at positions pos..pos+T; return all keys/values so far."""
        end = pos + k.size(2)
        self.k[layer, :, :, pos:end] = k
        self.v[layer, :, :, pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_kv_head: int, bias: bool, dropout: float = 0.0,
                 rope: RotaryEmbedding | None = None):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, n_embd // n_head
        # q, k, v in one matmul: [q (n_head) | k (n_kv_head) | v (n_kv_head)] heads
        self.c_attn = nn.Linear(n_embd, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.rope = rope  # shared with the other layers; not a parameter

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        hs, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split([nh * hs, nkv * hs, nkv * hs], dim=-1)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)
        if self.rope is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        if cache is not None:
            k, v = cache.update(layer, pos, k, v)  # (B, nkv, pos+T, hs)
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
        y = self._attend(q, k, v, pos)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int) -> torch.Tensor:
        T, S = q.size(2), k.size(2)
        dtype = q.dtype
        if q.device.type == "cpu" and dtype == torch.bfloat16:
            # PyTorch's bf16 attention kernels on CPU are several times slower than fp32 (its
            # backward most of all) and the tensors are small: attend in fp32.
            q, k, v = q.float(), k.float(), v.float()
        dropout = self.dropout if self.training else 0.0
        if T == 1:  # one new token sees every cached position
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        elif S == T:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # a chunk of T new tokens after S - T cached ones
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return y.to(dtype)
