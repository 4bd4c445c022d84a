"""Feed-forward blocks: the GPT-2 MLP (GELU) and the Llama SwiGLU (Shazeer 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, n_embd: int, hidden: int, bias: bool, dropout: float = 0.0, approximate: str = "tanh"):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class SwiGLU(nn.Module):
    """silu(x W_gate) * (x W_up), projected back. Gate and up share one matmul (c_fc) for speed;
    its output is [gate | up]."""

    def __init__(self, n_embd: int, hidden: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 2 * hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * up))
