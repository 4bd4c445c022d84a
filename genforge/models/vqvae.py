"""Vector-quantised VAE, the image tokenizer of DALL-E-style generators (van den Oord et al. 2017,
"Neural Discrete Representation Learning").

A convolutional encoder maps images to a grid of code_dim vectors (image_size / downsample on a
side), each replaced by its nearest codebook entry; the decoder maps the grid back to pixels. The
quantiser (nearest code, straight-through gradient, EMA codebook or codebook loss, dead-code
restarts) is nn/vq.py's VectorQuantizer, shared with the audio codec; its tensors are saved under
`quantizer.`, and checkpoints of the earlier layout (`codebook`, `cluster_size`, `embed_sum`,
`steps` on the VQ-VAE itself) load unchanged.

With `streams: value_chroma` (RGB images) each image becomes two code grids on the same
image_size / downsample grid, so that no code ties a colour to a shape:
- value: each pixel's value (its max over RGB, HSV's V) divided by the peak value of its
  downsample x downsample patch (at least `chroma_floor`): a one-channel image that is the same
  for an object of any colour, encoded by the convolutional VQ-VAE (codebook_size entries);
- chroma: per patch, the patch's peak value times the value-weighted mean of rgb / max(rgb), the
  patch's colour at its brightest, quantised by a small EMA codebook of chroma_size RGB entries
  (seeded by k-means++ on the first training batch; no gradient reaches it).
The decoder is fixed: pixel = decoded value x its patch's chroma entry. Codes are then (B, h, w, 2)
(value, chroma) where the single stream's are (B, h, w). Grey images have no chroma: with one
channel the option is the single stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
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
    streams: Literal["single", "value_chroma"] = "single"  # value_chroma: colour-free value codes + chroma codes
    chroma_size: int = 32  # entries of the chroma codebook (streams=value_chroma)
    chroma_floor: float = 0.2  # the least patch peak a value is divided by (streams=value_chroma)

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
        if self.streams not in ("single", "value_chroma"):
            raise ConfigError(f"model.streams={self.streams!r}: expected single or value_chroma")
        if self.chroma_size < 2 or not 0 < self.chroma_floor <= 1:
            raise ConfigError(f"model.chroma_size={self.chroma_size} must be >= 2 and model.chroma_floor="
                              f"{self.chroma_floor} in (0, 1]")
        if self.streams == "value_chroma" and self.channels not in (0, 1, 3):
            raise ConfigError(f"model.streams=value_chroma needs RGB (or grey) images; the data has {self.channels} channels")


# state-dict keys of checkpoints written before the quantiser moved into nn/vq.py (`quantizer.`)
OLD_LAYOUT = ("codebook", "cluster_size", "embed_sum", "steps")


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = c = config
        w, D = c.width, c.code_dim
        self.split_streams = c.streams == "value_chroma" and c.channels == 3
        inner = 1 if self.split_streams else c.channels  # the channels the convolutions encode and decode
        down = [nn.Conv2d(inner, w, 4, 2, 1)]
        up = [nn.ConvTranspose2d(w, inner, 4, 2, 1)]
        if c.downsample == 4:
            down += [nn.ReLU(), nn.Conv2d(w, w, 4, 2, 1)]
            up = [nn.ConvTranspose2d(w, w, 4, 2, 1), nn.ReLU(), *up]
        self.encoder = nn.Sequential(*down, *[ResBlock(w) for _ in range(c.blocks)], nn.ReLU(), nn.Conv2d(w, D, 1))
        self.decoder = nn.Sequential(nn.Conv2d(D, w, 3, 1, 1), *[ResBlock(w) for _ in range(c.blocks)], nn.ReLU(), *up)
        self.quantizer = VectorQuantizer(c.codebook_size, D, c.ema, c.ema_decay, c.dead_threshold)
        # the chroma codebook: EMA only (its inputs are pixels, no gradient), no restarts (k-means++ seeds it)
        self.chroma = VectorQuantizer(c.chroma_size, 3, True, c.ema_decay, 0.0) if self.split_streams else None
        self.register_load_state_dict_pre_hook(_from_old_layout)

    @property
    def streams(self) -> int:
        """Codes per grid position: 2 (value, chroma) with streams=value_chroma on RGB, else 1."""
        return 2 if self.split_streams else 1

    @property
    def stream_sizes(self) -> tuple[int, ...]:
        """Each stream's codebook size: (codebook_size,) or (codebook_size, chroma_size)."""
        c = self.config
        return (c.codebook_size, c.chroma_size) if self.split_streams else (c.codebook_size,)

    @property
    def codebook(self) -> torch.Tensor:
        """The quantiser's (K, D) codebook."""
        return self.quantizer.codebook

    @property
    def grid(self) -> int:
        """Codes on a side of the code grid."""
        return self.config.image_size // self.config.downsample

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what the convolutions encode, chroma vectors (B, 3, h, w) or None) of images x
        (B, C, H, W) in [0, 1]: with two streams the value image (B, 1, H, W), each pixel's max
        over RGB over its patch's peak, and each patch's peak times the value-weighted mean of
        rgb / max(rgb); with one, x itself and None."""
        if not self.split_streams:
            return x, None
        p = self.config.downsample
        v = x.amax(1, keepdim=True)  # (B, 1, H, W)
        peak = F.max_pool2d(v, p).clamp_min(self.config.chroma_floor)  # (B, 1, h, w)
        value = (v / F.interpolate(peak, scale_factor=p, mode="nearest")).clamp(0, 1)
        weight = F.avg_pool2d(v, p)  # (B, 1, h, w)
        hue = F.avg_pool2d(x, p) / weight.clamp_min(1e-6)  # the mean of rgb / max(rgb) weighted by max(rgb)
        return value, torch.where(weight > 1e-6, peak * hue, torch.zeros_like(hue))

    def join(self, value: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) of value images (B, 1, H, W) and chroma vectors (B, 3, h, w)."""
        return (value * F.interpolate(chroma, scale_factor=self.config.downsample, mode="nearest")).clamp(0, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_e (B, D, h, w), codes) for images x (B, C, H, W) in [0, 1]; codes (B, h, w), or
        (B, h, w, 2) (value, chroma) with two streams."""
        inner, chroma = self.split(x)
        z_e = self.encoder(inner)
        codes = self.quantizer.nearest(z_e)
        if chroma is not None:
            codes = torch.stack([codes, self.chroma.nearest(chroma)], -1)
        return z_e, codes

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
        """Images (B, C, H, W) in [0, 1] of code grids, as encode gives them."""
        if not self.split_streams:
            return torch.sigmoid(self.decode_logits(self.quantizer.lookup(codes)))
        value = torch.sigmoid(self.decode_logits(self.quantizer.lookup(codes[..., 0])))
        return self.join(value, self.chroma.lookup(codes[..., 1]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(decoder logits of what the convolutions encode (split(x)[0]), z_e, its codes (B, h, w),
        quantiser stats) for images x in [0, 1]."""
        z_e = self.encoder(self.split(x)[0])
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
        codes = torch.stack([torch.randint(k, (n, self.grid, self.grid), generator=generator) for k in self.stream_sizes], -1)
        codes = codes if self.split_streams else codes[..., 0]
        return self.decode_codes(codes.to(self.quantizer.codebook.device))


def _from_old_layout(module, state_dict, prefix, *args) -> None:
    """Load a checkpoint of the layout before nn/vq.py: its quantiser tensors sat on the VQ-VAE itself."""
    for key in OLD_LAYOUT:
        if prefix + key in state_dict and prefix + "quantizer." + key not in state_dict:
            state_dict[prefix + "quantizer." + key] = state_dict.pop(prefix + key)
