"""Variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

Two architectures: "mlp" is the pytorch/examples MNIST VAE (784-400-20, ReLU), "conv" a small
convolutional encoder/decoder (two stride-2 convolutions each way, optionally `blocks` residual
blocks at each resolution). The decoder outputs Bernoulli logits or a Gaussian mean with one learned
log standard deviation (objectives/vae.py scores them). With conditional: true the decoder reads
the class too, p(x|z, y) (a conditional VAE, Sohn et al. 2015, "Learning Structured Output
Representation using Deep Conditional Generative Models", with q(z|x) left unconditional): a
learned per-class vector is added to z, so a sample of any class can be asked for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genforge.errors import ConfigError, GenforgeError


@dataclass
class VAEConfig:
    arch: Literal["conv", "mlp"] = "conv"
    image_size: int = 0  # 0: the data's
    channels: int = 0  # 0: the data's
    latent_dim: int = 16
    hidden: int = 400  # mlp: hidden units; conv: units of the dense layer after the convolutions
    width: int = 32  # conv: channels of the first convolution (the second has 2x)
    blocks: int = 0  # conv: residual blocks (3x3 conv, ReLU, 3x3 conv, + input) at each resolution, both ways
    decoder: Literal["bernoulli", "gaussian"] = "bernoulli"
    beta: float = 1.0  # weight of the KL term (beta-VAE, Higgins et al. 2017); 1 is the ELBO
    iwae_k: int = 0  # importance samples for the NLL bound reported at each eval (0: skip)
    train_k: int = 1  # importance samples in the training loss: 1 the ELBO, k > 1 the IWAE bound (Burda et al.)
    num_classes: int = 0  # 0: the data's
    conditional: bool = False  # the decoder reads the class: p(x|z, y)

    def __post_init__(self):
        if self.arch == "conv" and self.image_size % 4:
            raise ConfigError(f"model.image_size={self.image_size}: the conv VAE needs a multiple of 4")
        if self.latent_dim < 1 or self.beta < 0 or self.iwae_k < 0 or self.blocks < 0 or self.train_k < 1:
            raise ConfigError("model.latent_dim >= 1, model.beta >= 0, model.iwae_k >= 0, model.blocks >= 0 and "
                              "model.train_k >= 1 are required")
        if self.train_k > 1 and self.beta != 1.0:
            raise ConfigError(f"model.train_k={self.train_k} trains the IWAE bound, which has no KL weight: "
                              f"model.beta must be 1 (got {self.beta})")
        if self.conditional and self.num_classes == 1:
            raise ConfigError("model.conditional=true needs labelled data with 2+ classes")


    @property
    def n_cond(self) -> int:
        """Classes the decoder is conditioned on (0: unconditional)."""
        return self.num_classes if self.conditional else 0


# named presets: "examples" is pytorch/examples' MNIST VAE (bench/vae_vs_examples.py)
SIZES = {"examples": {"arch": "mlp", "hidden": 400, "latent_dim": 20},
         "conv-small": {"arch": "conv", "width": 32, "hidden": 256}}


class ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3x3, same channels and size: depth without a bottleneck."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, 1, 1), nn.ReLU(), nn.Conv2d(ch, ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _res(ch: int, n: int) -> list[nn.Module]:
    return [ResBlock(ch) for _ in range(n)]


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        n_pix = c.channels * c.image_size ** 2
        if c.arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n_pix, c.hidden), nn.ReLU())
            self.decoder = nn.Sequential(nn.Linear(c.latent_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, n_pix),
                                         nn.Unflatten(1, (c.channels, c.image_size, c.image_size)))
        else:
            s, w, b = c.image_size // 4, c.width, c.blocks
            # blocks=0 keeps the plain layer list (and so the parameter names of older checkpoints)
            self.encoder = nn.Sequential(
                nn.Conv2d(c.channels, w, 4, 2, 1), *_res(w, b), nn.ReLU(), nn.Conv2d(w, 2 * w, 4, 2, 1),
                *_res(2 * w, b), nn.ReLU(), nn.Flatten(), nn.Linear(2 * w * s * s, c.hidden), nn.ReLU())
            self.decoder = nn.Sequential(
                nn.Linear(c.latent_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 2 * w * s * s),
                nn.Unflatten(1, (2 * w, s, s)), *_res(2 * w, b), nn.ReLU(), nn.ConvTranspose2d(2 * w, w, 4, 2, 1),
                *_res(w, b), nn.ReLU(), nn.ConvTranspose2d(w, c.channels, 4, 2, 1))
        self.to_stats = nn.Linear(c.hidden, 2 * c.latent_dim)  # mu and log-variance of q(z|x)
        self.embed = nn.Embedding(c.n_cond, c.latent_dim) if c.n_cond else None  # added to z: p(x|z, y)
        if c.decoder == "gaussian":
            self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))  # of p(x|z), shared by all pixels

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, latent_dim), of q(z|x) for images x (B, C, H, W) in [0, 1]."""
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output for z (B, latent_dim) (and, conditional, classes y (B,)): logits
        (Bernoulli) or means (Gaussian), (B, C, H, W). GenforgeError for a conditional VAE without y."""
        if self.embed is not None:
            if y is None:
                raise GenforgeError("a class-conditional VAE decodes given the classes (model.conditional=true)")
            z = z + self.embed(y)
        return self.decoder(z)

    def mean_image(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z(, y)] clipped to [0, 1], (B, C, H, W): what a picture of z shows."""
        out = self.decode(z, y)
        return torch.sigmoid(out) if self.config.decoder == "bernoulli" else out.clamp(0, 1)

    def render(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (and, conditional, classes) to pictures in [0, 1] (the samplers' interface)."""
        return self.mean_image(z, y if self.embed is not None else None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
        return self.decode(z, y), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.mean_image(self.encode(x)[0], y)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from z ~ N(0, I) (scaled by `truncation` if given);
        a conditional VAE makes classes cond (n,) (default: 0, 1, 2, ... in turn)."""
        device = self.to_stats.weight.device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        y = None
        if self.config.n_cond:
            y = (torch.arange(n) % self.config.n_cond) if cond is None else torch.as_tensor(cond).expand(n)
            y = y.to(device)
        return self.mean_image(z * (truncation or 1.0), y)
