"""Generative adversarial networks: a generator G(z[, y]) and a discriminator D(x[, y]).

"dcgan" is the DCGAN baseline (Radford et al. 2016): batch norm in both nets, the
non-saturating loss. "sn" is the modern stable variant: spectral normalisation in D (Miyato et
al. 2018), usually with the hinge loss and an R1 penalty (Mescheder et al. 2018) and an EMA of G
(the loop keeps it: train.ema_decay). Class-conditional with conditional: true: G reads a class
embedding next to z (g_cond: concat) and/or through conditional batch norm (g_cond: cbn), D is a
projection discriminator (Miyato & Koyama 2018).
Self-conditioned with clusters: K (Liu et al. 2020, "Diverse Image Generation via Self-Conditioned
GANs"): no label is used; G and D read the id of one of K k-means clusters of the training images
(data/clusters.py, fitted by the runner) where a conditional GAN reads the class, D the cluster of each real image, so
that G has to make every cluster. G keeps the cluster prior pi (K,), each cluster's share under
the run's draws (plain frequencies, or the shares data.target / data.weights / data.reference draw
them at), and samples c ~ pi, then G(z, c): it makes whatever distribution its draws had. G's loss
adds cluster_loss x the cross-entropy of the cluster its fake falls in (nearest-centroid logits in
the clusters' PCA space, differentiable) against c, so that G(z, c) is an image of cluster c.
G outputs tanh images in [-1, 1]; `sample` returns them in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genforge.errors import ConfigError
from genforge.nn.cond_norm import ConditionalBatchNorm
from genforge.nn.nearest import cluster_logits, nearest_cluster


@dataclass
class GANConfig:
    arch: Literal["dcgan", "sn"] = "sn"
    image_size: int = 0  # 0: the data's
    channels: int = 0  # 0: the data's
    latent_dim: int = 64
    g_width: int = 64  # channels of G's last hidden layer (the one before has 2x)
    d_width: int = 64  # channels of D's first convolution (the second has 2x)
    num_classes: int = 0  # 0: the data's
    conditional: bool = False  # class-conditional G and D
    # how the class enters a conditional G: "concat" (an embedding beside z, into the first layer),
    # "cbn" (conditional batch norm: a per-class gain and bias on every batch norm; nn/cond_norm.py)
    # or "both"
    g_cond: Literal["concat", "cbn", "both"] = "concat"
    loss: Literal["ns", "hinge"] = "hinge"  # non-saturating (Goodfellow et al. 2014) or hinge (Lim & Ye 2017)
    r1_gamma: float = 0.0  # weight of the R1 gradient penalty on real images (0: off)
    d_lr_scale: float = 1.0  # D's learning rate is train.lr times this (two time-scale updates)
    diffaugment: list[str] = field(default_factory=list)  # D sees real and fake through these (nn/diffaugment.py)
    truncation: float = 0.0  # sampling's default truncation (0: none; `sample(truncation=...)` overrides)
    # self-conditioned: G and D read k-means clusters of the training images, K of them (0: off; K >= 2;
    # not with conditional), clustered on the images' top cluster_dims principal components
    clusters: int = 0
    cluster_dims: int = 50
    # weight of G's cross-entropy between the cluster its fake lands in (the nearest-centroid logits,
    # differentiable in the image) and the cluster it was asked for (0: off): G follows its
    # conditioning. Without it, on 90/10 MNIST, a quarter of the fakes fell outside their cluster and
    # G made the digits it liked within mixed ones (bench/bias_mnist.py: TV 0.062 -> 0.024, FID 12.3 -> 3.1)
    cluster_loss: float = 1.0
    # under weighted draws (data.target / data.weights / data.reference), k-means also reads each image's
    # log draw weight, at this share of the PCA coordinates' spread (data/clusters.py; 0: pixels only), so
    # that a cluster does not mix alike images drawn at very different rates, of which G would make the
    # more drawn kind only (bench/bias_mnist.py, importance-weighted arm: TV 0.048 / 0.071 -> 0.045 / 0.044)
    cluster_weight_feature: float = 0.5

    def __post_init__(self):
        if self.clusters < 0 or self.clusters == 1 or self.cluster_dims < 1:
            raise ConfigError(f"model.clusters={self.clusters}: expected 0 (off) or K >= 2 clusters (and "
                              f"model.cluster_dims={self.cluster_dims} >= 1)")
        if self.clusters and self.conditional:
            raise ConfigError("model.clusters and model.conditional=true both condition G and D: give one (clusters "
                              "need no labels)")
        if self.conditional and self.num_classes == 1:
            raise ConfigError("model.conditional=true needs labelled data with 2+ classes")
        if self.image_size % 4:
            raise ConfigError(f"model.image_size={self.image_size}: the GAN needs a multiple of 4")
        if self.g_cond not in ("concat", "cbn", "both"):
            raise ConfigError(f"model.g_cond={self.g_cond!r}: expected concat, cbn or both")
        if (self.r1_gamma < 0 or self.num_classes < 0 or self.d_lr_scale <= 0 or self.truncation < 0
                or self.cluster_loss < 0 or self.cluster_weight_feature < 0):
            raise ConfigError("model.r1_gamma >= 0, model.num_classes >= 0, model.d_lr_scale > 0, "
                              "model.truncation >= 0, model.cluster_loss >= 0 and model.cluster_weight_feature >= 0 "
                              "are required")
        from genforge.nn.diffaugment import POLICIES

        for name in self.diffaugment:
            if name not in POLICIES:
                raise ConfigError(f"model.diffaugment: unknown policy {name!r}; expected some of {list(POLICIES)}")

    @property
    def n_cond(self) -> int:
        """Classes G and D are conditioned on (0: unconditional)."""
        return self.num_classes if self.conditional else 0

    @property
    def n_labels(self) -> int:
        """The ids G and D read: the classes (conditional) or the clusters (self-conditioned); 0: none."""
        return self.n_cond or self.clusters


class Generator(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.config = c
        s, w = c.image_size // 4, c.g_width
        concat = c.n_labels and c.g_cond in ("concat", "both")
        z_in = c.latent_dim * (2 if concat else 1)
        self.embed = nn.Embedding(c.n_labels, c.latent_dim) if concat else None
        if c.clusters:  # set by GAN.set_clusters before training; buffers, so the checkpoint keeps them
            pixels = c.channels * c.image_size ** 2
            self.register_buffer("cluster_prior", torch.full((c.clusters,), 1 / c.clusters))  # (K,)
            self.register_buffer("cluster_mean", torch.zeros(pixels))  # (D,)
            self.register_buffer("cluster_basis", torch.zeros(c.cluster_dims, pixels))  # (P, D)
            self.register_buffer("cluster_centroids", torch.zeros(c.clusters, c.cluster_dims))  # (K, P)

        def norm(features: int, spatial: bool) -> nn.Module:
            if c.n_labels and c.g_cond in ("cbn", "both"):
                return ConditionalBatchNorm(features, c.n_labels, spatial)
            return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(features)

        self.net = nn.Sequential(
            nn.Linear(z_in, 2 * w * s * s, bias=False), norm(2 * w * s * s, False), nn.ReLU(),
            nn.Unflatten(1, (2 * w, s, s)),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), norm(w, True), nn.ReLU(),  # (B, w, 2s, 2s)
            nn.ConvTranspose2d(w, c.channels, 4, 2, 1), nn.Tanh())  # (B, C, 4s, 4s)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], dim=1)
        for layer in self.net:
            z = layer(z, y) if isinstance(layer, ConditionalBatchNorm) else layer(z)
        return z  # (B, C, H, W) in [-1, 1]

    def render(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (and classes) to pictures in [0, 1] (the samplers' interface)."""
        return (self(z, y) + 1) / 2

    def cluster_of(self, x: torch.Tensor) -> torch.Tensor:
        """The cluster ids (B,) of images x (B, C, H, W) in [0, 1] (a self-conditioned G)."""
        return nearest_cluster(x.flatten(1), self.cluster_mean, self.cluster_basis, self.cluster_centroids)

    def cluster_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable cluster logits (B, K) of images x (B, C, H, W) in [0, 1] (nn/nearest.py)."""
        return cluster_logits(x.flatten(1), self.cluster_mean, self.cluster_basis, self.cluster_centroids)

    def draw_clusters(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n cluster ids (n,) drawn from the cluster prior pi (a self-conditioned G)."""
        return torch.multinomial(self.cluster_prior.double().cpu(), n, replacement=True, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]. cond: class labels (n,) for a conditional G (default
        0, 1, 2, ... cycling); a self-conditioned G draws its clusters from its prior pi (cond:
        cluster ids instead); truncation t redraws latents until |z_i| <= t (Brock et al. 2019),
        by default model.truncation's."""
        device = next(self.parameters()).device
        truncation = truncation or self.config.truncation or None
        z = truncated_normal(n, self.config.latent_dim, truncation, generator).to(device)
        y = None
        if self.config.n_cond:
            y = (torch.arange(n) % self.config.n_cond) if cond is None else torch.as_tensor(cond).expand(n)
        elif self.config.clusters:
            y = self.draw_clusters(n, generator) if cond is None else torch.as_tensor(cond).expand(n)
        return self.render(z, None if y is None else y.to(device))


class Discriminator(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.config = c
        s, w = c.image_size // 4, c.d_width
        sn = spectral_norm if c.arch == "sn" else (lambda m: m)
        norm = nn.BatchNorm2d(2 * w) if c.arch == "dcgan" else nn.Identity()
        self.body = nn.Sequential(
            sn(nn.Conv2d(c.channels, w, 4, 2, 1)), nn.LeakyReLU(0.2),  # (B, w, 2s, 2s)
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), norm, nn.LeakyReLU(0.2),  # (B, 2w, s, s)
            nn.Flatten())
        self.out = sn(nn.Linear(2 * w * s * s, 1))
        self.embed = sn(nn.Embedding(c.n_labels, 2 * w * s * s)) if c.n_labels else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)  # (B, F)
        logit = self.out(h).squeeze(1)  # (B,)
        if self.embed is not None:  # projection: + <embed(y), h>
            logit = logit + (self.embed(y) * h).sum(1)
        return logit


class GAN(nn.Module):
    """G and D together, so a checkpoint's family builds both; the objective trains them apart."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        self.g, self.d = Generator(config), Discriminator(config)

    @torch.no_grad()
    def set_clusters(self, clusters, prior: np.ndarray) -> None:
        """Give a self-conditioned GAN its clusters (data.clusters.Clusters of its training images)
        and its prior pi (K,): each cluster's share under the run's draws. ConfigError when they do
        not match model.clusters / model.cluster_dims."""
        c, g = self.config, self.g
        if not c.clusters:
            raise ConfigError("set_clusters: the GAN is not self-conditioned (model.clusters=0)")
        if clusters.centroids.shape != tuple(g.cluster_centroids.shape) or len(prior) != c.clusters:
            raise ConfigError(f"set_clusters: {clusters.centroids.shape} centroids and {len(prior)} prior shares for "
                              f"model.clusters={c.clusters}, model.cluster_dims={c.cluster_dims}")
        for name, value in (("cluster_prior", prior), ("cluster_mean", clusters.mean), ("cluster_basis", clusters.basis),
                            ("cluster_centroids", clusters.centroids)):
            getattr(g, name).copy_(torch.as_tensor(np.asarray(value, np.float32)))


def truncated_normal(n: int, dim: int, truncation: float | None, generator: torch.Generator | None) -> torch.Tensor:
    """(n, dim) standard normal draws; with truncation t, entries beyond +-t are redrawn."""
    z = torch.randn(n, dim, generator=generator)
    if truncation is None:
        return z
    if truncation <= 0:
        raise ConfigError(f"truncation={truncation} must be > 0")
    for _ in range(100):
        bad = z.abs() > truncation
        if not bad.any():
            break
        z[bad] = torch.randn(int(bad.sum()), generator=generator)
    return z.clamp(-truncation, truncation)
