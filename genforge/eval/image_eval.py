"""`genforge eval` for image checkpoints: FID / KID / precision-recall / class coverage of samples
against the checkpoint's validation images, through a genforge-trained classifier's features;
the IWAE bound on -log p(x) for a VAE; accuracy for a classifier (a family of kind "label")."""
from __future__ import annotations

from pathlib import Path

import torch

from genforge import checkpoint as ckpt_io
from genforge.errors import ConfigError
from genforge.eval import image_metrics as im

PICTURE = ["fid", "kid", "pr", "coverage"]  # the metrics that compare samples through a classifier's features


def evaluate_images(ckpt: str | Path, metrics: list[str] | None = None, classifier: str | None = None,
                    num_samples: int = 2000, iwae_k: int = 100, device: str = "cpu", seed: int = 0) -> dict:
    """Metrics of an image checkpoint as a dict (names -> numbers). metrics=None: what the
    checkpoint allows (see default_metrics). ConfigError for a metric it cannot have."""
    from genforge.data.image_batches import checkpoint_images, to_float
    from genforge.models.vae import VAE

    loaded = ckpt_io.load(ckpt, device)
    model, config, kind = loaded.model, loaded.config, loaded.family.kind
    if kind not in ("image", "label"):
        raise ConfigError(f"{loaded.path}: a {config['family']} checkpoint is not an image model")
    family = config["family"]
    val, data = checkpoint_images(config)
    real = to_float(val.images[:num_samples]).to(device)
    out: dict = {"family": family, "real_images": len(real)}
    if kind == "label":  # a classifier: how often it is right
        out["val_acc"] = im.accuracy(model, real, torch.from_numpy(val.labels[:num_samples]).to(device))
        return out
    if metrics is None:
        metrics = default_metrics(isinstance(model, VAE), bool(classifier or data.classifier))
    if "nll" in metrics:
        if not isinstance(model, VAE):
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


def default_metrics(likelihood: bool, classifier: bool) -> list[str]:
    """A VAE's likelihood bound, and the sample metrics when a classifier gives them features
    (--classifier, or data.classifier of the run); a model without a likelihood (a GAN) gets the
    sample metrics, which then ask for a classifier."""
    return (["nll"] if likelihood else []) + (PICTURE if classifier or not likelihood else [])


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
                          "with `genforge train classifier/mnist`, or the glyphs/digits/fashion ones)")
    clf = im.load_classifier(classifier, device)
    if (clf.config.image_size, clf.config.channels) != (model_cfg.image_size, model_cfg.channels):
        raise ConfigError(f"--classifier {classifier}: trained on {clf.config.image_size}px x{clf.config.channels} "
                          f"images, the model makes {model_cfg.image_size}px x{model_cfg.channels}")
    return clf
