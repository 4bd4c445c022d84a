"""Images for /v1/images/generations: any module with `sample(n, cond=None, generator=None)`
returning (n, C, H, W) in [0, 1] (C = 1 grey, 3 RGB), encoded as base64 PNG."""
from __future__ import annotations

import base64
import io

import torch

from genforge.errors import CheckpointError


def to_png(image: torch.Tensor) -> bytes:
    """PNG bytes of one (C, H, W) image in [0, 1]."""
    from PIL import Image

    if image.dim() != 3 or image.size(0) not in (1, 3):
        raise CheckpointError(f"sample() returned an image of shape {tuple(image.shape)}; expected (1 or 3, H, W)")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # (C, H, W)
    array = pixels[0].numpy() if pixels.size(0) == 1 else pixels.permute(1, 2, 0).numpy()  # (H, W[, 3])
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def generate_images(model, n: int, seed: int | None = None) -> list[str]:
    """n base64-encoded PNGs sampled from model (seeded when seed is given)."""
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    with torch.inference_mode():
        images = model.sample(n, cond=None, generator=generator)  # (n, C, H, W)
    if images.dim() != 4 or images.size(0) != n:
        raise CheckpointError(f"sample({n}) returned shape {tuple(images.shape)}; expected ({n}, C, H, W)")
    return [base64.b64encode(to_png(img)).decode("ascii") for img in images]
