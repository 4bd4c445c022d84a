"""Nearest-centroid assignment in a PCA space: the cluster id of an image, for self-conditioned
GANs (models/gan.py) and the clusters of a training set (data/clusters.py), which must agree."""
from __future__ import annotations

import torch


def nearest_cluster(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The nearest centroid's id (N,) of flattened images x (N, D) in [0, 1]: x - mean projected on
    the rows of basis (P, D), against centroids (K, P), in float32 whatever the autocast."""
    with torch.autocast(x.device.type, enabled=False):
        h = (x.float() - mean.float()) @ basis.float().T  # (N, P)
        return torch.cdist(h, centroids.float()).argmin(1)
