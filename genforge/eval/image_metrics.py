"""Image-generation metrics that work offline, with a feature extractor genforge trains (a domain
classifier, models/classifier.py) or any nn.Module mapping images in [0, 1] to (B, D) features:

  FID  (Heusel et al. 2017) and KID (Binkowski et al. 2018) through torchmetrics;
  precision / recall of the k-NN manifolds (Kynkaenniemi et al. 2019);
  class coverage: how many classes the classifier finds among the samples (mode collapse).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genforge.errors import CheckpointError, ConfigError
from genforge.models.classifier import predict

MIN_SHARE = 0.2  # a class counts as covered when it gets >= 20% of its uniform share of the samples


def load_classifier(ckpt: str | Path, device: str | torch.device = "cpu"):
    """The classifier (eval mode) of a checkpoint of an image classifier (a family of kind "label")."""
    from genforge import checkpoint as ckpt_io

    loaded = ckpt_io.load(ckpt, device)
    if loaded.family.kind != "label":
        raise CheckpointError(f"{loaded.path}: family {loaded.config.get('family')!r}; a feature extractor needs a "
                              "classifier checkpoint (genforge train classifier/mnist)")
    return loaded.model


def feature_module(extractor: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """A classifier becomes its penultimate features; any other module is used as it is, given a
    `num_features` from one example image when it has none (torchmetrics would probe it with a
    299x299 RGB image otherwise)."""
    from genforge.models.classifier import Classifier, Features

    if isinstance(extractor, Classifier):
        return Features(extractor)
    extractor = extractor.eval()
    if not hasattr(extractor, "num_features") and example is not None:
        with torch.no_grad():
            extractor.num_features = int(extractor(example[:1].float()).shape[-1])
    return extractor


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, extractor: nn.Module, batch: int = 500) -> float:
    """Frechet distance of the two image sets' features ((N, C, H, W) in [0, 1])."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=feature_module(extractor, real), normalize=True)
    _feed(metric, real, fake, batch)
    return float(metric.compute())


@torch.no_grad()
def kid(real: torch.Tensor, fake: torch.Tensor, extractor: nn.Module, batch: int = 500) -> tuple[float, float]:
    """(mean, std) of the kernel inception distance over subsets."""
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(real), len(fake))
    metric = KernelInceptionDistance(feature=feature_module(extractor, real), normalize=True, subset_size=min(1000, n), subsets=50)
    _feed(metric, real, fake, batch)
    mean, std = metric.compute()
    return float(mean), float(std)


def _feed(metric, real, fake, batch):
    for i in range(0, len(real), batch):
        metric.update(real[i:i + batch].float(), real=True)
    for i in range(0, len(fake), batch):
        metric.update(fake[i:i + batch].float(), real=False)


@torch.no_grad()
def features(extractor: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    module = feature_module(extractor)
    return torch.cat([module(images[i:i + batch].float()) for i in range(0, len(images), batch)]).double()


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Precision: share of fakes inside the real k-NN manifold; recall: share of reals inside the fake one."""
    def radii(f):  # distance of each point to its k-th nearest neighbour (itself excluded)
        return torch.cdist(f, f).kthvalue(k + 1, dim=1).values

    def inside(points, ref):
        return (torch.cdist(points, ref) <= radii(ref)[None]).any(1).double().mean().item()

    return inside(fake_feats, real_feats), inside(real_feats, fake_feats)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """The share of images x the classifier labels as y."""
    return float((predict(model, x, batch) == y).double().mean())


def class_coverage(classifier: nn.Module, fake: torch.Tensor, num_classes: int) -> tuple[int, list[int], torch.Tensor]:
    """(classes covered, missing class ids, counts per class) of the classifier's predictions on fake."""
    preds = predict(classifier, fake)
    counts = torch.bincount(preds.cpu(), minlength=num_classes)
    covered = counts >= max(1.0, MIN_SHARE * len(fake) / num_classes)
    return int(covered.sum()), [i for i in range(num_classes) if not covered[i]], counts


def diversity(images: torch.Tensor, n: int = 256) -> float:
    """Mean pairwise L2 distance between (up to n) images: near 0 when samples collapse to one."""
    x = images[:n].flatten(1).double()
    return float(torch.pdist(x).mean()) if len(x) > 1 else 0.0


def sample_report(fake: torch.Tensor, real: torch.Tensor, scorer: nn.Module | None = None,
                  class_names: list[str] | None = None) -> dict:
    """Metrics logged at each GAN eval: diversity relative to real images and, with a classifier
    scorer, FID and class coverage; "warnings" lists the lines to tell the user (mode collapse)."""
    rel = diversity(fake) / max(diversity(real), 1e-12)
    out: dict = {"diversity": rel, "warnings": []}
    if rel < 0.5:
        out["warnings"].append(f"possible mode collapse: samples are {rel:.2f}x as diverse as real images")
    if scorer is not None:
        k = scorer.config.num_classes
        covered, missing, _ = class_coverage(scorer, fake, k)
        out.update(fid=fid(real, fake, scorer), classes_covered=float(covered))
        if missing:
            names = [class_names[i] if class_names and i < len(class_names) else str(i) for i in missing]
            out["warnings"].append(f"mode collapse: samples cover {covered}/{k} classes (missing {', '.join(names)})")
    return out


def parse_metrics(text: str) -> list[str]:
    known = ("fid", "kid", "pr", "coverage", "nll")
    names = [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        if m not in known:
            raise ConfigError(f"--metrics {text}: unknown metric {m!r}; expected some of {', '.join(known)}")
    return names
