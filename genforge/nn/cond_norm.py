"""Conditional batch normalisation (de Vries et al. 2017; Miyato & Koyama 2018's generator):
batch norm without its own affine parameters, then a per-class gain and bias,

    out = (1 + gamma[y]) * BN(x) + beta[y],   gamma, beta initialised to 0,

so at initialisation it is plain batch norm and the class modulates every feature map of the
generator instead of entering once beside z (where a small G learns to ignore z)."""
from __future__ import annotations

import torch
from torch import nn


class ConditionalBatchNorm(nn.Module):
    """Batch norm over (B, C) (spatial=False) or (B, C, H, W) with class-conditional gain and bias
    (y: (B,) class ids)."""

    def __init__(self, num_features: int, num_classes: int, spatial: bool = True):
        super().__init__()
        self.norm = (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (len(x), -1) + (1,) * (x.dim() - 2)  # (B, C) or (B, C, 1, 1)
        return (1 + self.gamma(y).view(shape)) * self.norm(x) + self.beta(y).view(shape)
