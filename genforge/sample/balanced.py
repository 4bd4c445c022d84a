"""Image samples at a target label distribution, the two model-side controls of output bias:

- class-conditional sampling: a class-conditional model (a GAN with model.conditional=true) is
  asked for each class in proportion to the target: exact counts (largest remainders), in an order
  shuffled by the seed;
- classifier rejection sampling: any image model's samples are labelled by a judge classifier and
  kept while their class still has room under the target counts, until every class is full. What
  comes out has the target distribution as that judge sees it; measure it with another judge (or
  state the judge's error) before calling it unbiased.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genforge.errors import GenforgeError
from genforge.models.classifier import predict

MAX_DRAWS = 50  # rejection sampling gives up after MAX_DRAWS x n samples


def target_counts(shares: np.ndarray, n: int) -> np.ndarray:
    """Integer counts (K,) summing to n, as close to n * shares as counts can be (largest remainders)."""
    raw = np.asarray(shares, np.float64) * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:n - counts.sum()]] += 1
    return counts


def target_labels(shares: np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """n class ids (n,) at target_counts(shares, n), shuffled by seed."""
    labels = np.repeat(np.arange(len(shares)), target_counts(shares, n))
    return torch.from_numpy(np.random.default_rng(seed).permutation(labels))


@torch.no_grad()
def conditional_samples(model: nn.Module, n: int, shares: np.ndarray, seed: int = 0,
                        truncation: float | None = None, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, C, H, W) in [0, 1], their classes (n,)) of a class-conditional model asked for
    each class at `shares` (K,). GenforgeError for a model that takes no class, or shares over
    another number of classes."""
    classes = getattr(model.config, "n_cond", 0)
    if not classes:
        raise GenforgeError(f"class-conditional sampling: a {type(model).__name__} takes no class (train a GAN "
                            "with model.conditional=true, or use rejection sampling with a judge)")
    if len(shares) != classes:
        raise GenforgeError(f"class-conditional sampling: a target over {len(shares)} classes for a model of "
                            f"{classes}")
    labels = target_labels(shares, n, seed)
    gen = torch.Generator().manual_seed(seed)
    out = [model.sample(len(y), cond=y.to(_device(model)), generator=gen, truncation=truncation)
           for y in labels.split(batch)]
    return torch.cat(out).cpu(), labels


@torch.no_grad()
def rejection_samples(model: nn.Module, judge: nn.Module, n: int, shares: np.ndarray, seed: int = 0,
                      truncation: float | None = None, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images (n, C, H, W), the judge's classes (n,), samples drawn) with the judge's classes at
    target_counts(shares, n): samples of a class already full are rejected. GenforgeError when a
    class is still short after MAX_DRAWS x n samples (the model seldom or never makes it)."""
    if len(shares) != judge.config.num_classes:
        raise GenforgeError(f"rejection sampling: a target over {len(shares)} classes for a judge of "
                            f"{judge.config.num_classes}")
    want = target_counts(shares, n)
    have = np.zeros_like(want)
    gen = torch.Generator().manual_seed(seed)
    kept_x, kept_y, drawn = [], [], 0
    while (have < want).any():
        if drawn >= MAX_DRAWS * n:
            short = [f"class {k}: {have[k]} of {want[k]}" for k in np.flatnonzero(have < want)]
            raise GenforgeError(f"rejection sampling: after {drawn} samples still short of {'; '.join(short)} "
                                "(the model seldom makes them: mitigate in training instead)")
        x = model.sample(batch, generator=gen, truncation=truncation).cpu()
        y = predict(judge, x.to(_device(judge))).cpu().numpy()
        drawn += batch
        keep = []
        for i, k in enumerate(y):
            if have[k] < want[k]:
                have[k] += 1
                keep.append(i)
        kept_x.append(x[keep])
        kept_y.append(torch.from_numpy(y[keep]))
    return torch.cat(kept_x), torch.cat(kept_y), drawn


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
