"""An AudioLM / MusicGen-style waveform model: genforge's GPT (models/gpt.py) over the tokens of a
frozen neural audio codec (models/codec.py), whose residual-VQ codes (n_q levels per frame) are
flattened frame by frame into one stream (Borsos et al. 2022, "AudioLM"; Copet et al. 2023,
"Simple and Controllable Music Generation", section 2.2, the "flattening" pattern):

    [EOT, c(0,0), c(1,0), ..., c(n_q-1,0), c(0,1), ..., c(n_q-1,F-1), EOT, next piece ...]

Level q's code k is token q * codebook_size + k, and EOT (the boundary between pieces, and the
first token of every generation) is n_q * codebook_size. A token names its own level, so a window
may start anywhere in a frame: training reads random windows of the token shards (the one token
loop, TokenBatches), and the sampler draws each token among its level's codes only. MusicGen's
delay pattern would predict the n_q levels of a frame in one step (n_q heads) at a cost in bits;
flattening keeps the model the plain GPT and every level conditioned on the levels below it.

The codec is frozen (no gradients, always in eval mode) and its weights are saved with the model
(the `codec` submodule), so a checkpoint encodes prompts and decodes its tokens without the
codec's own, as models/dalle.py bundles its VQ-VAE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.models.codec import Codec, CodecConfig
from genforge.models.gpt import GPT, GPTConfig, KVCache

ENCODE_SECONDS = 30  # long clips are encoded in pieces of this length (whole frames), so memory stays flat


@dataclass
class AudioLMConfig:
    # the codec: a codec checkpoint (say runs/codec_chorales/latest), its model config copied in by
    # the run (its weights are this model's `codec` submodule)
    codec: str = ""
    codec_config: dict = field(default_factory=dict)
    # the GPT over the flattened codes; block_size counts tokens (n_q per frame)
    flavour: Literal["gpt2", "llama"] = "gpt2"
    block_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    # sampling defaults (each one can be given per call)
    temperature: float = 1.0
    top_k: int = 0  # 0: all codes of the level

    def __post_init__(self):
        if not 0 <= self.temperature <= 10:
            raise ConfigError(f"model.temperature={self.temperature} must be in [0, 10] (0: greedy)")
        if self.top_k < 0:
            raise ConfigError(f"model.top_k={self.top_k} must be >= 0 (0: all codes)")


class AudioLM(nn.Module):
    def __init__(self, config: AudioLMConfig):
        super().__init__()
        self.config = c = config
        if not c.codec_config:
            raise ConfigError("model.codec must name a codec checkpoint (train one first: "
                              "`genforge train codec/chorales`, then model.codec=runs/codec_chorales/latest)")
        self.codec = Codec(CodecConfig(**c.codec_config))
        self.codec.requires_grad_(False)
        if c.block_size < self.n_q + 1:
            raise ConfigError(f"model.block_size={c.block_size} must hold at least one frame: "
                              f"EOT and {self.n_q} codes")
        self.gpt = GPT(GPTConfig(flavour=c.flavour, vocab_size=self.eot + 1, block_size=c.block_size,
                                 n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, dropout=c.dropout))

    @property
    def n_q(self) -> int:
        return self.codec.config.n_q

    @property
    def codebook_size(self) -> int:
        return self.codec.config.codebook_size

    @property
    def sample_rate(self) -> int:
        return self.codec.config.sample_rate

    @property
    def hop(self) -> int:
        return self.codec.config.hop

    @property
    def eot(self) -> int:
        """The token between pieces (and before the first frame of a generation)."""
        return self.n_q * self.codebook_size

    @property
    def frames_in_context(self) -> int:
        """Whole frames the context holds after its EOT."""
        return (self.config.block_size - 1) // self.n_q

    def train(self, mode: bool = True) -> AudioLM:
        super().train(mode)
        self.codec.eval()  # frozen: the codec is what it was trained to be, whatever the loop sets
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.gpt.parameters())

    def new_cache(self, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        return self.gpt.new_cache(batch, max_len, dtype)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> tuple[torch.Tensor, KVCache | None]:
        """Logits (B, T, vocab) of the token stream idx (B, T): the GPT's."""
        return self.gpt(idx, cache, pos)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """The codec's codes (B, n_q, F) of waveforms (B, N) at sample_rate."""
        return self.codec.encode(wav.float())

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, F * hop) of codes (B, n_q, F): the codec decoder's."""
        return self.codec.decode(codes).float()


def flatten(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Tokens (..., F * n_q) of codes (..., n_q, F): frame by frame, level q's code k as
    q * codebook_size + k."""
    n_q = codes.size(-2)
    levels = torch.arange(n_q, device=codes.device).unsqueeze(-1) * codebook_size  # (n_q, 1)
    return (codes + levels).transpose(-1, -2).flatten(-2)  # (..., F * n_q)


def unflatten(tokens: torch.Tensor, n_q: int, codebook_size: int) -> torch.Tensor:
    """Codes (..., n_q, F) of tokens (..., F * n_q) that start at a frame's first level; ValueError
    when the length is not whole frames or a token is not its position's level."""
    if tokens.size(-1) % n_q:
        raise ValueError(f"{tokens.size(-1)} tokens are not whole frames of {n_q} levels")
    frames = tokens.unflatten(-1, (-1, n_q)).transpose(-1, -2)  # (..., n_q, F)
    levels = torch.arange(n_q, device=tokens.device).unsqueeze(-1) * codebook_size  # (n_q, 1)
    codes = frames - levels
    if ((codes < 0) | (codes >= codebook_size)).any():
        raise ValueError("a token is not a code of its position's level")
    return codes


def encode_clip(model: AudioLM, wav: np.ndarray) -> np.ndarray:
    """The codes (n_q, F) of one clip (N,), F = ceil(N / hop) (the last frame padded with silence),
    encoded ENCODE_SECONDS at a time."""
    hop = model.hop
    step = max(1, ENCODE_SECONDS * model.sample_rate // hop) * hop
    padded = np.zeros(-(-len(wav) // hop) * hop, dtype=np.float32)
    padded[:len(wav)] = wav
    device = next(model.parameters()).device
    parts = []
    with torch.inference_mode():
        for start in range(0, len(padded), step):
            piece = torch.from_numpy(padded[start:start + step])[None].to(device)  # (1, n)
            parts.append(model.encode(piece)[0].cpu().numpy())  # (n_q, n / hop)
    return np.concatenate(parts, axis=1).astype(np.int64)
