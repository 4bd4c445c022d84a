"""Pictures from image models: sample grids, reconstructions, latent interpolation (a PNG strip
or an animated GIF) and latent traversals. Models need `sample(n, cond, generator, truncation)`;
latent paths also `render(z, y=None)` (latents to images in [0, 1]), and interpolating between
two inputs `encode`. Never imports training code.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from genforge.errors import GenforgeError


def to_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> one uint8 picture (rows, cols[, 3]) with `nrow` per row."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), np.uint8)
    pix = (images.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = pix[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_grid(images: torch.Tensor, out: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Write images (N, C, H, W) in [0, 1] as one PNG grid; return its path."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pic = Image.fromarray(to_grid(images, nrow))
    if scale > 1:
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    pic.save(out)
    return out


def save_each(images: torch.Tensor, folder: str | Path, scale: int = 1) -> list[Path]:
    """Write images (N, C, H, W) in [0, 1] as folder/000.png, 001.png, ...; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [save_grid(im[None], folder / f"{i:03d}.png", 1, scale) for i, im in enumerate(images)]


def save_captioned_grid(images: torch.Tensor, captions: list[str], out: str | Path, ncol: int = 4,
                        scale: int = 4) -> Path:
    """Write images (N, C, H, W) in [0, 1] as a PNG grid with each one's caption under it (wrapped
    to the cell's width, in matplotlib's bundled DejaVu Sans); return its path."""
    import textwrap

    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    n, _, h, w = images.shape
    cell_w, lines, line_h = w * scale, 3, 13
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 11)
    rows = -(-n // ncol)
    sheet = Image.new("RGB", (ncol * (cell_w + 8), rows * (h * scale + lines * line_h + 12)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    width_chars = max(8, cell_w // 6)
    for i, (im, text) in enumerate(zip(images, captions)):
        x0, y0 = (i % ncol) * (cell_w + 8) + 4, (i // ncol) * (h * scale + lines * line_h + 12) + 4
        pic = Image.fromarray(to_grid(im[None], 1, pad=0)).resize((cell_w, h * scale), Image.NEAREST)
        sheet.paste(pic, (x0, y0))
        for j, line in enumerate(textwrap.wrap(text, width_chars)[:lines]):
            pen.text((x0, y0 + h * scale + 2 + j * line_h), line, fill=(0, 0, 0), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def save_gif(frames: torch.Tensor, out: str | Path, scale: int = 4, ms: int = 120) -> Path:
    """An animated GIF of frames (T, C, H, W) in [0, 1], played forward then back."""
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pics = [Image.fromarray(to_grid(f[None], 1, pad=0)) for f in frames]
    pics = [p.resize((p.width * scale, p.height * scale), Image.NEAREST) for p in pics]
    pics = pics + pics[-2:0:-1]
    pics[0].save(out, save_all=True, append_images=pics[1:], duration=ms, loop=0)
    return out


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents a and b (D,) at t (T,) -> (T, D): stays where the
    Gaussian prior has its mass (White 2016), unlike a straight line."""
    omega = torch.arccos(torch.clamp(torch.dot(a / a.norm(), b / b.norm()), -1, 1))
    if omega.abs() < 1e-6:
        return torch.lerp(a[None], b[None], t[:, None])
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


@torch.no_grad()
def interpolate(model: torch.nn.Module, steps: int = 10, seed: int = 0, inputs: torch.Tensor | None = None,
                cls: int | None = None) -> torch.Tensor:
    """(steps, C, H, W) images along a latent path: between the encodings of two inputs (2, C, H, W)
    in a straight line where the model encodes (a VAE's posterior means), else between two prior
    draws along the sphere (slerp)."""
    if steps < 2:
        raise GenforgeError(f"steps={steps}: an interpolation needs at least 2")
    _check_latent(model)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    t = torch.linspace(0, 1, steps)
    if inputs is not None and hasattr(model, "encode"):
        a, b = model.encode(inputs.float().to(device))[0].cpu()
        z = torch.lerp(a[None], b[None], t[:, None])
    else:
        z = slerp(*torch.randn(2, model.config.latent_dim, generator=gen), t)
    return model.render(z.to(device), _classes(model, steps, cls, device))


@torch.no_grad()
def traverse(model: torch.nn.Module, dims: int = 8, steps: int = 9, span: float = 2.5, seed: int = 0) -> torch.Tensor:
    """(dims * steps, C, H, W): row i varies latent dimension i from -span to +span around one
    point: the prior's mean where the model encodes (a VAE), else one prior draw."""
    _check_latent(model)
    gen = torch.Generator().manual_seed(seed)
    dim = model.config.latent_dim
    base = torch.zeros(dim) if hasattr(model, "encode") else torch.randn(dim, generator=gen)
    dims = min(dims, dim)
    z = base.repeat(dims * steps, 1)
    values = torch.linspace(-span, span, steps)
    for i in range(dims):
        z[i * steps:(i + 1) * steps, i] = values
    device = next(model.parameters()).device
    return model.render(z.to(device), _classes(model, len(z), 0, device))


def _check_latent(model: torch.nn.Module) -> None:
    if not callable(getattr(model, "render", None)):
        raise GenforgeError(f"a {type(model).__name__} has no latent space to walk (it has no render(z))")


def _classes(model: torch.nn.Module, n: int, cls: int | None, device) -> torch.Tensor | None:
    """The class ids a class-conditional model decodes n latents with (cls, else 0); None otherwise."""
    if not getattr(model.config, "n_cond", 0):
        return None
    return torch.full((n,), cls or 0, dtype=torch.long, device=device)


def sample_images(model: torch.nn.Module, n: int, cls: int | None = None, seed: int = 0,
                  truncation: float | None = None) -> torch.Tensor:
    """n samples (n, C, H, W) in [0, 1]; cls picks the class of a conditional GAN."""
    num_classes = model.config.num_classes
    if cls is not None:
        if not getattr(model.config, "n_cond", 0):
            raise GenforgeError(f"--class {cls}: this model is not class-conditional (train a GAN with model.conditional=true)")
        if not 0 <= cls < num_classes:
            raise GenforgeError(f"--class {cls}: expected a class id in 0..{num_classes - 1}")
    gen = torch.Generator().manual_seed(seed)
    cond = None if cls is None else torch.tensor(cls)
    return model.sample(n, cond=cond, generator=gen, truncation=truncation)
