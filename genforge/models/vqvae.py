"""Vector-quantised VAE, the image tokenizer of DALL-E-style generators (van den Oord et al. 2017,
"Neural Discrete Representation Learning").

A convolutional encoder maps images to a grid of code_dim vectors (image_size / downsample on a
side), each replaced by its nearest codebook entry; the decoder maps the grid back to pixels. The
quantiser (nearest code, straight-through gradient, EMA codebook or codebook loss, dead-code
restarts) is nn/vq.py's VectorQuantizer, shared with the audio codec; its tensors are saved under
`quantizer.`, and checkpoints of the earlier layout (`codebook`, `cluster_size`, `embed_sum`,
`steps` on the VQ-VAE itself) load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.models.vae import ResBlock
from genforge.nn.vq import VectorQuantizer


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


# state-dict keys of checkpoints written before the quantiser moved into nn/vq.py (`quantizer.`)
OLD_LAYOUT = ("codebook", "cluster_size", "embed_sum", "steps")


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = c = config
        w, D = c.width, c.code_dim
        down = [nn.Conv2d(c.channels, w, 4, 2, 1)]
        up = [nn.ConvTranspose2d(w, c.channels, 4, 2, 1)]
        if c.downsample == 4:
            down += [nn.ReLU(), nn.Conv2d(w, w, 4, 2, 1)]
            up = [nn.ConvTranspose2d(w, w, 4, 2, 1), nn.ReLU(), *up]
        self.encoder = nn.Sequential(*down, *[ResBlock(w) for _ in range(c.blocks)], nn.ReLU(), nn.Conv2d(w, D, 1))
        self.decoder = nn.Sequential(nn.Conv2d(D, w, 3, 1, 1), *[ResBlock(w) for _ in range(c.blocks)], nn.ReLU(), *up)
        self.quantizer = VectorQuantizer(c.codebook_size, D, c.ema, c.ema_decay, c.dead_threshold)
        self.register_load_state_dict_pre_hook(_from_old_layout)

    @property
    def codebook(self) -> torch.Tensor:
        """The quantiser's (K, D) codebook."""
        return self.quantizer.codebook

    @property
    def grid(self) -> int:
        """Codes on a side of the code grid."""
        return self.config.image_size // self.config.downsample

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_e (B, D, h, w), codes (B, h, w)) for images x (B, C, H, W) in [0, 1]."""
        z_e = self.encoder(x)
        return z_e, self.quantizer.nearest(z_e)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """The index of the nearest codebook entry of each vector of z_e (B, D, h, w): (B, h, w)."""
        return self.quantizer.nearest(z_e)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of codes (B, h, w) as a (B, D, h, w) grid."""
        return self.quantizer.lookup(codes)

    def decode_logits(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoder logits (B, C, H, W) of a quantised grid z_q (B, D, h, w)."""
        return self.decoder(z_q)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] of code grids (B, h, w)."""
        return torch.sigmoid(self.decode_logits(self.quantizer.lookup(codes)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(decoder logits (B, C, H, W), z_e, codes, quantiser stats) for images x in [0, 1]."""
        z_e = self.encoder(x)
        z_q, codes, stats = self.quantizer.quantize(z_e)
        return self.decode_logits(z_q), z_e, codes, stats

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
        return self.decode_codes(codes.to(self.quantizer.codebook.device))


def _from_old_layout(module, state_dict, prefix, *args) -> None:
    """Load a checkpoint of the layout before nn/vq.py: its quantiser tensors sat on the VQ-VAE itself."""
    for key in OLD_LAYOUT:
        if prefix + key in state_dict and prefix + "quantizer." + key not in state_dict:
            state_dict[prefix + "quantizer." + key] = state_dict.pop(prefix + key)
