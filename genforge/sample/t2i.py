"""Images from caption token ids with the diffusion text-to-image family: classifier-free guidance
(Ho & Salimans 2022) with an optional negative prompt, over the samplers of sample/diffusion.py
(rectified-flow Euler, DDIM, DDPM).

Guidance runs the conditional and the unconditional (or negative) predictions as one batch of
2B, one network call per step. Every random draw takes `generator`, so one seed gives one image,
bitwise; `check()` runs before every step (a server cancels or times out a request there).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from genforge.errors import ConfigError
from genforge.models.diffusion import SAMPLERS, DiT, check_sampling
from genforge.objectives.denoise import schedule_of
from genforge.sample import diffusion as samplers


@torch.no_grad()
def generate(model: DiT, ids: torch.Tensor, generator: torch.Generator | None = None, guidance: float | None = None,
             negative: torch.Tensor | None = None, check: Callable[[], None] | None = None, steps: int | None = None,
             sampler: str | None = None, eta: float = 0.0) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] of caption ids (B, T); negative (B, T) ids replace the
    unconditional model in guidance. Defaults come from the model config. ConfigError for a
    sampler, step count or guidance scale out of range."""
    c = model.config
    steps = c.steps if steps is None else steps
    guidance = c.guidance if guidance is None else guidance
    sampler = sampler or c.default_sampler
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler={sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if (sampler == "euler") != (c.prediction == "flow"):
        need = "euler" if c.prediction == "flow" else "ddim or ddpm"
        raise ConfigError(f"sampler={sampler}: this model (prediction={c.prediction}) samples with {need}")
    if sampler == "ddpm" and steps != c.train_steps:
        steps = c.train_steps  # ancestral sampling walks every step of the schedule
    check_sampling(c, steps, guidance)
    B, device = len(ids), ids.device
    dtype = next(model.parameters()).dtype
    cond = model.condition(ids)
    uncond = model.condition(negative) if negative is not None else model.condition(ids, torch.ones(B, dtype=torch.bool,
                                                                                                  device=device))
    both = (torch.cat([cond[0], uncond[0]]), torch.cat([cond[1], uncond[1]]))
    scale = 1000.0 if c.prediction == "flow" else 1.0  # the model's time: flow t in [0, 1) as t * 1000

    def denoise(x: torch.Tensor, t: torch.Tensor, _cond) -> torch.Tensor:
        if guidance == 1.0:
            return model(x, t.float() * scale, cond).float()
        pred_c, pred_u = model(torch.cat([x, x]).to(dtype), torch.cat([t, t]).float() * scale, both).float().chunk(2)
        return pred_u + guidance * (pred_c - pred_u)

    shape = (B, c.channels, c.image_size, c.image_size)
    if sampler == "euler":
        x = samplers.flow_sample(denoise, shape, steps, generator=generator, check=check, device=device)
    elif sampler == "ddim":
        x = samplers.ddim_sample(denoise, shape, schedule_of(model), steps, eta, prediction=c.prediction,
                                 generator=generator, check=check, device=device)
    else:
        x = samplers.ddpm_sample(denoise, shape, schedule_of(model), prediction=c.prediction, generator=generator,
                                 check=check, clip=1.0, device=device)
    return ((x.clamp(-1, 1) + 1) / 2).float()
