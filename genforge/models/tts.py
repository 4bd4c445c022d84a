"""A non-autoregressive acoustic model, phonemes -> log-mel frames (FastSpeech, Ren et al. 2019;
FastSpeech 2, Ren et al. 2021, without its pitch and energy predictors).

Phoneme embeddings go through a stack of feed-forward Transformer blocks (self-attention, then a
1-D convolution FFN with kernels 9 and 1 as in FastSpeech 2, pre-norm); the voice's embedding is
added; a duration predictor (two conv + layer-norm layers, FastSpeech sec. 3.3) gives each
phoneme's log(1 + frames); the length regulator repeats each phoneme's vector for its frames
(the teacher's durations while training, the predicted ones, times 1/speed, when speaking); a
second block stack turns frames into normalised log-mel bands.

The inventory of phonemes (espeak-ng mnemonics) and the voices live in the config, so a checkpoint
reads text with the phonemiser alone. A neural vocoder may be bundled as the `vocoder` submodule
(model.vocoder_config, copied in by the runner from model.vocoder), otherwise Griffin-Lim speaks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError
from genforge.models.vocoder import VocoderConfig, VocosGenerator
from genforge.nn.bidirectional import SelfAttention


@dataclass
class TTSConfig:
    phonemes: list[str] = field(default_factory=list)  # the inventory (id 0 is padding, i + 1 is phonemes[i]); from the data
    voices: list[str] = field(default_factory=list)  # voice names (voice id i is voices[i]); from the data
    accents: list[str] = field(default_factory=list)  # per voice, the espeak voice that reads its text into phonemes
    sample_rate: int = 22050  # 16000, 22050 or 24000 (genforge/nn/mel.py's presets)
    n_mels: int = 80
    hop_length: int = 256
    n_embd: int = 192
    n_head: int = 2
    n_enc_layer: int = 4
    n_dec_layer: int = 4
    conv_kernel: int = 9  # the FFN's first convolution
    ffn_mult: int = 4
    dur_filter: int = 256
    dur_kernel: int = 3
    dropout: float = 0.1
    init: str = ""  # a trained speech checkpoint to start from (fine-tuning to a new voice)
    vocoder: str = ""  # a trained vocoder checkpoint to bundle (genforge train vocoder/espeak): copied in, frozen
    vocoder_config: dict = field(default_factory=dict)  # its model config, filled from `vocoder` by the runner

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ConfigError(f"model.n_head={self.n_head} must divide n_embd={self.n_embd}")
        for key in ("n_embd", "n_head", "n_enc_layer", "n_dec_layer", "conv_kernel", "dur_filter", "dur_kernel", "n_mels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.conv_kernel % 2 == 0 or self.dur_kernel % 2 == 0:
            raise ConfigError(f"model.conv_kernel={self.conv_kernel}, model.dur_kernel={self.dur_kernel} must be odd")
        if self.sample_rate not in (16000, 22050, 24000):
            raise ConfigError(f"model.sample_rate={self.sample_rate}: expected 16000, 22050 or 24000")
        if self.accents and len(self.accents) != len(self.voices):
            raise ConfigError(f"model.accents: {len(self.accents)} for {len(self.voices)} voices")


def sinusoids(T: int, C: int, device) -> torch.Tensor:
    """(T, C) sinusoidal positions (Vaswani et al. 2017, sec. 3.5)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, C, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / C))
    pe = torch.zeros(T, C, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


class ConvFFN(nn.Module):
    def __init__(self, c: TTSConfig):
        super().__init__()
        self.c_fc = nn.Conv1d(c.n_embd, c.ffn_mult * c.n_embd, c.conv_kernel, padding=c.conv_kernel // 2)
        self.c_proj = nn.Conv1d(c.ffn_mult * c.n_embd, c.n_embd, 1)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = (x * mask[..., None]).transpose(1, 2)  # (B, C, T); padding reads as zeros
        return self.dropout(self.c_proj(F.relu(self.c_fc(x))).transpose(1, 2))


class FFTBlock(nn.Module):
    """A feed-forward Transformer block (FastSpeech fig. 1b), pre-norm."""

    def __init__(self, c: TTSConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(c.n_embd), nn.LayerNorm(c.n_embd)
        self.attn = SelfAttention(c.n_embd, c.n_head, dropout=c.dropout)
        self.ffn = ConvFFN(c)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.ffn(self.ln_2(x), mask)


class DurationPredictor(nn.Module):
    """log(1 + frames) per phoneme (FastSpeech sec. 3.3)."""

    def __init__(self, c: TTSConfig):
        super().__init__()
        k = c.dur_kernel
        self.conv = nn.ModuleList([nn.Conv1d(c.n_embd, c.dur_filter, k, padding=k // 2),
                                   nn.Conv1d(c.dur_filter, c.dur_filter, k, padding=k // 2)])
        self.ln = nn.ModuleList([nn.LayerNorm(c.dur_filter), nn.LayerNorm(c.dur_filter)])
        self.dropout = nn.Dropout(c.dropout)
        self.proj = nn.Linear(c.dur_filter, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, ln in zip(self.conv, self.ln):
            x = (x * mask[..., None]).transpose(1, 2)
            x = self.dropout(ln(F.relu(conv(x)).transpose(1, 2)))
        return self.proj(x).squeeze(-1) * mask  # (B, P)


def length_regulate(h: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (B, T, C), frame mask (B, T)): phoneme i's vector repeated durations[b, i] times,
    T the longest total; the mask's row b has durations[b].sum() True entries."""
    B, P, C = h.shape
    lengths = durations.sum(1)  # (B,)
    T = max(int(lengths.max()), 1)
    # the phoneme of each frame: the number of phoneme ends at or before it
    ends = durations.cumsum(1)  # (B, P)
    frames = torch.arange(T, device=h.device)
    index = (frames[None, :, None] >= ends[:, None, :]).sum(-1).clamp(max=P - 1)  # (B, T)
    out = torch.gather(h, 1, index[..., None].expand(B, T, C))
    mask = frames[None, :] < lengths[:, None]
    return out * mask[..., None], mask


class AcousticModel(nn.Module):
    def __init__(self, config: TTSConfig):
        super().__init__()
        c = self.config = config
        self.phoneme_emb = nn.Embedding(len(c.phonemes) + 1, c.n_embd, padding_idx=0)
        self.voice_emb = nn.Embedding(max(len(c.voices), 1), c.n_embd)
        self.encoder = nn.ModuleList([FFTBlock(c) for _ in range(c.n_enc_layer)])
        self.duration = DurationPredictor(c)
        self.decoder = nn.ModuleList([FFTBlock(c) for _ in range(c.n_dec_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.mel_head = nn.Linear(c.n_embd, c.n_mels)
        # per-band statistics of the training log-mels: the decoder predicts (mel - mean) / std
        self.register_buffer("mel_mean", torch.zeros(c.n_mels))
        self.register_buffer("mel_std", torch.ones(c.n_mels))
        if c.vocoder_config:  # a bundled neural vocoder (frozen: the objective trains everything else)
            self.vocoder = VocosGenerator(VocoderConfig(**c.vocoder_config)).requires_grad_(False)

    def encode(self, phonemes: torch.Tensor, voice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(phoneme states (B, P, C), mask (B, P)) of phoneme ids (B, P) (0 is padding) in voices (B,)."""
        mask = phonemes != 0
        x = self.phoneme_emb(phonemes) + sinusoids(phonemes.shape[1], self.config.n_embd, phonemes.device)
        for block in self.encoder:
            x = block(x, mask)
        return x + self.voice_emb(voice)[:, None, :], mask

    def decode(self, h: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised log-mel (B, T, n_mels), frame mask (B, T)) of phoneme states and their frames."""
        x, mask = length_regulate(h, durations)
        x = x + sinusoids(x.shape[1], self.config.n_embd, x.device)
        for block in self.decoder:
            x = block(x, mask)
        return self.mel_head(self.ln_f(x)) * mask[..., None], mask

    def forward(self, phonemes: torch.Tensor, voice: torch.Tensor, durations: torch.Tensor):
        """Teacher-forced: (normalised log-mel (B, T, n_mels), predicted log(1 + frames) (B, P),
        frame mask (B, T), phoneme mask (B, P)) for the given durations (B, P)."""
        h, pmask = self.encode(phonemes, voice)
        log_dur = self.duration(h, pmask)
        mel, fmask = self.decode(h, durations * pmask)
        return mel, log_dur, fmask, pmask

    def predict_durations(self, h: torch.Tensor, mask: torch.Tensor, speed: float = 1.0) -> torch.Tensor:
        """Frames per phoneme (B, P): the predictor's, divided by speed, rounded, padding 0."""
        frames = torch.expm1(self.duration(h, mask)).clamp(min=0) / speed
        return torch.round(frames).long() * mask

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.mel_std + self.mel_mean

    @torch.no_grad()
    def synthesize(self, phonemes: torch.Tensor, voice: torch.Tensor, speed: float = 1.0,
                   durations: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """([log-mel (n_mels, T_b) per row], frames per phoneme (B, P)) of phoneme ids (B, P) in
        voices (B,); durations given replace the predicted ones."""
        h, mask = self.encode(phonemes, voice)
        if durations is None:
            durations = self.predict_durations(h, mask, speed)
            # a phoneme sequence always sounds: at least one frame where the predictor says none at all
            empty = durations.sum(1) == 0
            durations[empty, 0] = 1
        mel, fmask = self.decode(h, durations)
        mel = self.denormalize(mel)
        return [m[: int(n)].T for m, n in zip(mel, fmask.sum(1))], durations
