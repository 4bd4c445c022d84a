"""Learning-rate schedule: linear warmup, then cosine decay to min_lr (Loshchilov & Hutter 2017)."""
from __future__ import annotations

import math


def lr_at(step: int, lr: float, min_lr: float, warmup: int, decay_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based), as nanoGPT computes it."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
