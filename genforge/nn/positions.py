"""Rotary position embeddings (Su et al. 2021, RoFormer), in the rotate-half layout used by
Llama checkpoints on the Hugging Face hub, so imported weights need no permutation."""
from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, hs)
        # not saved in checkpoints: they are a pure function of the config
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, pos: int) -> torch.Tensor:
        """Rotate x of shape (B, nh, T, hs) whose first token sits at position `pos`."""
        T = x.size(-2)
        cos = self.cos[pos : pos + T].to(x.dtype)
        sin = self.sin[pos : pos + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin
