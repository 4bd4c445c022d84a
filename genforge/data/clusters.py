"""Label-free clusters of a training set's images, for self-conditioned GANs and for density ratios.

Liu et al. 2020, "Diverse Image Generation via Self-Conditioned GANs": conditioning G and D on
k-means clusters of the training images (in place of class labels) makes an unconditional GAN
cover every cluster, each at the share it has in the data, which a plain GAN does not. Here the
clusters are k-means (scikit-learn, Lloyd, seeded) on the images' top principal components (pixel
PCA, Pearson 1901), fixed for the run: the paper re-clusters on D's features as training goes;
pixel clusters of small grey images such as MNIST's are already nearly pure in the digit.

The same clusters give a non-parametric density ratio between a small reference set and the
training set (cluster_density_ratio): w(x) = pi_ref(c(x)) / pi_data(c(x)), the share of the
reference images in x's cluster over the share of the training images in it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genforge.errors import ConfigError, DataError
from genforge.nn.nearest import nearest_cluster

DEFAULT_K = 50  # clusters of the density ratio when the model has none of its own
DEFAULT_DIMS = 50  # principal components the images are clustered on
PSEUDO_COUNT = 0.5  # reference images added to every cluster (a cluster no reference image fell in keeps some draws)


@dataclass
class Clusters:
    """k clusters of flattened images: x (N, D) in [0, 1] -> its nearest centroid in PCA space."""
    mean: np.ndarray  # (D,) the training images' mean
    basis: np.ndarray  # (P, D) the top principal directions (rows), zero rows past the data's rank
    centroids: np.ndarray  # (K, P) k-means centroids in PCA coordinates

    @property
    def k(self) -> int:
        return len(self.centroids)

    def assign(self, images: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Cluster ids (N,) int64 of uint8 images (N, C, H, W) (nn/nearest.py, as a GAN assigns them)."""
        tensors = [torch.from_numpy(t) for t in (self.mean, self.basis, self.centroids)]
        x = torch.from_numpy(np.ascontiguousarray(images)).flatten(1)
        out = [nearest_cluster(x[i:i + batch].float() / 255, *tensors) for i in range(0, len(x), batch)]
        return torch.cat(out).numpy().astype(np.int64)


def fit_clusters(images: np.ndarray, k: int, dims: int = DEFAULT_DIMS, seed: int = 0,
                 weights: np.ndarray | None = None, weight_feature: float = 0.0) -> Clusters:
    """k-means clusters (k of them) of uint8 images (N, C, H, W) on their top `dims` principal
    components, each image counted with its draw weight (N,) when given: the clusters of the
    distribution a run draws from, so that a rare kind drawn often gets centroids of its own.

    weight_feature > 0 (with weights that differ) clusters on one more coordinate, the image's log
    weight scaled to weight_feature x the spread of the PCA coordinates, so that images drawn at
    very different rates (a 4 at 0.5 and a 9 at 5 that look alike) fall in different clusters; the
    centroids kept are the PCA parts (the clusters' weighted means), as images are assigned by
    them (`assign`). The same images, weights and seed give the same clusters. ConfigError for
    k < 2, dims < 1 or weight_feature < 0; DataError for fewer images than clusters."""
    from sklearn.cluster import KMeans

    if k < 2 or dims < 1 or weight_feature < 0:
        raise ConfigError(f"clusters: k={k} must be >= 2, dims={dims} >= 1 and weight_feature={weight_feature} >= 0")
    if len(images) < k:
        raise DataError(f"clusters: {len(images)} training images for {k} clusters; give at least one per cluster")
    x = images.reshape(len(images), -1).astype(np.float64) / 255  # (N, D)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64) / np.mean(weights)  # (N,)
    mean = w @ x / w.sum()
    centred = x - mean
    values, vectors = np.linalg.eigh((centred * w[:, None]).T @ centred)  # ascending eigenvalues of the weighted scatter (D, D)
    rank = int((values > values.max() * 1e-10).sum())  # directions past the data's rank are arbitrary: left out
    top = vectors[:, ::-1][:, :min(dims, rank)].T  # (P', D)
    top = top * np.where(top[np.arange(len(top)), np.abs(top).argmax(1)] < 0, -1.0, 1.0)[:, None]  # a fixed sign
    basis = np.zeros((dims, x.shape[1]), np.float32)
    basis[:len(top)] = top
    h = (centred @ basis.T.astype(np.float64)).astype(np.float32)  # (N, P)
    features = h
    log_w = np.log(np.where(w > 0, w, w[w > 0].min())) if weight_feature else None  # weight 0: as the least drawn
    if log_w is not None and log_w.std() > 0:  # (N, P + 1): the PCA coordinates and the scaled log weight
        extra = weight_feature * np.sqrt(h.astype(np.float64).var(0).sum()) * (log_w - log_w.mean()) / log_w.std()
        features = np.concatenate([h.astype(np.float64), extra[:, None]], 1)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed, algorithm="lloyd").fit(features, sample_weight=w)
    return Clusters(mean.astype(np.float32), basis, km.cluster_centers_[:, :dims].astype(np.float32))


def cluster_shares(ids: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The share (K,) of each cluster among ids (N,), each id counted with its weight (plain
    frequencies without weights): what draws by those weights give each cluster."""
    counts = np.bincount(ids, weights=None if weights is None else np.asarray(weights, np.float64), minlength=k)
    return counts.astype(np.float64) / counts.sum()


def cluster_density_ratio(data_ids: np.ndarray, reference_ids: np.ndarray, k: int,
                          pseudo: float = PSEUDO_COUNT) -> np.ndarray:
    """Per-image weights (N,) w = pi_ref(c) / pi_data(c) for training images in clusters data_ids
    (N,), with pi_ref the reference images' shares (reference_ids, plus `pseudo` images in each
    cluster), pi_data the training images' frequencies; normalised to mean 1. Drawing by them
    gives each cluster its reference share."""
    counts = np.bincount(reference_ids, minlength=k).astype(np.float64) + pseudo
    pi_ref = counts / counts.sum()
    w = pi_ref[data_ids] / cluster_shares(data_ids, k)[data_ids]
    return w / w.mean()  # a cluster without training images cannot be drawn: its share goes to the rest
