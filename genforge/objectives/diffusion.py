"""The math of diffusion training, as plain functions: noise schedules, the forward process and
the regression targets. Samplers that run the reverse process live in genforge/sample/diffusion.py.

- DDPM (Ho et al. 2020): betas (eq. 2), alphas_cumprod, q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I)
  (eq. 4), the linear schedule 1e-4 .. 0.02 over 1000 steps (section 4).
- The cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17):
  ab_t = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2, betas clipped at 0.999.
- Prediction targets: eps (Ho et al.), x0, and v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0 (Salimans &
  Ho 2022, "Progressive Distillation", section 4).
- Rectified flow (Liu et al. 2022): x_t = (1 - t) x0 + t x1 for t in [0, 1], velocity target
  x1 - x0. Here x0 is the *start* of the flow (noise) and x1 its end (data), the paper's naming;
  in the DDPM functions x0 is the clean data, also the papers' naming.

Timesteps t of the DDPM functions are integer indices 0..T-1 into the schedule, one per batch
row (B,); ab_t broadcasts over the other dimensions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PREDICTIONS = ("eps", "x0", "v")


@dataclass(frozen=True)
class Schedule:
    """A discrete noise schedule of T steps, float64 tensors of shape (T,)."""
    betas: torch.Tensor
    alphas: torch.Tensor          # 1 - betas
    alphas_cumprod: torch.Tensor  # prod_{s <= t} alphas_s

    @property
    def num_steps(self) -> int:
        return self.betas.numel()


def from_betas(betas: torch.Tensor) -> Schedule:
    """The Schedule of betas (T,). Raises ValueError unless every beta lies in (0, 1)."""
    betas = betas.to(torch.float64)
    if betas.dim() != 1 or betas.numel() == 0 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError("betas must be a non-empty 1-D tensor with every value in (0, 1)")
    alphas = 1.0 - betas
    return Schedule(betas, alphas, torch.cumprod(alphas, dim=0))


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's linear schedule: betas evenly spaced from beta_start to beta_end."""
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    return from_betas(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64))


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal's cosine schedule: beta_t = min(1 - f(t+1)/f(t), max_beta), so that
    alphas_cumprod[t] = f(t+1)/f(0) wherever no beta was clipped."""
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    f = torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2  # (T + 1,)
    return from_betas((1 - f[1:] / f[:-1]).clamp(max=max_beta))


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] (B,) shaped to broadcast over like (B, ...), in like's dtype and device."""
    out = values.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise: a draw from q(x_t | x0) for t (B,)."""
    ab = _at(schedule.alphas_cumprod, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def target(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule: Schedule,
           prediction: str = "eps") -> torch.Tensor:
    """What a denoiser predicting `prediction` ("eps", "x0" or "v") regresses to at x_t =
    q_sample(x0, t, noise). Raises ValueError for another prediction."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        ab = _at(schedule.alphas_cumprod, t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0
    raise ValueError(f"prediction={prediction!r}: expected one of {PREDICTIONS}")


def to_x0_eps(pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: Schedule,
              prediction: str = "eps") -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) implied by a denoiser's prediction at x_t: the inverse of `target`, used by
    every sampler. Raises ValueError for an unknown prediction."""
    ab = _at(schedule.alphas_cumprod, t, x_t)
    a, b = ab.sqrt(), (1 - ab).sqrt()  # x_t = a x0 + b eps, with a^2 + b^2 = 1
    if prediction == "eps":
        return (x_t - b * pred) / a, pred
    if prediction == "x0":
        return pred, (x_t - a * pred) / b
    if prediction == "v":
        return a * x_t - b * pred, b * x_t + a * pred
    raise ValueError(f"prediction={prediction!r}: expected one of {PREDICTIONS}")


def flow_interpolant(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rectified flow's straight line x_t = (1 - t) x0 + t x1 for t (B,) in [0, 1]."""
    t = t.to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * x1


def flow_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Rectified flow's velocity target d x_t / d t = x1 - x0 (the same for every t)."""
    return x1 - x0
