"""Log-mel spectrograms in plain torch, and Griffin–Lim inversion as the baseline vocoder.

The features every speech model in genforge shares: the acoustic model predicts them, the vocoder
turns them back into a waveform, the metrics compare them. Settings follow HiFi-GAN / Tacotron 2
(22.05 kHz, n_fft 1024, hop 256, 80 mels up to 8 kHz, magnitude spectrum, natural log clamped at
1e-5). The filterbank is Slaney's (librosa's default: Slaney mel scale, area-normalised
triangles) or HTK's, built here in torch so that importing this module does not load librosa;
tests/nn/test_mel.py checks it and the whole spectrogram against librosa.

Length rule (center=True): a clip of N samples gives 1 + N // hop frames (frame t centred on sample
t * hop); T frames span (T - 1) * hop samples, which is what a vocoder writes, so that
num_frames(num_samples(T)) == T (a clip whose length is a multiple of the hop comes back whole).

Griffin–Lim: Griffin & Lim 1984, with the "fast" momentum of Perraudin et al. 2013 (librosa's
default 0.99); the mel → linear magnitude step is non-negative least squares (a pseudo-inverse
start, then multiplicative updates), as librosa.feature.inverse.mel_to_stft does.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from genforge.errors import ConfigError, DataError


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0  # None: the Nyquist frequency
    power: float = 1.0  # 1: magnitude (HiFi-GAN, Vocos), 2: power (librosa's default)
    log_clamp: float = 1e-5  # log(max(mel, log_clamp))
    mel_scale: Literal["slaney", "htk"] = "slaney"
    norm: Literal["slaney", "none"] = "slaney"  # area-normalised triangles, or peak 1
    center: bool = True
    pad_mode: Literal["constant", "reflect"] = "constant"  # librosa's default since 0.10

    def __post_init__(self):
        for key in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"mel.{key}={getattr(self, key)} must be >= 1")
        if self.win_length > self.n_fft:
            raise ConfigError(f"mel.win_length={self.win_length} must be <= mel.n_fft={self.n_fft}")
        nyquist = self.sample_rate / 2
        if not 0 <= self.fmin < self.f_max <= nyquist:
            raise ConfigError(f"mel.fmin={self.fmin}, mel.fmax={self.fmax}: need 0 <= fmin < fmax <= {nyquist:g} "
                              f"(half of mel.sample_rate={self.sample_rate})")
        if self.power <= 0 or self.log_clamp <= 0:
            raise ConfigError(f"mel.power={self.power} and mel.log_clamp={self.log_clamp} must be > 0")
        if self.mel_scale not in ("slaney", "htk") or self.norm not in ("slaney", "none"):
            raise ConfigError(f"mel.mel_scale={self.mel_scale!r} must be slaney|htk, mel.norm={self.norm!r} slaney|none")
        if self.pad_mode not in ("constant", "reflect"):
            raise ConfigError(f"mel.pad_mode={self.pad_mode!r} must be constant|reflect")

    @property
    def f_max(self) -> float:
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of `num_samples` samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return max(0, 1 + (num_samples - self.n_fft) // self.hop_length)

    def num_samples(self, num_frames: int) -> int:
        """Samples a vocoder writes for `num_frames` frames: (T - 1) * hop, the span of T centred
        frames; num_frames(num_samples(T)) == T."""
        return max(0, num_frames - 1) * self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"mel: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)


# the sample rates genforge ships settings for; each keeps 80 mels and hop 256 so acoustic models
# and vocoders stay interchangeable between them (frame rates 62.5, 86.1 and 93.75 Hz)
MEL_PRESETS: dict[int, MelConfig] = {
    16000: MelConfig(sample_rate=16000, fmax=8000.0),
    22050: MelConfig(sample_rate=22050, fmax=8000.0),
    24000: MelConfig(sample_rate=24000, fmax=12000.0),
}


def mel_config_for(sample_rate: int) -> MelConfig:
    """The shipped MelConfig for `sample_rate` (16000, 22050 or 24000); ConfigError for others."""
    if sample_rate not in MEL_PRESETS:
        raise ConfigError(f"sample_rate={sample_rate}: mel settings exist for {sorted(MEL_PRESETS)} Hz")
    return MEL_PRESETS[sample_rate]


def _hz_to_mel(f: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    # Slaney: linear below 1 kHz (3 mels per 200 Hz), logarithmic above
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(f >= min_log_hz, min_log_mel + torch.log(f.clamp(min=1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, as librosa.filters.mel(sr, n_fft,
    n_mels=, fmin=, fmax=, htk=, norm=) builds them."""
    f64 = torch.float64
    fft_freqs = torch.linspace(0, cfg.sample_rate / 2, cfg.n_freqs, dtype=f64)
    lo, hi = _hz_to_mel(torch.tensor(cfg.fmin, dtype=f64), cfg.mel_scale), _hz_to_mel(torch.tensor(cfg.f_max, dtype=f64), cfg.mel_scale)
    mel_f = _mel_to_hz(torch.linspace(float(lo), float(hi), cfg.n_mels + 2, dtype=f64), cfg.mel_scale)
    fdiff = mel_f[1:] - mel_f[:-1]  # (n_mels + 1,)
    ramps = mel_f[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)  # (n_mels, n_freqs)
    if cfg.norm == "slaney":
        weights = weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    if bool((weights.max(dim=1).values == 0).any()):
        raise ConfigError(f"mel: n_mels={cfg.n_mels} is too many for n_fft={cfg.n_fft} between {cfg.fmin:g} and "
                          f"{cfg.f_max:g} Hz (some filters are empty)")
    return weights.to(torch.float32)


class LogMel(nn.Module):
    """Waveform (N,) or (B, N) → log-mel (n_mels, T) or (B, n_mels, T), T = cfg.num_frames(N).
    Differentiable (the vocoder's mel loss backpropagates through it). The window and filterbank
    are non-persistent buffers: they follow .to(device) and stay out of checkpoints."""

    def __init__(self, cfg: MelConfig | None = None):
        super().__init__()
        self.cfg = cfg or MelConfig()
        self.register_buffer("window", torch.hann_window(self.cfg.win_length), persistent=False)
        self.register_buffer("basis", mel_filterbank(self.cfg), persistent=False)

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) → complex STFT (B, n_fft // 2 + 1, T)."""
        c = self.cfg
        return torch.stft(wav, c.n_fft, c.hop_length, c.win_length, self.window, center=c.center,
                          pad_mode=c.pad_mode, return_complex=True)

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear-amplitude mel spectrogram (before the log)."""
        wav, squeeze = self._batched(wav)
        spec = self.spectrogram(wav.float()).abs()  # (B, F, T)
        if self.cfg.power != 1.0:
            spec = spec.pow(self.cfg.power)
        out = torch.matmul(self.basis, spec)  # (B, n_mels, T)
        return out[0] if squeeze else out

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.mel(wav), min=self.cfg.log_clamp))

    def _batched(self, wav: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if wav.dim() not in (1, 2):
            raise DataError(f"log-mel: expected a waveform (N,) or a batch (B, N), got shape {tuple(wav.shape)}")
        if wav.shape[-1] == 0:
            raise DataError("log-mel: the waveform holds no samples")
        if not torch.isfinite(wav).all():
            raise DataError("log-mel: the waveform holds NaN or infinite samples")
        return (wav[None], True) if wav.dim() == 1 else (wav, False)


def check_mel(mel: torch.Tensor, cfg: MelConfig, what: str = "mel") -> torch.Tensor:
    """`mel` as a (B, n_mels, T) float tensor; DataError naming the shape when it has the wrong
    number of mel bands, no frames, or non-finite values. (n_mels, T) gains a batch axis."""
    if mel.dim() == 2:
        mel = mel[None]
    if mel.dim() != 3 or mel.shape[1] != cfg.n_mels:
        raise DataError(f"{what}: expected (n_mels={cfg.n_mels}, frames) or (batch, {cfg.n_mels}, frames), "
                        f"got shape {tuple(mel.shape)}")
    if mel.shape[-1] == 0:
        raise DataError(f"{what}: the mel spectrogram has no frames")
    if not torch.isfinite(mel).all():
        raise DataError(f"{what}: the mel spectrogram holds NaN or infinite values")
    return mel.float()


def mel_to_linear(mel: torch.Tensor, basis: torch.Tensor, n_iter: int = 50) -> torch.Tensor:
    """Linear-amplitude mel (B, n_mels, T) → non-negative STFT magnitudes (B, F, T) with basis @ S ≈
    mel: least squares under S >= 0 (a clamped pseudo-inverse, then Lee–Seung multiplicative steps)."""
    s = torch.clamp(torch.linalg.pinv(basis) @ mel, min=0.0) + 1e-8  # (B, F, T)
    bt_m = basis.T @ mel
    btb = basis.T @ basis
    for _ in range(n_iter):
        s = s * bt_m / (btb @ s + 1e-10)
    return s


@torch.no_grad()
def griffin_lim(log_mel: torch.Tensor, cfg: MelConfig | None = None, n_iter: int = 32, momentum: float = 0.99,
                seed: int = 0) -> torch.Tensor:
    """Log-mel (n_mels, T) or (B, n_mels, T) → waveform (N,) or (B, N), N = (T - 1) * hop: the baseline
    vocoder. Random initial phase from `seed` (reproducible), `n_iter` fast Griffin–Lim iterations."""
    cfg = cfg or MelConfig()
    if not cfg.center:
        raise ConfigError("griffin_lim: needs mel.center=true (frames centred on multiples of the hop)")
    squeeze = log_mel.dim() == 2
    log_mel = check_mel(log_mel, cfg)
    feats = LogMel(cfg).to(log_mel.device)
    mag = mel_to_linear(torch.exp(log_mel), feats.basis)
    if cfg.power != 1.0:
        mag = mag.pow(1.0 / cfg.power)
    length = cfg.num_samples(log_mel.shape[-1])
    if length == 0:  # one frame spans no samples
        wav = log_mel.new_zeros(log_mel.shape[0], 0)
        return wav[0] if squeeze else wav
    gen = torch.Generator(device="cpu").manual_seed(seed)
    phase = torch.rand(mag.shape, generator=gen).to(mag.device) * (2 * math.pi)
    angles = torch.polar(torch.ones_like(mag), phase)

    def istft(spec):
        return torch.istft(spec, cfg.n_fft, cfg.hop_length, cfg.win_length, feats.window, center=cfg.center,
                           length=length)

    prev = torch.zeros_like(angles)
    for _ in range(n_iter):
        rebuilt = feats.spectrogram(istft(mag * angles))
        angles = rebuilt - (momentum / (1 + momentum)) * prev
        angles = angles / (angles.abs() + 1e-16)
        prev = rebuilt
    wav = istft(mag * angles)
    return wav[0] if squeeze else wav
