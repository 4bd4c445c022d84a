"""Training runners of the image families (vae, gan, classifier): open the images, fill the
model's image_size / channels / num_classes from them, and train the family's objective in the loop."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from genforge.config import RunConfig
from genforge.data.image_batches import AUGMENTATIONS, ImageBatches, open_images
from genforge.errors import ConfigError
from genforge.models import FAMILIES
from genforge.train.device import resolve_device
from genforge.train.loop import train


def run_images(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train cfg.family (vae | gan | classifier) on cfg.data; return the final checkpoint directory."""
    train_set, val_set = open_images(cfg.data)
    cfg.model = fit_model_config(cfg.model, train_set.images.shape[1:], train_set.num_classes, cfg.family)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = FAMILIES[cfg.family].build(cfg.model)
    objective = make_objective(cfg, model, train_set.class_names)
    batches = ImageBatches(train_set, val_set, cfg.data.batch_size, cfg.train.seed, resolve_device(cfg.train.device),
                           [AUGMENTATIONS[a] for a in cfg.data.augment])
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": None,
              "data": {"source": cfg.data.source, "class_names": train_set.class_names,
                       "train_images": len(train_set), "val_images": len(val_set)},
              "run": cfg.to_dict()}
    return train(objective, batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config, progress=progress)


def fit_model_config(model_cfg, shape: tuple[int, int, int], num_classes: int, family: str):
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
    if family == "classifier" and num_classes < 2:
        raise ConfigError("family classifier: the data has no class labels (2+ classes needed)")
    return dataclasses.replace(model_cfg, **changes)


def make_objective(cfg: RunConfig, model, class_names: list[str]):
    if cfg.family == "vae":
        from genforge.objectives.vae import VAEObjective

        return VAEObjective(model)
    if cfg.family == "gan":
        from genforge.objectives.gan import GANObjective

        scorer = None
        if cfg.data.classifier:
            from genforge.eval.image_metrics import load_classifier

            scorer = load_classifier(cfg.data.classifier, resolve_device(cfg.train.device))
        return GANObjective(model, scorer, class_names)
    from genforge.objectives.classify import ClassifierObjective

    return ClassifierObjective(model)
