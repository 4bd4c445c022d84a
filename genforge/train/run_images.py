"""The training runner of image families (the table's vae, gan, classifier): open the images,
fill the model's image_size / channels / num_classes from them, and train the family's objective
(Family.objective) in the loop."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

from genforge.config import RunConfig
from genforge.data.image_batches import AUGMENTATIONS, ImageBatches, draw_weights, open_images, weight_report
from genforge.device import resolve_device
from genforge.errors import ConfigError
from genforge.families import family, resolve
from genforge.train.loop import train
from genforge.train.run import check_trainable


def run_images(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train cfg.family on the images of cfg.data; return the final checkpoint directory."""
    fam = family(cfg.family)
    train_set, val_set = open_images(cfg.data)
    cfg.model = fit_model_config(cfg.model, train_set.images.shape[1:], train_set.num_classes, fam.kind)
    check_trainable(cfg, resolve_device(cfg.train.device))  # before allocating: a typo is not a 1 PB model
    weights = _draw_weights(cfg, train_set)
    clusters = _clusters(cfg, train_set, weights)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = fam.build(cfg.model)
    if clusters is not None:  # a self-conditioned GAN: its clusters, and their shares under the draws as its prior
        from genforge.data.clusters import cluster_shares

        model.set_clusters(clusters, cluster_shares(clusters.assign(train_set.images), clusters.k, weights))
    objective = make_objective(cfg, fam, model, train_set.class_names)
    batches = ImageBatches(train_set, val_set, cfg.data.batch_size, cfg.train.seed, resolve_device(cfg.train.device),
                           [AUGMENTATIONS[a] for a in cfg.data.augment], weights=weights)
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": None,
              "data": {"source": cfg.data.source, "class_names": train_set.class_names,
                       "train_images": len(train_set), "val_images": len(val_set)},
              "run": cfg.to_dict()}
    if weights is not None:
        config["data"]["draws"] = weight_report(weights, train_set.labels)
    return train(objective, batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config, progress=progress)


def _clusters(cfg: RunConfig, train_set, weights):
    """The k-means clusters of the training images under the draw weights that a self-conditioned
    model reads (model.clusters; None without): the same images, weights and train.seed give the
    same clusters, so a resumed run has them."""
    if not getattr(cfg.model, "clusters", 0):
        return None
    from genforge.data.clusters import fit_clusters

    return fit_clusters(train_set.images, cfg.model.clusters, cfg.model.cluster_dims, cfg.train.seed, weights,
                        cfg.model.cluster_weight_feature)


def _draw_weights(cfg: RunConfig, train_set):
    """The draw weights of data.target / data.weights / data.reference (None: none), with what they
    do to the draws printed: the effective sample size and the images repeated within an epoch."""
    import os
    import sys

    if cfg.data.reference:
        from genforge.train.importance import reference_weights

        weights = reference_weights(cfg.data, train_set, cfg.train.out_dir, cfg.train.seed)
    else:
        weights = draw_weights(cfg.data, train_set)
    if weights is not None and os.environ.get("RANK", "0") == "0":
        r = weight_report(weights, train_set.labels)
        print(f"weighted draws: effective sample size {r['effective_sample_size']:.0f} of {r['images']} images; "
              f"{r['repeated_images']} repeated within an epoch (mean {r['mean_repeats']:.2f}x, max "
              f"{r['max_repeats']:.2f}x); {r['never_drawn']} never drawn", file=sys.stderr)
    return weights


def fit_model_config(model_cfg, shape: tuple[int, int, int], num_classes: int, kind: str):
    """model_cfg with image_size, channels and num_classes taken from the data where left at 0;
    ConfigError where a value set in the config contradicts the data."""
    C, H, W = shape
    if H != W:
        raise ConfigError(f"data: images are {H}x{W}; image models need square images (set data.image_size)")
    found = {"image_size": H, "channels": C, "num_classes": num_classes}
    changes = {}
    for key, value in found.items():
        have = getattr(model_cfg, key)
        if have == 0:
            changes[key] = value
        elif have != value:
            hint = "data.image_size" if key == "image_size" else f"model.{key}=0 (the data's)"
            raise ConfigError(f"model.{key}={have} but the data has {value}; set {hint}")
    if kind == "label" and num_classes < 2:
        raise ConfigError("data: the images have no class labels (a classifier needs 2+ classes)")
    return dataclasses.replace(model_cfg, **changes)


def make_objective(cfg: RunConfig, fam, model, class_names: list[str]):
    """The family's objective on model; one that reports on its samples (has `report`, e.g. a
    GAN's) gets the sample report, with FID and class coverage when data.classifier names one."""
    objective = resolve(fam.objective)(model)
    if hasattr(objective, "report"):
        from genforge.eval.image_metrics import load_classifier, sample_report

        scorer = load_classifier(cfg.data.classifier, resolve_device(cfg.train.device)) if cfg.data.classifier else None
        objective.report = functools.partial(sample_report, scorer=scorer, class_names=class_names)
    return objective
