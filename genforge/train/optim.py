"""Optimizer construction: AdamW with weight decay on matrices only (not on norms, biases)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from genforge.config import TrainConfig


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # the fused kernel updates every tensor in one pass (CUDA and, since torch 2.4, CPU)
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
