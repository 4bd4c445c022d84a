"""Importance weights from a small balanced reference set (Choi et al. 2019, "Fair Generative
Modeling via Weak Supervision", sec. 3): a probabilistic classifier c(x) told apart the biased
training images (label 0) from the reference images (label 1) on draws balanced between the two,
so that c(x) / (1 - c(x)) estimates the density ratio p_ref(x) / p_data(x); a training image's
weight is that ratio, and drawing images in proportion to it makes the batches look like the
reference distribution without a single label of the training set.

The classifier is a genforge `classifier` (models/classifier.py), trained through the one loop
on ImageBatches' own weighted draws; its checkpoint and the weights (importance_weights.npy) are
kept in the run directory, so a resumed run draws by the same weights.

data.reference_estimator=clusters estimates the ratio without a classifier: k-means clusters of the
training images (data/clusters.py's DEFAULT_K of them, fitted on the plain images) and
w(x) = pi_ref(c(x)) / pi_data(c(x)), each reference image counted in its nearest cluster."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from genforge.config import TrainConfig
from genforge.data.clusters import DEFAULT_DIMS, DEFAULT_K, Clusters, cluster_density_ratio, fit_clusters
from genforge.data.image_batches import ImageBatches, ImageDataConfig, label_weights, open_images, shift
from genforge.data.images import ImageSet
from genforge.errors import DataError
from genforge.models.classifier import Classifier, ClassifierConfig
from genforge.objectives.classify import ClassifierObjective
from genforge.train.loop import train

WEIGHTS_FILE = "importance_weights.npy"
CLIP = 0.01  # c(x) is clipped to [CLIP, 1 - CLIP]: a weight is within [0.0101, 99] (one image cannot take every draw)


def density_ratio_weights(data: ImageSet, reference: ImageSet, out: str | Path, steps: int = 1500, seed: int = 0,
                          batch_size: int = 256, width: int = 32, dropout: float = 0.5) -> np.ndarray:
    """Per-image weights (len(data),) estimating p_ref(x) / p_data(x), with mean 1; the classifier's
    run goes to out. Its draws are half reference, half training images, shifted by up to 2
    pixels (a few hundred reference images are otherwise learnt by heart), with dropout 0.5, in
    batches of 256: on the 90/10 MNIST of bench/bias_mnist.py (1,000 reference images) the drawn
    digits' TV from uniform was 0.093 after 1,500 steps of 64, 0.046-0.058 after 3,000 and
    0.037-0.038 after 1,500 of 256 (two seeds).
    DataError for a reference of another image shape, or one of fewer than 10 images."""
    _check_reference(data, reference)
    images = np.concatenate([data.images, reference.images])
    labels = np.concatenate([np.zeros(len(data), np.int64), np.ones(len(reference), np.int64)])
    both = ImageSet(images, labels, ["data", "reference"])
    held = np.sort(np.random.default_rng(seed).choice(len(both), min(len(both), 512), replace=False))
    batches = ImageBatches(both, both.subset(held), min(batch_size, len(both)), seed, augment=[shift],
                           weights=label_weights(labels, np.array([0.5, 0.5]), "data.reference"))
    C, H, _ = data.images.shape[1:]
    torch.manual_seed(seed)
    model = Classifier(ClassifierConfig(image_size=H, channels=C, num_classes=2, width=width, feature_dim=64,
                                        dropout=dropout))
    cfg = TrainConfig(max_iters=steps, lr=2e-3, min_lr=1e-4, warmup_iters=min(50, steps // 10), weight_decay=0.01,
                      eval_interval=steps, eval_iters=4, log_interval=max(1, steps // 4), keep_checkpoints=1,
                      device="cpu", dtype="float32", seed=seed, out_dir=str(out))
    config = {"family": "classifier", "model": dataclasses.asdict(model.config), "tokenizer": None,
              "data": {"source": "density ratio: training images vs data.reference", "class_names": both.class_names,
                       "train_images": len(both), "val_images": len(held)}}
    train(ClassifierObjective(model), batches, cfg, Path(out), config=config, progress=False)
    return ratio_weights(model, data.images)


def _check_reference(data: ImageSet, reference: ImageSet) -> None:
    if len(reference) < 10:
        raise DataError(f"data.reference: {len(reference)} images; a reference set needs at least 10")
    if reference.images.shape[1:] != data.images.shape[1:]:
        raise DataError(f"data.reference: images of shape {tuple(reference.images.shape[1:])} (C, H, W); the training "
                        f"images are {tuple(data.images.shape[1:])} (set data.image_size / data.channels, or give a "
                        "reference of the same images)")


@torch.no_grad()
def logit_of(classifier: torch.nn.Module, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    """The two-class classifier's logit of "reference" (N,) on uint8 images (N, C, H, W)."""
    classifier.eval()
    x = torch.from_numpy(images)
    out = [classifier(x[i:i + batch].float() / 255) for i in range(0, len(x), batch)]
    logits = torch.cat(out).double()
    return logits[:, 1] - logits[:, 0]


def ratio_weights(classifier: torch.nn.Module, images: np.ndarray, a: float = 1.0, b: float = 0.0) -> np.ndarray:
    """c / (1 - c) for c = sigmoid(a * logit + b) of a two-class classifier's reference logit on
    uint8 images (N, C, H, W), c clipped to [CLIP, 1 - CLIP], normalised to mean 1."""
    c = torch.sigmoid(a * logit_of(classifier, images) + b).clamp(CLIP, 1 - CLIP)
    w = (c / (1 - c)).numpy()
    return w / w.mean()


def cluster_ratio_weights(data: ImageSet, reference: ImageSet, clusters: Clusters | None = None,
                          seed: int = 0) -> np.ndarray:
    """Per-image weights (len(data),) pi_ref(c) / pi_data(c) over the clusters given (else
    DEFAULT_K k-means clusters of data, seeded), with mean 1. DataError as density_ratio_weights."""
    _check_reference(data, reference)
    clusters = clusters or fit_clusters(data.images, DEFAULT_K, DEFAULT_DIMS, seed)
    return cluster_density_ratio(clusters.assign(data.images), clusters.assign(reference.images), clusters.k)


def reference_weights(cfg: ImageDataConfig, data: ImageSet, out_dir: str | Path, seed: int = 0) -> np.ndarray:
    """The importance weights of a run with data.reference: read from the run directory when an
    earlier start of the run fitted them (resume draws by the same weights), else estimated now
    (data.reference_estimator: the classifier, or clusters) and saved there."""
    path = Path(out_dir) / WEIGHTS_FILE
    if path.is_file():
        w = np.load(path, allow_pickle=False)
        if w.shape == (len(data),):
            return w
    ref_cfg = dataclasses.replace(cfg, source=cfg.reference, reference="", limit=0, val_fraction=0.0, augment=[])
    reference, _ = open_images(ref_cfg)
    if cfg.reference_estimator == "clusters":
        w = cluster_ratio_weights(data, reference, seed=seed)
    else:
        w = density_ratio_weights(data, reference, Path(out_dir) / "importance", cfg.reference_steps, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, w)
    return w
