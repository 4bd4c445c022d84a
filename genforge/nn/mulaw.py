"""8-bit mu-law companding (ITU-T G.711's curve with mu = 255, as WaveNet, van den Oord et al. 2016,
sec. 2.2): f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu) for x in [-1, 1], quantised to 256 levels.

Bits per sample of a waveform model are measured on these 256 values, so the codec's per-sample head
(models/codec.py), the context-model floor of bench/audio_codec.py and any other model compare on
one alphabet. Works on torch tensors and NumPy arrays alike.
"""
from __future__ import annotations

import math

import numpy as np
import torch

MU = 255
LEVELS = MU + 1


def mu_law_encode(x):
    """Integer levels in [0, 255] (int64) of samples x in [-1, 1] (clipped)."""
    if isinstance(x, torch.Tensor):
        x = x.float().clamp(-1.0, 1.0)
        f = torch.sign(x) * torch.log1p(MU * x.abs()) / math.log1p(MU)
        return torch.round((f + 1) / 2 * MU).long()
    x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    f = np.sign(x) * np.log1p(MU * np.abs(x)) / math.log1p(MU)
    return np.round((f + 1) / 2 * MU).astype(np.int64)


def _table() -> np.ndarray:
    f = np.arange(LEVELS, dtype=np.float64) / MU * 2 - 1
    return (np.sign(f) * ((1 + MU) ** np.abs(f) - 1) / MU).astype(np.float32)


AMPLITUDES = _table()  # (256,) float32: the amplitude of each level, one table for NumPy and torch alike


def mu_law_decode(q):
    """Samples in [-1, 1] (float32) of mu-law levels q in [0, 255]."""
    if isinstance(q, torch.Tensor):
        return torch.from_numpy(AMPLITUDES).to(q.device)[q.long()]
    return AMPLITUDES[np.asarray(q, dtype=np.int64)]
