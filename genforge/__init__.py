"""genforge: one toolkit for the whole life of a generative model."""
from __future__ import annotations

from genforge.version import __version__

__all__ = ["__version__", "load"]


def load(ckpt, device: str = "auto", dtype: str = "auto"):
    """Load a checkpoint directory (or a run directory's latest) for generation.

    Returns a genforge.api.TextModel with .generate(...) and .stream(...) for a language model;
    for an image model (VAE, GAN), the module itself in eval mode, with
    .sample(n, cond=None, generator=None) -> (n, C, H, W) images in [0, 1].
    Raises CheckpointError for anything else.
    """
    from genforge.api import load as api_load

    return api_load(ckpt, device, dtype)
