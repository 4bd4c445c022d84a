"""Audio metrics that need no trained judge: mel-cepstral distortion with DTW, and real-time factor.

MCD (Kubichek 1993): per aligned frame pair, (10 / ln 10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2) dB,
averaged over the frame pairs of a dynamic-time-warping path, c0 (energy) left out. The mel-cepstra
here are the cepstrum of genforge's natural-log mel amplitude spectrum (nn/mel.py, 80 bands):
c_d = (1/M) * sum_m ln|X_m| cos(pi d (m + 1/2) / M), i.e. the scaling in which
ln|X(w)| = c_0 + 2 sum_d c_d cos(d w) holds on the mel-warped axis, the convention of SPTK's
mel-cepstra, so values land in the range TTS papers report for SPTK/WORLD MCD (4-8 dB for
synthetic speech) without being identical to them (SPTK warps with an all-pass filter, not
triangles). D = 24 by default (c1..c24).

Frames where both signals are silent say nothing about quality and only shrink the mean: leading and
trailing silence (below `top_db` under the clip's peak) is trimmed before alignment. The DTW path
uses the standard step set (1,0), (0,1), (1,1) at equal weight (as librosa.sequence.dtw; here in
NumPy, tested against it).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from genforge.errors import DataError
from genforge.nn.mel import LogMel, MelConfig

MCD_K = 10.0 / math.log(10.0) * math.sqrt(2.0)
SILENCE_PEAK = 1e-4  # a clip whose largest sample is below this is silent


def _dct_matrix(n_mels: int, n_coeffs: int) -> torch.Tensor:
    """(n_coeffs, n_mels) DCT-II rows d = 0..n_coeffs-1 with the 1/M cepstral scaling."""
    m = torch.arange(n_mels, dtype=torch.float64)
    d = torch.arange(n_coeffs, dtype=torch.float64)[:, None]
    return (torch.cos(math.pi * d * (m + 0.5) / n_mels) / n_mels).float()


def _check_wav(wav, what: str) -> torch.Tensor:
    wav = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1) if not torch.is_tensor(wav) else wav.float().reshape(-1)
    if wav.numel() == 0:
        raise DataError(f"{what}: the waveform holds no samples")
    if not torch.isfinite(wav).all():
        raise DataError(f"{what}: the waveform holds NaN or infinite samples")
    if wav.abs().max() < SILENCE_PEAK:
        raise DataError(f"{what}: the clip is silent (peak {wav.abs().max().item():.1e} < {SILENCE_PEAK:g}); "
                        "MCD compares speech, not silence")
    return wav


def _trim(wav: torch.Tensor, cfg: MelConfig, top_db: float) -> torch.Tensor:
    """`wav` without its leading and trailing frames quieter than top_db under its loudest frame."""
    hop = cfg.hop_length
    n = wav.numel() // hop
    if n < 2:
        return wav
    rms = wav[: n * hop].reshape(n, hop).pow(2).mean(dim=1).sqrt()
    db = 20 * torch.log10(rms.clamp(min=1e-10) / rms.max())
    loud = torch.nonzero(db > -top_db).flatten()
    return wav[int(loud[0]) * hop: (int(loud[-1]) + 1) * hop]


def mel_cepstra(wav, cfg: MelConfig | None = None, n_coeffs: int = 25, *, trim_db: float | None = 40.0,
                what: str = "audio") -> np.ndarray:
    """(T, n_coeffs) float64 mel-cepstra c0..c_{n_coeffs-1} of a waveform at cfg.sample_rate.
    DataError for an empty, non-finite or silent clip."""
    cfg = cfg or MelConfig()
    wav = _check_wav(wav, what)
    if trim_db is not None:
        wav = _trim(wav, cfg, trim_db)
    with torch.no_grad():
        log_mel = LogMel(cfg)(wav)  # (n_mels, T) natural log amplitude
    return (_dct_matrix(cfg.n_mels, n_coeffs) @ log_mel).T.double().numpy()


def mcd_cepstra(ref: np.ndarray, test: np.ndarray, *, dtw: bool = True) -> float:
    """MCD in dB between mel-cepstra (T1, D+1) and (T2, D+1), c0 dropped; with dtw=False the two must
    have the same number of frames and are compared frame by frame."""
    a, b = np.asarray(ref, dtype=np.float64)[:, 1:], np.asarray(test, dtype=np.float64)[:, 1:]
    if a.shape[1] != b.shape[1]:
        raise DataError(f"mcd: the cepstra have {a.shape[1] + 1} and {b.shape[1] + 1} coefficients")
    if not dtw:
        if len(a) != len(b):
            raise DataError(f"mcd: {len(a)} and {len(b)} frames; use dtw=True to align clips of different lengths")
        return float(MCD_K * np.sqrt(((a - b) ** 2).sum(axis=1)).mean())
    cost = np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0))  # (T1, T2)
    path = dtw_path(cost)
    return float(MCD_K * cost[path[:, 0], path[:, 1]].mean())


def dtw_path(cost: np.ndarray) -> np.ndarray:
    """(L, 2) index pairs of the cheapest monotone path from (0, 0) to (T1 - 1, T2 - 1) through the
    (T1, T2) cost matrix, steps (1, 1), (1, 0), (0, 1) at equal weight (librosa.sequence.dtw's
    default). The accumulated cost is filled one anti-diagonal at a time, each in one NumPy step."""
    T1, T2 = cost.shape
    acc = np.full((T1 + 1, T2 + 1), np.inf)
    acc[0, 0] = 0.0
    step = np.zeros((T1 + 1, T2 + 1), dtype=np.int8)  # 0: from (i-1, j-1), 1: from (i-1, j), 2: from (i, j-1)
    for d in range(2, T1 + T2 + 1):  # cells (i, j), 1-based, with i + j = d
        i = np.arange(max(1, d - T2), min(T1, d - 1) + 1)
        j = d - i
        prev = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])  # (3, cells)
        best = prev.argmin(axis=0)
        acc[i, j] = cost[i - 1, j - 1] + prev[best, np.arange(len(i))]
        step[i, j] = best
    i, j, path = T1, T2, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        s = step[i, j]
        i, j = (i - 1, j - 1) if s == 0 else (i - 1, j) if s == 1 else (i, j - 1)
    return np.array(path[::-1])


def mcd_dtw(ref_wav, test_wav, cfg: MelConfig | None = None, n_coeffs: int = 25, *, trim_db: float | None = 40.0) -> float:
    """Mel-cepstral distortion in dB, DTW-aligned, of `test_wav` against `ref_wav` (both mono at
    cfg.sample_rate). 0 for identical signals; DataError for an empty, non-finite or silent clip."""
    cfg = cfg or MelConfig()
    return mcd_cepstra(mel_cepstra(ref_wav, cfg, n_coeffs, trim_db=trim_db, what="reference audio"),
                       mel_cepstra(test_wav, cfg, n_coeffs, trim_db=trim_db, what="generated audio"))


def real_time_factor(generate: Callable[[], object], audio_seconds: float, *, repeats: int = 3) -> float:
    """Median wall seconds of `generate()` per second of audio it makes (< 1: faster than real
    time). Call it under the thread count you want to report (torch.set_num_threads)."""
    if audio_seconds <= 0:
        raise ValueError(f"real_time_factor: audio_seconds={audio_seconds} must be > 0")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / audio_seconds
