"""`genforge eval` for image checkpoints: FID / KID / precision-recall / class coverage of samples
against the checkpoint's validation images, through a genforge-trained classifier's features;
the IWAE bound on -log p(x) for a VAE; accuracy for a classifier."""
from __future__ import annotations

from pathlib import Path

import torch

from genforge.errors import ConfigError
from genforge.eval import image_metrics as im


def real_images(config: dict, split: str = "val"):
    """The ImageSet a checkpoint trained (train) or evaluated (val) on, as its run config read it."""
    from genforge.config import from_dict
    from genforge.data.image_batches import ImageDataConfig, open_images

    data = from_dict(ImageDataConfig, (config.get("run") or {}).get("data") or {}, "data")
    train, val = open_images(data)
    return (train if split == "train" else val), data


def evaluate_images(ckpt: str | Path, metrics: list[str], classifier: str | None = None, num_samples: int = 2000,
                    iwae_k: int = 100, device: str = "cpu", seed: int = 0) -> dict:
    """Metrics of an image checkpoint as a dict (names -> numbers)."""
    from genforge.data.image_batches import to_float
    from genforge.sample.images import load_image_model

    model, config, _ = load_image_model(ckpt, device)
    family = config["family"]
    val, data = real_images(config)
    real = to_float(val.images[:num_samples]).to(device)
    out: dict = {"family": family, "real_images": len(real)}
    if family == "classifier":
        from genforge.objectives.classify import accuracy

        out["val_acc"] = accuracy(model, real, torch.from_numpy(val.labels[:num_samples]).to(device))
        return out
    if "nll" in metrics:
        if family != "vae":
            raise ConfigError(f"--metrics nll: only a VAE has a likelihood (this checkpoint is a {family})")
        out.update(vae_nll(model, real, iwae_k, seed))
    picture = [m for m in metrics if m != "nll"]
    if not picture:
        return out
    extractor = _extractor(classifier or data.classifier, model.config, device)
    gen = torch.Generator().manual_seed(seed)
    fake = torch.cat([model.sample(min(500, num_samples - i), generator=gen) for i in range(0, num_samples, 500)])
    out["fake_images"] = len(fake)
    if "fid" in picture:
        out["fid"] = im.fid(real, fake, extractor)
    if "kid" in picture:
        out["kid_mean"], out["kid_std"] = im.kid(real, fake, extractor)
    if "pr" in picture:
        out["precision"], out["recall"] = im.precision_recall(im.features(extractor, real), im.features(extractor, fake))
    if "coverage" in picture:
        covered, missing, counts = im.class_coverage(extractor, fake, extractor.config.num_classes)
        out.update(classes_covered=covered, num_classes=extractor.config.num_classes, missing_classes=missing,
                   class_counts=counts.tolist())
    return out


@torch.no_grad()
def vae_nll(model, real: torch.Tensor, k: int, seed: int = 0, batch: int = 100) -> dict:
    """Mean negative ELBO and IWAE bound (nats per image) over real images."""
    from genforge.objectives.vae import iwae_nll

    gen = torch.Generator().manual_seed(seed)
    elbo = sum(float(iwae_nll(model, real[i:i + batch], 1, gen).sum()) for i in range(0, len(real), batch))
    nll = sum(float(iwae_nll(model, real[i:i + batch], k, gen).sum()) for i in range(0, len(real), batch))
    return {"neg_elbo": elbo / len(real), f"nll_iwae{k}": nll / len(real)}


def _extractor(classifier: str | None, model_cfg, device):
    if not classifier:
        raise ConfigError("fid, kid, pr and coverage need a feature extractor: pass --classifier CKPT (train one "
                          "with `genforge train configs/classifier/mnist.yaml`, or the glyphs/digits/fashion ones)")
    clf = im.load_classifier(classifier, device)
    if (clf.config.image_size, clf.config.channels) != (model_cfg.image_size, model_cfg.channels):
        raise ConfigError(f"--classifier {classifier}: trained on {clf.config.image_size}px x{clf.config.channels} "
                          f"images, the model makes {model_cfg.image_size}px x{model_cfg.channels}")
    return clf
