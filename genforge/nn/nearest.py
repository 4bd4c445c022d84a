"""Nearest-centroid assignment in a PCA space: the cluster id of an image, for self-conditioned
GANs (models/gan.py) and the clusters of a training set (data/clusters.py), which must agree."""
from __future__ import annotations

import torch


def cluster_logits(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """-||h - c_k||^2 / 2 (N, K) for flattened images x (N, D) in [0, 1], h their PCA coordinates:
    the log-posterior (up to a constant) of an equal-weight mixture of unit Gaussians at the
    centroids, differentiable in x; its argmax is the nearest centroid."""
    with torch.autocast(x.device.type, enabled=False):
        h = (x.float() - mean.float()) @ basis.float().T  # (N, P)
        return -0.5 * torch.cdist(h, centroids.float()).pow(2)


def nearest_cluster(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The nearest centroid's id (N,) of flattened images x (N, D) in [0, 1]: x - mean projected on
    the rows of basis (P, D), against centroids (K, P), in float32 whatever the autocast."""
    return cluster_logits(x, mean, basis, centroids).argmax(1)
