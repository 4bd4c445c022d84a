"""Diffusion samplers over any `denoise(x_t, t, cond) -> prediction` callable: DDPM ancestral
sampling (Ho et al. 2020, algorithm 2, posterior variance beta~_t), DDIM (Song et al. 2021,
eq. 12; eta=0 deterministic, eta=1 DDPM-like), rectified-flow Euler (Liu et al. 2022), and
classifier-free guidance (Ho & Salimans 2022) with an optional negative condition.

For DDPM and DDIM, t is a long tensor (B,) of schedule indices and the prediction is eps, x0
or v (genforge/objectives/diffusion.py); for the flow, t is a float tensor (B,) in [0, 1) and
the prediction is the velocity. Every random draw takes `generator`, so one seed reproduces an
image bitwise. `check()`, when given, is called before every step: a server cancels or times
out a request by raising from it, and the exception propagates out of the sampler.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from genforge.objectives.diffusion import Schedule, to_x0_eps

Denoise = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
Check = Callable[[], None]


def guided(denoise: Denoise, scale: float, negative: Any = None) -> Denoise:
    """Classifier-free guidance: pred = uncond + scale * (cond_pred - uncond), where uncond is
    denoise(x_t, t, negative): the negative condition, or None for the unconditional model.
    Scale 1 is the conditional prediction itself (the unconditional one is not computed)."""
    def denoise_guided(x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        pred = denoise(x_t, t, cond)
        if scale == 1.0:
            return pred
        uncond = denoise(x_t, t, negative)
        return uncond + scale * (pred - uncond)

    return denoise_guided


def _noise(shape: Sequence[int], generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def _start(shape, x_T, generator, device, dtype) -> torch.Tensor:
    return _noise(shape, generator, device, dtype) if x_T is None else x_T.clone()


@torch.no_grad()
def ddpm_sample(denoise: Denoise, shape: Sequence[int], schedule: Schedule, cond: Any = None,
                prediction: str = "eps", generator: torch.Generator | None = None, check: Check | None = None,
                x_T: torch.Tensor | None = None, clip: float | None = None, device=None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ancestral sampling through all T steps; returns x_0 of `shape` (B, ...).

    x_{t-1} = mean~(x_t, x0) + sqrt(beta~_t) z with beta~_t = beta_t (1 - ab_{t-1}) / (1 - ab_t);
    clip, when given, clamps the predicted x0 to [-clip, clip] first.
    """
    x = _start(shape, x_T, generator, device, dtype)  # (B, ...)
    betas, abar, alphas = schedule.betas, schedule.alphas_cumprod, schedule.alphas
    for i in reversed(range(schedule.num_steps)):
        if check is not None:
            check()
        t = torch.full((x.size(0),), i, dtype=torch.long, device=x.device)
        x0, _ = to_x0_eps(denoise(x, t, cond), x, t, schedule, prediction)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        ab_prev = float(abar[i - 1]) if i > 0 else 1.0
        ab, beta = float(abar[i]), float(betas[i])
        coef_x0 = beta * ab_prev**0.5 / (1 - ab)  # eq. 7
        coef_xt = (1 - ab_prev) * float(alphas[i]) ** 0.5 / (1 - ab)
        x = coef_x0 * x0 + coef_xt * x
        if i > 0:
            x = x + (beta * (1 - ab_prev) / (1 - ab)) ** 0.5 * _noise(x.shape, generator, x.device, x.dtype)
    return x


def ddim_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """The DDIM steps, descending: every (T // steps)-th index from 0 ("leading" spacing, as in
    the DDIM paper's code and diffusers' default). Raises ValueError unless 1 <= steps <= T."""
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps={steps} must lie in 1..{num_train_steps} (the schedule's length)")
    ratio = num_train_steps // steps
    return [i * ratio for i in reversed(range(steps))]


def ddim_step(x_t: torch.Tensor, pred: torch.Tensor, t: int, t_prev: int, schedule: Schedule, eta: float = 0.0,
              prediction: str = "eps", noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDIM update from step t to t_prev (< 0: to the data, ab = 1), Song et al. eq. 12:
    x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z, with
    sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev). z is `noise`, or
    drawn from `generator` when sigma > 0."""
    tt = torch.full((x_t.size(0),), t, dtype=torch.long, device=x_t.device)
    x0, eps = to_x0_eps(pred, x_t, tt, schedule, prediction)
    ab = float(schedule.alphas_cumprod[t])
    ab_prev = float(schedule.alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
    x = ab_prev**0.5 * x0 + max(0.0, 1 - ab_prev - sigma**2) ** 0.5 * eps
    if sigma > 0:
        z = noise if noise is not None else _noise(x_t.shape, generator, x_t.device, x_t.dtype)
        x = x + sigma * z
    return x


@torch.no_grad()
def ddim_sample(denoise: Denoise, shape: Sequence[int], schedule: Schedule, steps: int = 50, eta: float = 0.0,
                cond: Any = None, prediction: str = "eps", generator: torch.Generator | None = None,
                check: Check | None = None, x_T: torch.Tensor | None = None, device=None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DDIM sampling in `steps` steps; returns x_0 of `shape`. eta=0 draws only x_T, so a given
    x_T (or seed) gives the same image every run."""
    x = _start(shape, x_T, generator, device, dtype)  # (B, ...)
    times = ddim_timesteps(schedule.num_steps, steps)
    for t, t_prev in zip(times, [*times[1:], -1]):
        if check is not None:
            check()
        pred = denoise(x, torch.full((x.size(0),), t, dtype=torch.long, device=x.device), cond)
        x = ddim_step(x, pred, t, t_prev, schedule, eta, prediction, generator=generator)
    return x


@torch.no_grad()
def flow_sample(velocity: Denoise, shape: Sequence[int], steps: int = 50, cond: Any = None,
                generator: torch.Generator | None = None, check: Check | None = None,
                x0: torch.Tensor | None = None, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rectified-flow Euler integration of dx/dt = velocity(x, t, cond) from t=0 (noise x0, drawn
    from generator unless given) to t=1 in `steps` equal steps; returns x at t=1."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    x = _start(shape, x0, generator, device, dtype)  # (B, ...)
    dt = 1.0 / steps
    for i in range(steps):
        if check is not None:
            check()
        t = torch.full((x.size(0),), i * dt, dtype=x.dtype, device=x.device)
        x = x + dt * velocity(x, t, cond)
    return x
