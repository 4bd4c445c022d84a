"""What the CLI's image verbs do: `generate` (a grid of samples, reconstructions or a traversal)
and `interpolate` (a PNG strip or an animated GIF) from the checkpoint of an image family."""
from __future__ import annotations

from pathlib import Path

import torch

from genforge import checkpoint as ckpt_io
from genforge.errors import GenforgeError
from genforge.families import of_kind
from genforge.sample import images as img


def load_images_model(ckpt: str | Path, device: str = "cpu"):
    """(the module that samples, the checkpoint's Loaded) of an image-making checkpoint; a clear
    error for any other."""
    loaded = ckpt_io.load(ckpt, device)
    if loaded.family.kind != "image":
        raise GenforgeError(f"{ckpt}: a {loaded.config['family']} checkpoint makes no images "
                            f"(image families: {', '.join(of_kind('image'))})")
    return loaded.model, loaded


def generate_grid(ckpt: str | Path, out: str | Path, num_samples: int = 64, cls: int | None = None, seed: int = 0,
                  truncation: float | None = None, show: str = "samples", device: str = "cpu") -> Path:
    """Write a PNG grid: `samples`, `reconstructions` (models that encode, e.g. a VAE: validation
    images above their reconstructions) or `traversal` (rows: latent dimensions). Returns the path."""
    model, loaded = load_images_model(ckpt, device)
    if show == "reconstructions":
        if not callable(getattr(model, "reconstruct", None)):
            raise GenforgeError(f"--show reconstructions: a {loaded.config['family']} does not reconstruct its inputs")
        x = _inputs(loaded.config, num_samples).to(device)
        pics, nrow = torch.cat([x, model.reconstruct(x)]), len(x)
    elif show == "traversal":
        pics, nrow = img.traverse(model, seed=seed), 9
    else:
        pics, nrow = img.sample_images(model, num_samples, cls, seed, truncation), None
    return img.save_grid(pics, out, nrow, scale=_scale(pics))


def interpolate_to(ckpt: str | Path, out: str | Path, steps: int = 10, seed: int = 0, cls: int | None = None,
                   device: str = "cpu") -> Path:
    """Write an interpolation as a PNG strip (.png) or an animated GIF (.gif). A model that encodes
    (a VAE) goes between two validation images of different classes; others between two latent draws."""
    model, loaded = load_images_model(ckpt, device)
    inputs = _pair(loaded.config, seed) if hasattr(model, "encode") else None
    frames = img.interpolate(model, steps, seed, inputs, cls)
    out = Path(out)
    if out.suffix.lower() == ".gif":
        return img.save_gif(frames, out)
    if out.suffix.lower() != ".png":
        raise GenforgeError(f"--out {out}: expected a .png (strip) or .gif (animation) file name")
    return img.save_grid(frames, out, nrow=len(frames), scale=_scale(frames))


def _scale(pics: torch.Tensor) -> int:
    return max(1, 64 // pics.shape[-1])  # small images (8x8 digits) are enlarged to be seen


def _inputs(config: dict, n: int) -> torch.Tensor:
    from genforge.data.image_batches import checkpoint_images, to_float

    val, _ = checkpoint_images(config)
    return to_float(val.images[:n])


def _pair(config: dict, seed: int) -> torch.Tensor | None:
    """Two validation images (of different classes when labelled), or None if the data is gone."""
    from genforge.data.image_batches import checkpoint_images, to_float
    from genforge.errors import DataError

    try:
        val, _ = checkpoint_images(config)
    except DataError:
        return None  # the training data is not here: interpolate between prior draws
    g = torch.Generator().manual_seed(seed)
    i = int(torch.randint(len(val), (1,), generator=g))
    others = [j for j in range(len(val)) if val.labels[j] != val.labels[i]] or [j for j in range(len(val)) if j != i]
    j = others[int(torch.randint(len(others), (1,), generator=g))]
    return to_float(val.images[[i, j]])
