"""Causal multi-head self-attention through `scaled_dot_product_attention`, with grouped-query
attention (Ainslie et al. 2023) and a preallocated KV cache for generation."""
from __future__ import annotations

from collections.abc import Callable

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
        # one view per layer, made once: an update is then one narrow and one copy per tensor
        self.k_layers, self.v_layers = self.k.unbind(0), self.v.unbind(0)

    def update(self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs) at positions pos..pos+T; return all keys/values so far."""
        T = k.size(2)
        k_all, v_all = self.k_layers[layer], self.v_layers[layer]  # (B, nkv, max_len, hs)
        k_all.narrow(2, pos, T).copy_(k)
        v_all.narrow(2, pos, T).copy_(v)
        return k_all.narrow(2, 0, pos + T), v_all.narrow(2, 0, pos + T)


class CausalSelfAttention(nn.Module):
    """cpu_bf16_attend: the attention core for CPU under bf16 (the model passes
    genforge.cpu.attention.attend; nn sits below genforge.cpu and does not import it), else None:
    scaled_dot_product_attention everywhere."""

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int, bias: bool, dropout: float = 0.0,
                 rope: RotaryEmbedding | None = None, cpu_bf16_attend: Callable | None = None):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, n_embd // n_head
        # q, k, v in one matmul: [q (n_head) | k (n_kv_head) | v (n_kv_head)] heads
        self.c_attn = nn.Linear(n_embd, (n_head + 2 * n_kv_head) * self.head_dim, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout) if dropout else nn.Identity()  # Dropout(0) still costs a call
        self.rope = rope  # shared with the other layers; not a parameter
        self.cpu_bf16_attend = cpu_bf16_attend

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0,
                mask: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """mask (B, 1, T, T) bool, True where a query may attend to a key, replaces the causal mask
        (packed sequences: causal within each document); positions (B, T) go to the rotary embedding."""
        B, T, C = x.shape
        if cache is not None and T == 1 and not self.training:
            return self._decode_one(x, cache, layer, pos)
        hs, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        qkv = self.c_attn(x).view(B, T, nh + 2 * nkv, hs)
        if self.rope is not None:  # rotate the q and k heads together: half the ops of one call each
            qk, v = qkv.split([nh + nkv, nkv], dim=2)
            q, k = self.rope(qk, pos, positions).split([nh, nkv], dim=2)
        else:
            q, k, v = qkv.split_with_sizes([nh, nkv, nkv], dim=2)  # the op itself, not Tensor.split's Python wrapper
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hs)
        if cache is not None:
            k, v = cache.update(layer, pos, k, v)  # (B, nkv, pos+T, hs)
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
        y = self._attend(q, k, v, pos, mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _decode_one(self, x: torch.Tensor, cache: KVCache, layer: int, pos: int) -> torch.Tensor:
        """forward for one new token per row, the step of generation, in fewer tensor ops: with
        T == 1 the layouts (B, 1, heads, hs) and (B, heads, 1, hs) coincide, so no transposes."""
        B, _, C = x.shape
        nh, nkv = self.n_head, self.n_kv_head
        qkv = self.c_attn(x).view(B, nh + 2 * nkv, 1, self.head_dim)  # (B, nh + 2 nkv, 1, hs)
        if self.rope is not None:  # the rotation wants (B, T=1, heads, hs): the same memory
            qk, v = qkv.split_with_sizes([nh + nkv, nkv], dim=1)
            qk = self.rope(qk.view(B, 1, nh + nkv, self.head_dim), pos).view(B, nh + nkv, 1, self.head_dim)
            q, k = qk.split_with_sizes([nh, nkv], dim=1)
        else:
            q, k, v = qkv.split_with_sizes([nh, nkv, nkv], dim=1)  # the op itself, not Tensor.split's Python wrapper
        k, v = cache.update(layer, pos, k, v)  # (B, nkv, pos+1, hs)
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
        y = self._attend(q, k, v, pos)  # (B, nh, 1, hs)
        return self.c_proj(y.reshape(B, 1, C))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if (self.cpu_bf16_attend is not None and q.device.type == "cpu"
                and (q.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu"))):
            # PyTorch's own bf16 attention on CPU is several times slower than genforge.cpu's
            return self.cpu_bf16_attend(q, k, v, mask, self.dropout if self.training else 0.0)
        return self._sdpa(q, k, v, mask)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        T, S = q.size(2), k.size(2)
        dropout = self.dropout if self.training else 0.0
        if mask is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        if T == 1:  # one new token sees every cached position
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        if S == T:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        # a chunk of T new tokens after S - T cached ones
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(T, S, q.device), dropout_p=dropout)


def _causal_mask(T: int, S: int, device: torch.device) -> torch.Tensor:
    """(T, S) bool, True where query i (the last T of S positions) may see key j: j <= S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)
