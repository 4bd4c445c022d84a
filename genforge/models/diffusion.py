"""A text-conditioned diffusion transformer (DiT, Peebles & Xie 2023, "Scalable Diffusion Models
with Transformers"), the denoiser of genforge's diffusion / flow-matching text-to-image family.

The noisy image is cut into patch x patch patches (a strided convolution), each a token with a
fixed 2-D sine-cosine position (DiT's, from MAE); every block is adaLN-Zero self-attention and MLP
(DiT's best variant: shift, scale and a zero-initialised gate per branch, so each block starts as
the identity) conditioned on the time step plus the caption's pooled state (as SD3 adds its pooled
text), with cross-attention to the caption's states between them (as in PixArt-alpha, Chen et al.
2023). The final layer maps each token back to its patch.

Both choices decide whether the caption is followed at all. At the first sampler steps the patch
tokens are pure noise, so a cross-attention query carries only its position: a learned position
table, initialised small, leaves the queries noise and the layout uncontrolled (samples were
patches in the right colours, scattered), while a fixed sine-cosine one gives every patch a
distinct query from step one. The pooled caption reaches every token through the modulation,
which cross-attention alone does not do while the queries are noise. The caption
states come from the one text-conditioning interface (models/text_cond.py), which also makes
the unconditional model for classifier-free guidance.

What the network predicts (`prediction`) and the noise process are the objective's and the
sampler's business (objectives/diffusion.py, sample/diffusion.py): the model maps
(x_t (B, C, H, W) in model space [-1, 1], t (B,) as a float "time" in [0, 1000), caption states)
to a tensor of x_t's shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError
from genforge.models.encoder import EncoderConfig
from genforge.models.text_cond import TextConditioner, text_tower_config
from genforge.nn.bidirectional import SelfAttention
from genforge.nn.cross_attention import CrossAttention
from genforge.nn.mlp import MLP

SAMPLERS = ("euler", "ddim", "ddpm")


@dataclass
class DiffusionConfig:
    image_size: int = 0  # 0: the data's
    channels: int = 0  # 0: the data's
    patch: int = 4  # tokens are patch x patch pixels
    n_layer: int = 6
    n_head: int = 4
    n_embd: int = 128
    mlp_ratio: int = 4
    # the text tower (models/text_cond.py); text_vocab, text_len and text_pad come from the data
    text_vocab: int = 0
    text_len: int = 0
    text_pad: int = 0
    text_layers: int = 2
    text_width: int = 128
    text_heads: int = 4
    text_encoder: str = ""  # a genforge encoder checkpoint to use frozen ("": train a tower with the model)
    text_encoder_config: dict = field(default_factory=dict)  # that encoder's config, filled in by the run
    cond_dropout: float = 0.1  # captions dropped in training: the unconditional model of guidance
    # the process: rectified flow (velocity), or DDPM with an eps / v / x0 prediction
    prediction: Literal["flow", "eps", "v", "x0"] = "flow"
    schedule: Literal["cosine", "linear"] = "cosine"  # DDPM's betas
    train_steps: int = 1000  # DDPM's T
    # sampling defaults (each one can be given per call)
    sampler: Literal["euler", "ddim", "ddpm", ""] = ""  # "": euler for flow, ddim otherwise
    steps: int = 50
    guidance: float = 3.0

    def __post_init__(self):
        if self.image_size and self.image_size % self.patch:
            raise ConfigError(f"model.image_size={self.image_size} must be a multiple of model.patch={self.patch}")
        if self.n_embd % self.n_head or self.text_width % self.text_heads:
            raise ConfigError(f"model.n_head={self.n_head} must divide model.n_embd={self.n_embd} and "
                              f"model.text_heads={self.text_heads} model.text_width={self.text_width}")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"model.cond_dropout={self.cond_dropout} must be in [0, 1)")
        if self.prediction == "flow" and self.sampler in ("ddim", "ddpm"):
            raise ConfigError(f"model.sampler={self.sampler} samples a DDPM; model.prediction=flow needs euler")
        if self.prediction != "flow" and self.sampler == "euler":
            raise ConfigError(f"model.sampler=euler integrates a flow; model.prediction={self.prediction} needs ddim or ddpm")
        check_sampling(self, self.steps, self.guidance)

    @property
    def default_sampler(self) -> str:
        return self.sampler or ("euler" if self.prediction == "flow" else "ddim")


def check_sampling(cfg: DiffusionConfig, steps: int, guidance: float) -> None:
    """ConfigError unless steps and guidance are in range for this model."""
    top = 1000 if cfg.prediction == "flow" else cfg.train_steps
    if not 1 <= steps <= top:
        raise ConfigError(f"steps={steps} must be in 1..{top}")
    if not 0 <= guidance <= 30:
        raise ConfigError(f"guidance={guidance} must be in [0, 30] (1: no guidance; 3-7 is typical)")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings (B, dim) of float times t (B,) (the Transformer's, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def sincos_positions(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings (grid * grid, dim), rows then columns: half the
    channels encode the row, half the column (MAE's and DiT's)."""
    if dim % 4:
        raise ConfigError(f"model.n_embd={dim} must be a multiple of 4 (2-D sine-cosine positions)")
    pos = torch.arange(grid, dtype=torch.float64)
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    one = torch.cat([torch.sin(pos[:, None] * freqs), torch.cos(pos[:, None] * freqs)], 1)  # (grid, dim/2)
    rows = one[:, None].expand(grid, grid, dim // 2)
    cols = one[None, :].expand(grid, grid, dim // 2)
    return torch.cat([rows, cols], -1).reshape(grid * grid, dim).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        C = cfg.n_embd
        self.ln_1 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(C, cfg.n_head)
        self.ln_x = nn.LayerNorm(C, eps=1e-6)
        self.cross = CrossAttention(C, cfg.n_head)
        self.ln_2 = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(C, cfg.mlp_ratio * C, True)
        self.ada = nn.Linear(C, 6 * C)  # shift, scale, gate of attention and of the MLP

    def forward(self, x: torch.Tensor, c: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) patch tokens; c (B, C) the time and pooled caption; text (B, S, C), mask (B, S)."""
        s1, g1, a1, s2, g2, a2 = self.ada(F.silu(c)).chunk(6, -1)  # (B, C) each
        x = x + a1[:, None] * self.attn(modulate(self.ln_1(x), s1, g1))
        x = x + self.cross(self.ln_x(x), text, mask)
        return x + a2[:, None] * self.mlp(modulate(self.ln_2(x), s2, g2))


class DiT(nn.Module):
    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = c = config
        if not (c.image_size and c.channels and c.text_vocab and c.text_len):
            raise ConfigError("model.image_size, model.channels, model.text_vocab and model.text_len must be set "
                              "(a training run fills them in from the data)")
        C, p = c.n_embd, c.patch
        self.grid = c.image_size // p
        self.patchify = nn.Conv2d(c.channels, C, p, p)
        self.register_buffer("pos", sincos_positions(self.grid, C)[None], persistent=False)
        self.time = nn.Sequential(nn.Linear(C, C), nn.SiLU(), nn.Linear(C, C))
        self.text = TextConditioner(self.tower_config(), C, c.text_pad, frozen=bool(c.text_encoder_config))
        self.pooled = nn.Sequential(nn.Linear(C, C), nn.SiLU(), nn.Linear(C, C))  # the caption's mean state
        self.h = nn.ModuleList(DiTBlock(c) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(C, elementwise_affine=False, eps=1e-6)
        self.ada_f = nn.Linear(C, 2 * C)
        self.head = nn.Linear(C, p * p * c.channels)
        self._init_weights()

    def tower_config(self) -> EncoderConfig:
        c = self.config
        if c.text_encoder_config:
            return EncoderConfig(**c.text_encoder_config)
        return text_tower_config(c.text_vocab, c.text_len, c.text_width, c.text_layers, c.text_heads, c.text_pad)

    def _init_weights(self) -> None:
        for block in self.h:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.ada.weight)
            nn.init.zeros_(block.ada.bias)
        for m in (self.ada_f, self.head):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def condition(self, ids: torch.Tensor, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(states, mask) of caption ids (B, T): what forward cross-attends to."""
        return self.text(ids, drop)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The prediction (B, C, H, W) at x_t (B, C, H, W), times t (B,) in [0, 1000), caption
        states (states (B, S, C), mask (B, S)) from `condition`."""
        B, _, H, W = x.shape
        p, g = self.config.patch, self.grid
        h = self.patchify(x).flatten(2).transpose(1, 2) + self.pos  # (B, N, C)
        states, mask = text
        states = states.to(h.dtype)
        weights = mask.to(h.dtype)[..., None]  # the dropped (unconditional) rows pool the null state alone
        pooled = (states * weights).sum(1) / weights.sum(1)
        c = self.time(timestep_embedding(t, self.config.n_embd).to(h.dtype)) + self.pooled(pooled)  # (B, C)
        for block in self.h:
            h = block(h, c, states, mask)
        shift, scale = self.ada_f(F.silu(c)).chunk(2, -1)
        out = self.head(modulate(self.ln_f(h), shift, scale))  # (B, N, p*p*C)
        out = out.view(B, g, g, p, p, -1).permute(0, 5, 1, 3, 2, 4)  # (B, C, g, p, g, p)
        return out.reshape(B, -1, H, W)
