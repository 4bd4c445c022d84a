"""A neural vocoder: log-mel frames → waveform, and the discriminators that train it.

Generator (Vocos, Siuzdak 2023): a ConvNeXt backbone (Liu et al. 2022; depthwise conv 7,
LayerNorm, pointwise MLP, layer scale) over the mel frames at the frame rate, a linear head that
predicts each frame's STFT log-magnitude and phase, and an inverse STFT that turns the frames into
samples. All the work happens at the frame rate (86 frames/s at 22.05 kHz) rather than at the
sample rate, which is why it runs many times faster than real time on a CPU; T frames become
(T - 1) * hop samples (the length rule of nn/mel.py), frame t centred on sample t * hop.

Discriminators (HiFi-GAN, Kong et al. 2020), small: a multi-period discriminator (the waveform
folded into (N / p, p) for periods 2, 3, 5, 7, 11, 2-D convolutions along the time axis) and a
multi-scale discriminator (1-D grouped convolutions on the waveform and on 2x and 4x average-pooled
copies). Each sub-discriminator returns its logits and its feature maps (for feature matching).
Weight normalisation throughout, as HiFi-GAN.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from genforge.errors import ConfigError
from genforge.nn.mel import MEL_PRESETS, LogMel, MelConfig, check_mel

LRELU = 0.1


@dataclass
class VocoderConfig:
    # the mel features it reads (nn/mel.py); fmax None: the preset of sample_rate (8 kHz; 12 kHz at 24 kHz)
    sample_rate: int = 22050
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    fmin: float = 0.0
    fmax: float | None = None
    # the generator
    dim: int = 256  # ConvNeXt channels
    hidden: int = 768  # the pointwise MLP's width
    n_layer: int = 6
    kernel: int = 7
    # the discriminators; d_width 0 trains without them (spectral losses only)
    d_width: int = 16  # channels of each discriminator's first layer
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    scales: int = 3  # multi-scale discriminator: the waveform, then 2x and 4x average-pooled
    # the losses (objectives/vocoder.py; HiFi-GAN's weights for mel and feature matching)
    mel_weight: float = 45.0
    stft_weight: float = 1.0  # multi-resolution STFT loss (Yamamoto et al. 2020)
    fm_weight: float = 2.0
    adv_weight: float = 1.0
    loss: str = "lsgan"  # adversarial loss: lsgan (HiFi-GAN) | hinge (Vocos)
    disc_start: int = 0  # steps trained on the spectral losses alone before the discriminators join
    d_lr_scale: float = 1.0

    def __post_init__(self):
        for key in ("sample_rate", "n_mels", "dim", "hidden", "n_layer", "kernel", "scales"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.kernel % 2 == 0:
            raise ConfigError(f"model.kernel={self.kernel} must be odd (same-length convolutions)")
        if self.d_width < 0 or self.disc_start < 0:
            raise ConfigError(f"model.d_width={self.d_width} and model.disc_start={self.disc_start} must be >= 0")
        if any(p < 1 for p in self.periods):
            raise ConfigError(f"model.periods={self.periods}: each period must be >= 1")
        if self.loss not in ("lsgan", "hinge"):
            raise ConfigError(f"model.loss={self.loss!r}: expected lsgan or hinge")
        if min(self.mel_weight, self.stft_weight, self.fm_weight, self.adv_weight) < 0:
            raise ConfigError("model.mel_weight, stft_weight, fm_weight and adv_weight must be >= 0")
        self.mel()  # the mel settings are checked now, naming the field

    def mel(self) -> MelConfig:
        fmax = self.fmax
        if fmax is None:
            fmax = MEL_PRESETS[self.sample_rate].fmax if self.sample_rate in MEL_PRESETS else min(8000.0, self.sample_rate / 2)
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                         win_length=self.win_length, n_mels=self.n_mels, fmin=self.fmin, fmax=fmax)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        h = self.dwconv(x).transpose(1, 2)  # (B, T, C)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class VocosGenerator(nn.Module):
    """Log-mel (B, n_mels, T) → waveform (B, (T - 1) * hop) in about [-1, 1]."""

    def __init__(self, config: VocoderConfig):
        super().__init__()
        self.config = c = config
        self.mel_config = c.mel()
        self.feats = LogMel(self.mel_config)  # the features it reads (buffers only, not saved)
        self.embed = nn.Conv1d(c.n_mels, c.dim, 7, padding=3)
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(c.dim, c.hidden, c.kernel, 1.0 / c.n_layer) for _ in range(c.n_layer))
        self.final_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.head = nn.Linear(c.dim, c.n_fft + 2)  # per frame: log|S| and phase of n_fft // 2 + 1 bins
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.shape[-1] < 2:  # one frame spans no samples
            return mel.new_zeros(mel.shape[0], 0)
        x = self.embed(mel)  # (B, C, T)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).float()  # (B, n_fft + 2, T)
        log_mag, phase = x.chunk(2, dim=1)  # (B, F, T) each
        mag = torch.exp(log_mag).clamp(max=100.0)  # Vocos' bound: an early spike cannot blow up the ISTFT
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        m = self.mel_config
        return torch.istft(spec, m.n_fft, m.hop_length, m.win_length, self.feats.window, center=True,
                           length=m.num_samples(mel.shape[-1]))

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (n_mels, T) or (B, n_mels, T) → waveform ((T - 1) * hop,) or (B, ...) clipped to
        [-1, 1]. DataError for the wrong number of mel bands, no frames or non-finite values."""
        squeeze = mel.dim() == 2
        mel = check_mel(mel, self.mel_config).to(self.embed.weight.device)
        wav = self(mel).clamp(-1.0, 1.0)
        return wav[0] if squeeze else wav

    @torch.no_grad()
    def reconstruct(self, wav: torch.Tensor) -> torch.Tensor:
        """The vocoder's copy of a waveform (N,) at its sample rate, through its own mel features:
        (N // hop * hop,) samples (the length rule)."""
        return self.vocode(self.feats.to(self.embed.weight.device)(wav.to(self.embed.weight.device).float()))


def _conv2d(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
    return weight_norm(nn.Conv2d(cin, cout, (kernel, 1), (stride, 1), padding=(kernel // 2, 0)))


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, width: int):
        super().__init__()
        self.period = period
        chans = [1, width, 4 * width, 8 * width, 8 * width]
        self.convs = nn.ModuleList([_conv2d(a, b, 5, 3) for a, b in itertools.pairwise(chans)]
                                   + [_conv2d(chans[-1], chans[-1], 5, 1)])
        self.post = _conv2d(chans[-1], 1, 3, 1)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # wav (B, N)
        B, N = wav.shape
        pad = (-N) % self.period
        x = F.pad(wav, (0, pad), mode="reflect" if pad < N else "constant")
        return _features(self.convs, self.post, x.view(B, 1, (N + pad) // self.period, self.period))  # (B, 1, N / p, p)


class ScaleDiscriminator(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        w = width
        # (in, out, kernel, stride, groups): HiFi-GAN's shape at a fraction of its channels
        layers = [(1, w, 15, 1, 1), (w, 2 * w, 41, 4, 4), (2 * w, 4 * w, 41, 4, 16), (4 * w, 8 * w, 41, 4, 16),
                  (8 * w, 8 * w, 5, 1, 1)]
        self.convs = nn.ModuleList(weight_norm(nn.Conv1d(a, b, k, s, padding=k // 2, groups=_groups(g, a, b)))
                                   for a, b, k, s, g in layers)
        self.post = weight_norm(nn.Conv1d(8 * w, 1, 3, 1, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _features(self.convs, self.post, wav[:, None])


def _features(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A discriminator's (scores (B, *), every layer's output for feature matching) of input x."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


def _groups(g: int, cin: int, cout: int) -> int:
    while cin % g or cout % g:
        g //= 2
    return max(g, 1)


class Discriminators(nn.Module):
    """The multi-period and multi-scale discriminators: wav (B, N) → [(logits, feature maps)] per
    sub-discriminator."""

    def __init__(self, config: VocoderConfig):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p, config.d_width) for p in config.periods)
        self.scales = nn.ModuleList(ScaleDiscriminator(config.d_width) for _ in range(config.scales))

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        outs = [d(wav) for d in self.periods]
        x = wav
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool1d(x[:, None], 4, 2, padding=2)[:, 0]
            outs.append(d(x))
        return outs


class Vocoder(nn.Module):
    """The generator `g` (what checkpoints sample with) and its discriminators `d` (training only;
    None when d_width is 0)."""

    def __init__(self, config: VocoderConfig):
        super().__init__()
        self.config = config
        self.g = VocosGenerator(config)
        self.d = Discriminators(config) if config.d_width else None
