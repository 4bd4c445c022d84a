"""genforge: one toolkit for the whole life of a generative model."""
from __future__ import annotations

__version__ = "0.1.0"


def load(ckpt, device: str = "auto", dtype: str = "auto"):
    """Load a checkpoint directory (or a run directory's latest) for generation.

    Returns a genforge.api.TextModel with .generate(...) and .stream(...).
    """
    from genforge.api import TextModel

    return TextModel.load(ckpt, device=device, dtype=dtype)
