"""Vector-quantised VAE, the image tokenizer of DALL-E-style generators (van den Oord et al. 2017,
"Neural Discrete Representation Learning"; EMA codebook updates as in its appendix A.1).

A convolutional encoder maps images to a grid of code_dim vectors (image_size / downsample on a
side), each replaced by its nearest codebook entry; the decoder maps the grid back to pixels. The
gradient passes the quantiser straight through (z_e + sg(z_q - z_e)). The codebook learns either
by its own loss ||sg(z_e) - e||^2 (ema=False, a Parameter) or as exponential moving averages of
the encoder outputs assigned to each code (ema=True, buffers: cluster sizes and embedding sums,
saved with the weights so resume is exact). Codes whose EMA cluster size falls below
`dead_threshold` are restarted from encoder outputs of the current batch (Dhariwal et al. 2020,
"Jukebox", sec. 3.1), chosen by a generator seeded from a step counter buffer, not the global RNG.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError
from genforge.models.vae import ResBlock


@dataclass
class VQVAEConfig:
    image_size: int = 0  # 0: the data's
    channels: int = 0  # 0: the data's
    num_classes: int = 0  # the data's classes (kept for sampling tools; the VQ-VAE is unconditional)
    width: int = 64  # channels of the convolutions
    blocks: int = 1  # residual blocks at the code resolution, both ways
    codebook_size: int = 256
    code_dim: int = 32
    downsample: int = 4  # 2 or 4: the code grid is image_size / downsample on a side
    beta: float = 0.25  # weight of the commitment loss ||z_e - sg(z_q)||^2
    ema: bool = True  # EMA codebook updates; False: the codebook loss ||sg(z_e) - e||^2 trains it
    ema_decay: float = 0.99
    dead_threshold: float = 1.0  # EMA cluster size below which a code is restarted (0: never)
    rec_loss: Literal["mse", "bce"] = "mse"  # reconstruction loss on [0, 1] images

    def __post_init__(self):
        if self.downsample not in (2, 4):
            raise ConfigError(f"model.downsample={self.downsample}: must be 2 or 4")
        if self.image_size % self.downsample:
            raise ConfigError(f"model.image_size={self.image_size} must be a multiple of model.downsample={self.downsample}")
        if self.codebook_size < 2 or self.code_dim < 1 or self.width < 1 or self.blocks < 0:
            raise ConfigError("model.codebook_size >= 2, model.code_dim >= 1, model.width >= 1 and model.blocks >= 0 "
                              "are required")
        if not 0 <= self.ema_decay < 1 or self.beta < 0 or self.dead_threshold < 0:
            raise ConfigError(f"model.ema_decay={self.ema_decay} must be in [0, 1), model.beta={self.beta} and "
                              f"model.dead_threshold={self.dead_threshold} >= 0")
        if self.rec_loss not in ("mse", "bce"):
            raise ConfigError(f"model.rec_loss={self.rec_loss!r}: expected mse or bce")


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = c = config
        w, K, D = c.width, c.codebook_size, c.code_dim
        down = [nn.Conv2d(c.channels, w, 4, 2, 1)]
        up = [nn.ConvTranspose2d(w, c.channels, 4, 2, 1)]
        if c.downsample == 4:
            down += [nn.ReLU(), nn.Conv2d(w, w, 4, 2, 1)]
            up = [nn.ConvTranspose2d(w, w, 4, 2, 1), nn.ReLU(), *up]
        self.encoder = nn.Sequential(*down, *[ResBlock(w) for _ in range(c.blocks)], nn.ReLU(), nn.Conv2d(w, D, 1))
        self.decoder = nn.Sequential(nn.Conv2d(D, w, 3, 1, 1), *[ResBlock(w) for _ in range(c.blocks)], nn.ReLU(), *up)
        codebook = torch.empty(K, D).uniform_(-1 / K, 1 / K)  # van den Oord et al.'s init
        if c.ema:
            self.register_buffer("codebook", codebook)  # (K, D) = embed_sum / cluster_size
            self.register_buffer("cluster_size", torch.ones(K))  # EMA of the number of vectors per code
            self.register_buffer("embed_sum", codebook.clone())  # (K, D) EMA of their sum
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # seeds the dead-code restarts
        else:
            self.codebook = nn.Parameter(codebook)

    @property
    def grid(self) -> int:
        """Codes on a side of the code grid."""
        return self.config.image_size // self.config.downsample

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_e (B, D, h, w), codes (B, h, w)) for images x (B, C, H, W) in [0, 1]."""
        z_e = self.encoder(x)
        return z_e, self.nearest(z_e)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """The index of the nearest codebook entry (squared Euclidean) of each vector: (B, h, w)."""
        B, D, h, w = z_e.shape
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, D).float()  # (B*h*w, D)
        e = self.codebook.detach().float()  # (K, D)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)  # (B*h*w, K)
        return dist.argmin(1).view(B, h, w)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of codes (B, h, w) as a (B, D, h, w) grid."""
        return F.embedding(codes, self.codebook).permute(0, 3, 1, 2)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(z_q with the straight-through gradient (B, D, h, w), codes (B, h, w), stats): stats holds
        `commit` ||z_e - sg(z_q)||^2 and `codebook` ||sg(z_e) - z_q||^2, each a mean over elements."""
        codes = self.nearest(z_e)
        z_q = self.lookup(codes).to(z_e.dtype)
        stats = {"commit": F.mse_loss(z_e.float(), z_q.detach().float()),
                 "codebook": F.mse_loss(z_q.float(), z_e.detach().float())}
        return z_e + (z_q - z_e).detach(), codes, stats

    def decode_logits(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoder logits (B, C, H, W) of a quantised grid z_q (B, D, h, w)."""
        return self.decoder(z_q)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] of code grids (B, h, w)."""
        return torch.sigmoid(self.decode_logits(self.lookup(codes)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(decoder logits (B, C, H, W), z_e, codes, quantiser stats) for images x in [0, 1]."""
        z_e = self.encoder(x)
        z_q, codes, stats = self.quantize(z_e)
        return self.decode_logits(z_q), z_e, codes, stats

    @torch.no_grad()
    def update_codebook(self, z_e: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of the codebook towards the mean of the encoder outputs z_e (B, D, h, w)
        assigned to each code (van den Oord et al., eqs. 6-8, with Laplace smoothing of the cluster
        sizes as in Sonnet's VectorQuantizerEMA), then restart dead codes from z_e."""
        c = self.config
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, c.code_dim).float()  # (N, D)
        onehot = F.one_hot(codes.reshape(-1), c.codebook_size).float()  # (N, K)
        with torch.autocast(flat.device.type, enabled=False):  # float32 sums, whatever the loop's precision
            self._ema_step(flat, onehot)
        self.restart_dead(flat)
        self.steps.add_(1)

    def _ema_step(self, flat: torch.Tensor, onehot: torch.Tensor) -> None:
        K, d = self.config.codebook_size, self.config.ema_decay
        self.cluster_size.mul_(d).add_(onehot.sum(0), alpha=1 - d)
        self.embed_sum.mul_(d).add_(onehot.t() @ flat, alpha=1 - d)
        n, eps = self.cluster_size.sum(), 1e-5
        size = (self.cluster_size + eps) / (n + K * eps) * n  # never zero
        self.codebook.copy_(self.embed_sum / size[:, None])

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor) -> torch.Tensor:
        """Move codes whose EMA cluster size is below dead_threshold onto encoder outputs drawn
        from flat (N, D), with cluster size dead_threshold; returns the restarted codes' indices."""
        dead = (self.cluster_size < self.config.dead_threshold).nonzero().squeeze(1)
        if len(dead):
            gen = torch.Generator().manual_seed(int(self.steps))
            pick = torch.randint(len(flat), (len(dead),), generator=gen).to(flat.device)
            self.codebook[dead] = flat[pick]
            self.cluster_size[dead] = self.config.dead_threshold
            self.embed_sum[dead] = flat[pick] * self.config.dead_threshold
        return dead

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images x (B, C, H, W) in [0, 1] through the codes and back, in [0, 1]."""
        return self.decode_codes(self.encode(x)[1])

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from uniformly random code grids: the baseline
        with no prior over codes (a DALL-E-style prior over the codes replaces it); cond and
        truncation are ignored."""
        codes = torch.randint(self.config.codebook_size, (n, self.grid, self.grid), generator=generator)
        return self.decode_codes(codes.to(self.codebook.device))
