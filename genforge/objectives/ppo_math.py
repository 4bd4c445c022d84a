"""The arithmetic of PPO for language models (Schulman et al. 2017; Ziegler et al. 2019; the
layout of TRL's PPOTrainer), on per-token tensors (B, T) with a mask of the response tokens.

- kl_rewards: r_t = -kl_coef * (log pi(a_t) - log ref(a_t)), plus the reward model's score on
  the last response token (the KL penalty pulls the policy back toward the reference);
- gae: generalised advantage estimation (Schulman et al. 2016, eq. 16);
- policy_loss: the clipped surrogate, max(-A r, -A clip(r, 1-eps, 1+eps)), r = pi/pi_old;
- value_loss: clipped squared error of the value head.

The losses average over tokens as masked_mean does, or, given `width` (the longest a response
can be), as sums over each row's tokens divided by that constant and averaged over rows (Liu et
al. 2025, "Understanding R1-Zero-Like Training", §3.1): a mean over examples, so gradient
accumulation over micro-batches of equal row counts gives the gradient of their union exactly.
Where every response runs to its full length the two are the same.
"""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def row_mean(x: torch.Tensor, mask: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """masked_mean(x, mask), or with width: mean over rows of sum_t x * mask / width."""
    if width is None:
        return masked_mean(x, mask)
    return ((x * mask).sum(1) / width).mean()


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x shifted and scaled to mean 0, variance 1 over the masked entries (0 elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def kl_rewards(logps: torch.Tensor, ref_logps: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor,
               kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards (B, T), per-row KL estimate sum_t (log pi - log ref) (B,)). The score
    (B,) is added at each row's last masked token."""
    kl = (logps - ref_logps) * mask  # (B, T)
    rewards = -kl_coef * kl
    last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & mask.bool()  # the last response token
    rewards = rewards + last * scores[:, None]
    return rewards, kl.sum(1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), each (B, T). The episode ends after each row's last masked token:
    no value is bootstrapped past it."""
    mask = mask.to(values.dtype)
    T = rewards.size(1)
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        cont = mask[:, t + 1] if t + 1 < T else torch.zeros_like(running)  # 1 while the response goes on
        next_value = values[:, t + 1] * cont if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * cont * running
        adv[:, t] = running
    adv = adv * mask
    return adv, (adv + values) * mask


def policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float = 0.2, width: int | None = None) -> tuple[torch.Tensor, dict]:
    """The clipped surrogate loss (a mean over masked tokens, or row_mean with width) and the
    fraction of tokens clipped."""
    ratio = torch.exp(logps - old_logps)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    loss = row_mean(torch.maximum(unclipped, clipped), mask, width)
    frac = masked_mean((clipped > unclipped).float(), mask)
    return loss, {"clip_frac": frac.detach(), "ratio": masked_mean(ratio, mask).detach()}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2, width: int | None = None) -> torch.Tensor:
    """0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2), a mean over masked tokens (or row_mean
    with width)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * row_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask, width)
