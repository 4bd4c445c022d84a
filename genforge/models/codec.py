"""A neural audio codec: waveform -> a few codes per frame -> waveform, and the exact probability of
each sample given the codes.

Encoder and decoder follow SoundStream (Zeghidour et al. 2021) and EnCodec (Défossez et al. 2022)
at a fraction of their width: a 1-D conv stem, then per stride s a stage of dilated residual units
(dilations 1, 3, 9: a wide receptive field cheaply) and a strided conv (kernel 2s) doubling the
channels, down to `code_dim` vectors at sample_rate / hop frames per second (16 kHz / 320 = 50 Hz);
a residual vector quantiser (nn/vq.py) turns each frame into n_q codes; the decoder mirrors the
encoder with transposed convs back to one sample per sample. The decoder's waveform is the fast
decoding (one parallel pass).

The per-sample head makes the codec a lossless coder too: 256-way logits over the 8-bit mu-law
level of sample t (nn/mulaw.py) from the decoder's features and waveform at t and the previous
`context` true samples (causal in the samples, not in the codes, which are sent first), so
bits(x) = bits(codes) + sum_t -log2 p(x_t | x_<t, codes) (the first term is an LM's over the codes,
the second `sample_bits`). Teacher forcing trains it in one parallel pass; `sample` draws from it
exactly, one sample at a time in NumPy (the first layer's feature part is computed for every
sample at once, so the loop only adds the context's part).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError, DataError
from genforge.nn.mulaw import AMPLITUDES, LEVELS, mu_law_decode, mu_law_encode
from genforge.nn.vq import ResidualVQ


@dataclass
class CodecConfig:
    sample_rate: int = 16000
    channels: int = 16  # the stem's channels; each stage doubles them
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 8])  # their product is the hop
    dilations: list[int] = field(default_factory=lambda: [1, 3, 9])  # the residual units of each stage
    code_dim: int = 64
    n_q: int = 4  # residual quantiser levels
    codebook_size: int = 256
    quantizer_dropout: bool = False  # SoundStream's: a training batch uses its first n ~ U{1..n_q} levels
    ema_decay: float = 0.99
    dead_threshold: float = 0.5  # EMA cluster size below which a code restarts from the batch (0: never)
    # the per-sample head
    context: int = 8  # previous true samples it sees
    embed_context: int = 2  # of them, the nearest this many also enter as a learned vector per mu-law level
    head_hidden: int = 128
    head_layers: int = 1  # hidden layers
    head_positions: int = 2048  # samples per training segment the head's cross-entropy is taken on (0: all)
    # the losses (objectives/codec.py)
    l1_weight: float = 5.0  # waveform L1, relative to the mean amplitude
    stft_weight: float = 1.0  # multi-resolution STFT loss (Yamamoto et al. 2020)
    mel_weight: float = 1.0  # log-mel L1
    beta: float = 1.0  # commitment
    ce_weight: float = 0.1  # the head's cross-entropy (nats per sample)

    def __post_init__(self):
        for key in ("sample_rate", "channels", "code_dim", "n_q", "head_hidden", "head_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.codebook_size < 2:
            raise ConfigError(f"model.codebook_size={self.codebook_size} must be >= 2")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ConfigError(f"model.strides={self.strides}: name at least one stride, each >= 1")
        if any(d < 1 for d in self.dilations):
            raise ConfigError(f"model.dilations={self.dilations}: each must be >= 1")
        if self.context < 0 or self.head_positions < 0:
            raise ConfigError(f"model.context={self.context} and model.head_positions={self.head_positions} must be >= 0")
        if not 0 <= self.embed_context <= self.context:
            raise ConfigError(f"model.embed_context={self.embed_context} must be in [0, model.context={self.context}]")
        if not 0 <= self.ema_decay < 1 or self.dead_threshold < 0:
            raise ConfigError(f"model.ema_decay={self.ema_decay} must be in [0, 1) and model.dead_threshold >= 0")
        for key in ("l1_weight", "stft_weight", "mel_weight", "beta", "ce_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 0")

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


class ResUnit(nn.Module):
    """x + conv1x1(elu(conv7_dilated(elu(x)))) (SoundStream's residual unit)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, N)
        return x + self.proj(F.elu(self.conv(F.elu(x))))


def _down(cin: int, cout: int, s: int) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, 2 * s, stride=s, padding=(s + 1) // 2)  # N -> N / s exactly


def _up(cin: int, cout: int, s: int) -> nn.ConvTranspose1d:
    return nn.ConvTranspose1d(cin, cout, 2 * s, stride=s, padding=(s + 1) // 2, output_padding=s % 2)  # N -> N * s


class Encoder(nn.Module):
    def __init__(self, c: CodecConfig):
        super().__init__()
        ch = c.channels
        layers: list[nn.Module] = [nn.Conv1d(1, ch, 7, padding=3)]
        for s in c.strides:
            layers += [*(ResUnit(ch, d) for d in c.dilations), nn.ELU(), _down(ch, 2 * ch, s)]
            ch *= 2
        layers += [nn.ELU(), nn.Conv1d(ch, c.code_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, code_dim, N / hop)
        return self.net(wav[:, None])


class Decoder(nn.Module):
    """Quantised frames (B, code_dim, F) -> (waveform (B, F * hop), last features (B, channels, F * hop))."""

    def __init__(self, c: CodecConfig):
        super().__init__()
        ch = c.channels * 2 ** len(c.strides)
        layers: list[nn.Module] = [nn.Conv1d(c.code_dim, ch, 7, padding=3)]
        for s in reversed(c.strides):
            layers += [nn.ELU(), _up(ch, ch // 2, s), *(ResUnit(ch // 2, d) for d in c.dilations)]
            ch //= 2
        self.net = nn.Sequential(*layers, nn.ELU())
        self.out = nn.Conv1d(ch, 1, 7, padding=3)

    def forward(self, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.net(z_q)
        return self.out(feats)[:, 0], feats


def _log_widths() -> np.ndarray:
    """(256,) log of the amplitude span of each mu-law level (half-way to its neighbours)."""
    a = AMPLITUDES.astype(np.float64)
    mid = (a[1:] + a[:-1]) / 2
    edges = np.concatenate([[2 * a[0] - mid[0]], mid, [2 * a[-1] - mid[-1]]])
    return np.log(np.diff(edges)).astype(np.float32)


LOG_WIDTHS = _log_widths()
SCALE = 0.01  # the Laplace term's scale at a zero log-scale output (amplitude units)
LOG_SCALE_GAIN = 4.0  # b = SCALE * exp(gain * output): Adam's step per update moves log b this much faster


class SampleHead(nn.Module):
    """Logits (..., 256) of sample t's mu-law level from `cond` (..., channels + 1: the decoder's
    features and waveform at t), `past` (..., 2 * context: the previous samples' amplitudes and
    mu-law values, nearest first) and `prev` (..., embed_context: the nearest previous levels,
    each looked up in its own table, so the first layer holds a bigram-like term per level).

    The logits are free per-level terms plus a discretised Laplace density in amplitude,
    log width_j - |a_j - mu| / b, around a location mu that is linear in the inputs (a linear
    predictor over the past samples and the decoder's waveform, as LPC, starting as the linear
    extrapolation 2 x[t-1] - x[t-2]) plus a correction, with a predicted scale b: tonal audio is
    sharply predictable, and the Laplace term puts most of the probability near the prediction
    from the first step, which the free terms then reshape."""

    def __init__(self, c: CodecConfig):
        super().__init__()
        H = c.head_hidden
        self.cond = nn.Linear(c.channels + 1, H + 1)  # the last output: the location's linear part
        self.past = nn.Linear(2 * c.context, H + 1, bias=False) if c.context else None
        self.embed = nn.Parameter(torch.zeros(c.embed_context, LEVELS, H + 1))  # (E, 256, H + 1)
        self.hidden = nn.ModuleList(nn.Linear(H, H) for _ in range(c.head_layers - 1))
        self.out = nn.Linear(H, LEVELS + 2)  # free logits, location correction, log scale
        if self.past is not None:  # the location starts as the linear extrapolation 2 x[t-1] - x[t-2]
            with torch.no_grad():
                self.past.weight[-1].zero_()
                self.past.weight[-1, :min(2, c.context)] = torch.tensor([2.0, -1.0])[:min(2, c.context)]
                self.cond.weight[-1].zero_()
                self.cond.bias[-1].zero_()
        with torch.no_grad():  # no location correction and the scale SCALE at the start
            self.out.weight[LEVELS:].zero_()
            self.out.bias[LEVELS:].zero_()
        self.register_buffer("amplitudes", torch.from_numpy(AMPLITUDES.copy()), persistent=False)
        self.register_buffer("log_widths", torch.from_numpy(LOG_WIDTHS.copy()), persistent=False)

    def first(self, cond: torch.Tensor) -> torch.Tensor:
        """The first layer's conditioning part, which needs no past samples: (..., H + 1)."""
        return self.cond(cond)

    def rest(self, h: torch.Tensor, past: torch.Tensor | None, prev: torch.Tensor | None = None) -> torch.Tensor:
        if self.past is not None:
            h = h + self.past(past)
        for k in range(self.embed.shape[0]):
            h = h + self.embed[k][prev[..., k]]
        loc, h = h[..., -1:], F.relu(h[..., :-1])
        for layer in self.hidden:
            h = F.relu(layer(h))
        o = self.out(h)
        mu = loc + o[..., LEVELS:LEVELS + 1]
        b = SCALE * torch.exp((LOG_SCALE_GAIN * o[..., LEVELS + 1:]).clamp(-12.0, 6.0))
        return o[..., :LEVELS] + self.log_widths - (self.amplitudes - mu).abs() / b

    def forward(self, cond: torch.Tensor, past: torch.Tensor | None, prev: torch.Tensor | None = None) -> torch.Tensor:
        return self.rest(self.first(cond), past, prev)


def previous_levels(levels: torch.Tensor, context: int) -> torch.Tensor:
    """(B, N, context) of mu-law levels (B, N): for each t, the levels of samples t-1 .. t-context
    (silence before the first)."""
    silence = int(mu_law_encode(torch.zeros(())))
    padded = F.pad(levels, (context, 0), value=silence)  # (B, context + N)
    N = levels.shape[1]
    return torch.stack([padded[:, context - k: context - k + N] for k in range(1, context + 1)], -1)


def past_inputs(prev: torch.Tensor) -> torch.Tensor:
    """(..., 2 * K) of previous levels (..., K): their amplitudes, then their levels scaled to [-1, 1]."""
    return torch.cat([mu_law_decode(prev), prev.float() / (LEVELS - 1) * 2 - 1], -1)


class Codec(nn.Module):
    """The codec's interface: encode (B, N) -> codes (B, n_q, F); decode codes -> (B, F * hop);
    sample_bits(wav, codes) -> (B,) bits of the samples given the codes; sample(codes) draws
    waveforms from the per-sample head."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = c = config
        self.sample_rate, self.hop, self.n_q, self.codebook_size = c.sample_rate, c.hop, c.n_q, c.codebook_size
        self.encoder = Encoder(c)
        self.quantizer = ResidualVQ(c.n_q, c.codebook_size, c.code_dim, True, c.ema_decay, c.dead_threshold,
                                    seed_codebooks=True)
        self.decoder = Decoder(c)
        self.head = SampleHead(c)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def _device(self) -> torch.device:
        return self.decoder.out.weight.device

    def check_wav(self, wav: torch.Tensor, what: str = "waveform") -> torch.Tensor:
        """wav as (B, N) float32 on the model's device, N padded with silence to a multiple of the
        hop; DataError for a wrong shape, no samples or non-finite values."""
        if not isinstance(wav, torch.Tensor):
            wav = torch.as_tensor(np.asarray(wav, dtype=np.float32))
        if wav.dim() != 2:
            raise DataError(f"{what}: expected a batch of waveforms (B, N), got shape {tuple(wav.shape)}")
        if wav.shape[1] == 0:
            raise DataError(f"{what}: the waveform holds no samples")
        if not torch.isfinite(wav).all():
            raise DataError(f"{what}: the waveform holds NaN or infinite samples")
        pad = (-wav.shape[1]) % self.hop
        return F.pad(wav.float(), (0, pad)).to(self._device())

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 3 or codes.shape[1] < 1 or codes.shape[1] > self.n_q:
            raise DataError(f"codes: expected (B, n_q <= {self.n_q}, frames), got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise DataError(f"codes: values must be in [0, {self.codebook_size})")
        return codes.long().to(self._device())

    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> dict:
        """The training pass over wav (B, N), N a multiple of the hop: {"wav": the decoder's waveform
        (B, N), "feats" (B, channels, N), "codes" (B, n, F), "stats" of the quantiser, "inputs":
        each level's residual input (for its EMA update)}."""
        z = self.encoder(wav)
        z_q, codes, stats, inputs = self.quantizer.quantize(z, n_q)
        out, feats = self.decoder(z_q)
        return {"wav": out, "feats": feats, "codes": codes, "stats": stats, "inputs": inputs}

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Codes (B, n_q, ceil(N / hop)) long of waveforms wav (B, N) at sample_rate in [-1, 1]."""
        return self.quantizer.encode(self.encoder(self.check_wav(wav)))[0]

    def _decode(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.quantizer.decode(self.check_codes(codes)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, F * hop) in [-1, 1] of codes (B, n, F), n <= n_q (fewer levels: a coarser copy)."""
        return self._decode(codes)[0].clamp(-1.0, 1.0)

    def head_logits(self, out: torch.Tensor, feats: torch.Tensor, levels: torch.Tensor,
                    positions: torch.Tensor | None = None) -> torch.Tensor:
        """The head's logits (B, P, 256) at positions (B, P) (all N: None) of the decoder's waveform
        out (B, N) and features (B, C, N), given the true mu-law levels (B, N) (teacher forcing)."""
        c = self.config
        cond = torch.cat([feats, out[:, None]], 1).transpose(1, 2)  # (B, N, C + 1)
        prev = previous_levels(levels, c.context)  # (B, N, K)
        if positions is not None:
            cond = torch.gather(cond, 1, positions[..., None].expand(-1, -1, cond.shape[-1]))
            prev = torch.gather(prev, 1, positions[..., None].expand(-1, -1, prev.shape[-1]))
        return self.head(cond, past_inputs(prev) if c.context else None, prev[..., :c.embed_context])

    @torch.no_grad()
    def sample_bits(self, wav: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """(B,) float64: sum over the first F * hop samples of wav (B, N >= F * hop) of
        -log2 p(x_t | x_<t, codes), x_t the 8-bit mu-law level, for codes (B, n, F)."""
        codes = self.check_codes(codes)
        n = codes.shape[2] * self.hop
        if wav.shape[-1] < n:
            raise DataError(f"sample_bits: {wav.shape[-1]} samples, the codes span {n}")
        levels = mu_law_encode(self.check_wav(wav[:, :n]))
        out, feats = self._decode(codes)
        total = torch.zeros(len(codes), dtype=torch.float64, device=levels.device)
        for start in range(0, n, 16384):  # logits of 256 per sample: a chunk at a time
            pos = torch.arange(start, min(start + 16384, n), device=levels.device).expand(len(codes), -1)
            logp = torch.log_softmax(self.head_logits(out, feats, levels, pos).float(), -1)
            nll = -torch.gather(logp, 2, torch.gather(levels, 1, pos)[..., None])[..., 0]
            total += nll.double().sum(1)
        return total / math.log(2)

    @torch.no_grad()
    def sample(self, codes: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Waveforms (B, F * hop) drawn from the per-sample head given codes (B, n, F), one sample at
        a time (exact ancestral sampling; temperature scales the logits, 0 takes the likeliest)."""
        out, feats = self._decode(codes)
        cond = torch.cat([feats, out[:, None]], 1).transpose(1, 2)  # (B, N, C + 1)
        first = self.head.first(cond).float().cpu().numpy()  # (B, N, H + 1)
        weights = [(m.weight.detach().float().cpu().numpy().T, m.bias.detach().float().cpu().numpy())
                   for m in (*self.head.hidden, self.head.out)]
        past_w = None if self.head.past is None else self.head.past.weight.detach().float().cpu().numpy().T  # (2K, H)
        embed = self.head.embed.detach().float().cpu().numpy()  # (E, 256, H)
        seed = int(torch.randint(2 ** 31, (), generator=generator))
        return torch.from_numpy(_draw(first, past_w, embed, weights, self.config.context, temperature, seed)).to(out.device)


def _draw(first: np.ndarray, past_w: np.ndarray | None, embed: np.ndarray, weights: list, context: int,
          temperature: float, seed: int) -> np.ndarray:
    """The per-sample loop of Codec.sample (SampleHead.rest in NumPy): first (B, N, H + 1) -> samples
    (B, N) float32."""
    B, N, _ = first.shape
    rng = np.random.default_rng(seed)
    silence = int(mu_law_encode(np.zeros(())))
    table = np.concatenate([mu_law_decode(np.arange(LEVELS))[:, None],
                            (np.arange(LEVELS, dtype=np.float32) / (LEVELS - 1) * 2 - 1)[:, None]], 1)  # (256, 2)
    prev = np.full((B, context), silence, dtype=np.int64)  # nearest first
    levels = np.empty((B, N), dtype=np.int64)
    rows = np.arange(B)
    for t in range(N):
        h = first[:, t]
        if past_w is not None:
            feats = table[prev]  # (B, K, 2): amplitude, scaled level
            h = h + np.concatenate([feats[..., 0], feats[..., 1]], 1) @ past_w
        for k in range(len(embed)):
            h = h + embed[k, prev[:, k]]
        loc, h = h[:, -1], h[:, :-1]
        for w, b in weights:
            h = np.maximum(h, 0.0) @ w + b  # the last gives (B, 258)
        mu = loc + h[:, LEVELS]
        scale = SCALE * np.exp(np.clip(LOG_SCALE_GAIN * h[:, LEVELS + 1], -12.0, 6.0))
        logits = h[:, :LEVELS] + LOG_WIDTHS - np.abs(AMPLITUDES - mu[:, None]) / scale[:, None]
        if temperature <= 0:
            level = logits.argmax(1)
        else:
            z = logits / temperature
            p = np.exp(z - z.max(1, keepdims=True))
            c = np.cumsum(p, 1)
            level = (c < rng.random(B)[:, None] * c[:, -1:]).sum(1)
        levels[rows, t] = level
        if context:
            prev[:, 1:] = prev[:, :-1]
            prev[:, 0] = level
    return mu_law_decode(levels)
