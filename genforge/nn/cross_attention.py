"""Multi-head cross-attention: queries from one sequence, keys and values from another (the text
states a text-to-image denoiser reads), through `scaled_dot_product_attention` with a key mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, context_dim: int | None = None):
        super().__init__()
        self.n_head, self.head_dim = n_head, n_embd // n_head
        self.q = nn.Linear(n_embd, n_embd)
        self.kv = nn.Linear(context_dim or n_embd, 2 * n_embd)  # [k | v]
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) attends to context (B, S, Cc); mask (B, S) True on keys that may be attended
        (every row needs one)."""
        B, T, C = x.shape
        S = context.size(1)
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.kv(context).view(B, S, 2, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, nh, S, hs)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, S)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))
