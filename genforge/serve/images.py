"""Images for /v1/images/generations: any module with `sample(n, cond=None, generator=None)`
returning (n, C, H, W) in [0, 1] (C = 1 grey, 3 RGB), or a text-to-image model's images of the
request's prompt, encoded as base64 PNG. A model makes one
size, its own: a request's `size` ("WIDTHxHEIGHT", as in OpenAI's API) must name it, or be
"auto" or absent."""
from __future__ import annotations

import base64
import io
import weakref

import torch

from genforge.errors import CheckpointError
from genforge.serve.errors import APIError

_SIZES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> "WxH", found once


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


def native_size(model) -> str:
    """The size model's images have, as "WIDTHxHEIGHT": its config's square image_size, else the
    shape of one sample (drawn once per model)."""
    if model not in _SIZES:
        side = getattr(getattr(model, "config", None), "image_size", 0)
        if side:
            _SIZES[model] = f"{side}x{side}"
        else:
            with torch.inference_mode():
                h, w = model.sample(1, cond=None, generator=torch.Generator(_device(model)).manual_seed(0)).shape[-2:]
            _SIZES[model] = f"{w}x{h}"
    return _SIZES[model]


def check_size(model, size: str | None) -> None:
    """APIError 400 unless size is None, "auto" or the model's own size."""
    if size is None or size == "auto":
        return
    own = native_size(model)
    if size.strip().lower() != own:
        raise APIError(400, f"size={size!r}: this model makes {own} images only; the sizes it has: {own} "
                       "(or leave size out)", "size", "invalid_size")


def generate_images(model, n: int, seed: int | None = None) -> list[str]:
    """n base64-encoded PNGs sampled from model (seeded when seed is given)."""
    generator = torch.Generator(device=_device(model)).manual_seed(seed) if seed is not None else None
    with torch.inference_mode():
        images = model.sample(n, cond=None, generator=generator)  # (n, C, H, W)
    if images.dim() != 4 or images.size(0) != n:
        raise CheckpointError(f"sample({n}) returned shape {tuple(images.shape)}; expected ({n}, C, H, W)")
    return [base64.b64encode(to_png(img)).decode("ascii") for img in images]


def check_prompt(model, req, clip: str | None = None) -> dict:
    """The generate() arguments of a text-to-image request, checked before any work: APIError 400
    naming the field for an empty or over-long prompt, an unknown word, an option the model does
    not take, or rerank out of range or without the server's CLIP (clip; other values out of range
    are the model's to refuse: a 400 from _one_shot)."""
    from genforge.api import check_rerank
    from genforge.errors import GenforgeError

    options = {k: v for k, v in (("steps", req.steps), ("sampler", req.sampler)) if v is not None}
    for name in options:
        if name not in model.options:
            raise APIError(400, f"{name}: this model does not take it (it takes: {', '.join(model.options)})", name)
    field = "prompt"
    try:
        model.encode([req.prompt])
        if req.negative_prompt:
            field = "negative_prompt"
            model.encode([req.negative_prompt], "negative prompt")
    except GenforgeError as e:
        raise APIError(400, str(e), field) from None
    rerank = 1 if req.rerank is None else req.rerank
    try:
        check_rerank(rerank)
    except GenforgeError as e:
        raise APIError(400, str(e), "rerank") from None
    if rerank > 1:
        if clip is None:
            raise APIError(400, "rerank: this server has no CLIP to rank candidates by (start it with --clip CKPT)",
                           "rerank")
        options.update(rerank=rerank, clip=clip)
    return dict(guidance=req.guidance_scale, negative_prompt=req.negative_prompt or None, **options)


def generate_from_prompt(model, prompt: str, n: int, seed: int | None, check, **kw) -> list[str]:
    """n base64-encoded PNGs of prompt from a text-to-image model; check() runs before every
    sampler step (the request's cancellation and timeout)."""
    with torch.inference_mode():
        images = model.generate(prompt, n, seed=seed, check=check, **kw)  # (n, C, H, W)
    return [base64.b64encode(to_png(img)).decode("ascii") for img in images]


def _device(model) -> torch.device:
    return next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
