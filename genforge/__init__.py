"""genforge: one toolkit for the whole life of a generative model."""
from __future__ import annotations

__version__ = "0.1.0"


def load(ckpt, device: str = "auto", dtype: str = "auto"):
    """Load a checkpoint directory (or a run directory's latest) for generation.

    Returns a genforge.api.TextModel with .generate(...) and .stream(...) for a language model;
    for an image model (VAE, GAN), the module itself in eval mode, with
    .sample(n, cond=None, generator=None) -> (n, C, H, W) images in [0, 1].
    Raises CheckpointError for anything else.
    """
    from genforge.sample.images import IMAGE_FAMILIES, load_image_model
    from genforge.train import checkpoint as ckpt_io
    from genforge.train.device import resolve_device

    if ckpt_io.read_config(ckpt_io.resolve(ckpt)).get("family") in IMAGE_FAMILIES:
        return load_image_model(ckpt, str(resolve_device(device)))[0]
    from genforge.api import TextModel

    return TextModel.load(ckpt, device=device, dtype=dtype)
