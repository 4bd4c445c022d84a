"""CLIPScore (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning") with a CLIP genforge trained (models/clip.py): 100 * max(cos(image, caption), 0),
the scale torchmetrics' CLIPScore reports (Hessel et al. weigh the cosine by w = 2.5 instead).

And the swap test: on held-out relation scenes, whether the true caption ("a red circle above a
blue square") scores higher than the caption with subject and object swapped around the same
relation words ("a blue square above a red circle"), which a bag of words cannot tell apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genforge.data import scenes
from genforge.data.caption_batches import encode_captions
from genforge.errors import CheckpointError, DataError


def load_clip(ckpt: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, object]:
    """(model, caption tokenizer) of a clip checkpoint. CheckpointError for another family or a
    checkpoint without its tokenizer."""
    from genforge import checkpoint as ckpt_io

    loaded = ckpt_io.load(ckpt, device)
    if loaded.config.get("family") != "clip":
        raise CheckpointError(f"{loaded.path}: family {loaded.config.get('family')!r}; CLIPScore needs a clip "
                              "checkpoint (genforge train clip/scenes)")
    tokenizer = loaded.tokenizer
    if tokenizer is None:
        from genforge.data.tokenizer import Tokenizer

        if not (loaded.path / "tokenizer.json").is_file():
            raise CheckpointError(f"{loaded.path}: no tokenizer.json; a clip checkpoint keeps its caption tokenizer")
        tokenizer = Tokenizer.from_file(loaded.path / "tokenizer.json")
    return loaded.model, tokenizer


def as_model_images(images, model: nn.Module) -> torch.Tensor:
    """Images as the model reads them, (N, C, H, W) floats in [0, 1] at its image_size: from
    (N, C, H, W) floats in [0, 1] or (N, H, W, C) uint8; grey is repeated to RGB and RGB averaged
    to grey where the model wants the other. DataError for any other layout."""
    c = model.config
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4:
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    if not (isinstance(images, torch.Tensor) and images.is_floating_point() and images.ndim == 4
            and images.shape[1] in (1, 3)):
        shape = getattr(images, "shape", None)
        raise DataError(f"images of shape {shape}: expected (N, C, H, W) floats in [0, 1] or (N, H, W, C) uint8, "
                        "C = 1 or 3")
    x = images.float()
    if x.shape[1] != c.channels:
        x = x.mean(1, keepdim=True) if c.channels == 1 else x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (c.image_size, c.image_size):
        x = F.interpolate(x, size=(c.image_size, c.image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


@torch.no_grad()
def clip_score(model: nn.Module, tokenizer, images, captions: list[str], batch: int = 256) -> torch.Tensor:
    """CLIPScore (N,) of each image against its caption: 100 * max(cos, 0). DataError when the
    counts differ or a caption has a word the tokenizer does not know or is too long."""
    if len(images) != len(captions):
        raise DataError(f"{len(images)} images but {len(captions)} captions")
    device = next(model.parameters()).device
    x = as_model_images(images, model)
    ids = torch.from_numpy(encode_captions(tokenizer, captions, model.config.text_len))
    scores = []
    for i in range(0, len(x), batch):
        img = model.encode_image(x[i:i + batch].to(device))
        txt = model.encode_text(ids[i:i + batch].to(device))
        scores.append(100 * (img * txt).sum(-1).clamp(min=0).float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def swapped_caption(spec: dict) -> str:
    """A relation scene's caption with subject and object swapped around the same relation words."""
    i, words, j = spec["relation"]
    return scenes.caption({**spec, "relation": [j, words, i]})


def swap_accuracy(model: nn.Module, tokenizer, vocab: str = "shapes", n: int = 512, seed: int = 0) -> float:
    """The share of held-out relation scenes (of n drawn at the model's image size) whose true
    caption scores higher than its swapped one."""
    images, captions, specs = scenes.make_scenes(n, "heldout", model.config.image_size, seed, vocab)
    keep = [k for k, s in enumerate(specs) if s["kind"] == "relation" and swapped_caption(s) != s["caption"]]
    if not keep:
        raise DataError(f"no relation scenes among {n} held-out {vocab} scenes")
    true = clip_score(model, tokenizer, images[keep], [captions[k] for k in keep])
    swapped = clip_score(model, tokenizer, images[keep], [swapped_caption(specs[k]) for k in keep])
    return float((true > swapped).double().mean())
