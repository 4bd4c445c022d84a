"""Speech-like test clips made here (no downloads): a pulse train through moving resonances."""
from __future__ import annotations

import numpy as np


def vowels(rate: int = 22050, seconds: float = 1.0, seed: int = 0, f0: float = 120.0) -> np.ndarray:
    """A speech-like clip: a harmonic source at about f0 Hz (with vibrato) through two moving
    resonances (formants), a little noise; float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * (1.5 + 0.3 * seed) * t))
    harmonics = np.arange(1, 30)[:, None]
    source = np.sin(2 * np.pi * np.cumsum(pitch) / rate * harmonics)  # (harmonics, n)
    freqs = pitch[None, :] * harmonics
    f1 = 500 + 300 * np.sin(2 * np.pi * (2 + 0.2 * seed) * t)
    f2 = 1500 + 600 * np.cos(2 * np.pi * 1.3 * t)
    gain = np.exp(-((freqs - f1) / 150) ** 2) + 0.5 * np.exp(-((freqs - f2) / 250) ** 2) + 0.01
    wav = (source * gain).sum(axis=0)
    wav = wav / np.abs(wav).max() * 0.5 + 0.002 * rng.standard_normal(n)
    return wav.astype(np.float32)
