"""Differentiable augmentation for GAN discriminators (DiffAugment, Zhao et al. 2020).

D sees every image, real or generated, through the same random transform T, in both the D and
the G step; T is differentiable, so G's gradients pass through it. Policies, as the paper's:
  translation: shift each image by up to 1/8 of its size (the uncovered border is 0)
  cutout:      zero one square of half the image size, centred anywhere in the image
"""
from __future__ import annotations

import torch

POLICIES = ("translation", "cutout")
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5


def translate(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W), shifts (B, 2) integer (dy, dx): out[b, :, i, j] = x[b, :, i + dy, j + dx]
    where that is inside the image, else 0."""
    _, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h) + shifts[:, :1]  # (B, H) source rows
    cols = torch.arange(w, device=x.device).view(1, w) + shifts[:, 1:]  # (B, W) source columns
    inside = ((rows >= 0) & (rows < h)).unsqueeze(2) & ((cols >= 0) & (cols < w)).unsqueeze(1)  # (B, H, W)
    flat = rows.clamp(0, h - 1).unsqueeze(2) * w + cols.clamp(0, w - 1).unsqueeze(1)  # (B, H, W) source index
    out = x.flatten(2).gather(2, flat.flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)
    return out * inside.unsqueeze(1).to(x.dtype)


def cutout(x: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """x (B, C, H, W) with the size x size square starting at centres - size // 2 ((B, 2) integer
    (row, col)) zeroed, clipped to the image."""
    _, _, h, w = x.shape
    top = (centres[:, :1] - size // 2)  # (B, 1)
    left = (centres[:, 1:] - size // 2)
    r = torch.arange(h, device=x.device).view(1, h)
    c = torch.arange(w, device=x.device).view(1, w)
    in_rows = (r >= top) & (r < top + size)  # (B, H)
    in_cols = (c >= left) & (c < left + size)  # (B, W)
    keep = ~(in_rows.unsqueeze(2) & in_cols.unsqueeze(1))  # (B, H, W)
    return x * keep.unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """x (B, C, H, W) through each policy in order, with per-image random parameters."""
    b, _, h, w = x.shape
    for name in policy:
        if name == "translation":
            sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
            shifts = torch.stack([torch.randint(-sh, sh + 1, (b,), generator=generator),
                                  torch.randint(-sw, sw + 1, (b,), generator=generator)], 1)
            x = translate(x, shifts.to(x.device))
        elif name == "cutout":
            size = int(h * CUTOUT_RATIO + 0.5)
            centres = torch.stack([torch.randint(0, h + (1 - size % 2), (b,), generator=generator),
                                   torch.randint(0, w + (1 - size % 2), (b,), generator=generator)], 1)
            x = cutout(x, centres.to(x.device), size)
        else:
            raise ValueError(f"unknown DiffAugment policy {name!r}; expected one of {POLICIES}")
    return x
