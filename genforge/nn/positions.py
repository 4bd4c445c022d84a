"""Rotary position embeddings (Su et al. 2021, RoFormer), in the rotate-half layout used by
Llama checkpoints on the Hugging Face hub, so imported weights need no permutation."""
from __future__ import annotations

import torch
from torch import nn

from genforge.nn.rope_scaling import inv_frequencies


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        # scaling: linear / dynamic / llama3 / yarn frequencies (rope_scaling.py); yarn also scales cos and sin
        inv_freq, attention = inv_frequencies(head_dim, theta, scaling)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1) * attention  # (T, hs)
        # rotate_half(x) = [-x2, x1] = roll(x, hs/2) * [-1.., +1..]: the sign lives in `sin`
        sin = torch.cat([-angles.sin(), angles.sin()], dim=-1) * attention
        # (T, 1, hs) to broadcast over heads; not saved in checkpoints: a pure function of the config
        self.register_buffer("cos", cos[:, None, :], persistent=False)
        self.register_buffer("sin", sin[:, None, :], persistent=False)
        self.half = head_dim // 2

    def forward(self, x: torch.Tensor, pos: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Rotate x of shape (B, T, heads, hs) whose first token sits at position `pos`, or whose
        tokens sit at `positions` (B, T) (packed sequences restart at 0 with each document)."""
        T = x.size(1)
        if positions is not None:
            cos, sin = self.cos[positions], self.sin[positions]  # (B, T, 1, hs)
        else:
            cos, sin = self.cos[pos : pos + T], self.sin[pos : pos + T]
        if cos.dtype != x.dtype and x.device.type != "cpu":  # on CPU attention runs in fp32 anyway
            cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        return x * cos + x.roll(self.half, dims=-1) * sin
