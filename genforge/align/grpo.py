"""Critic-free policy optimisation with reward functions as plain Python callables:

- GRPO (Shao et al. 2024, DeepSeekMath §4.1): k samples per prompt, each sample's advantage is
  its reward standardised within its group, (r - mean) / (std + eps);
- RLOO (Ahmadian et al. 2024): the advantage is r minus the mean reward of the other k - 1
  samples of the same prompt (a leave-one-out baseline).

The advantage is shared by every token of a sample; the update is PPO's clipped surrogate plus
beta * KL(pi || ref) per token with the k3 estimator exp(ref - pi) - (ref - pi) - 1 (Schulman
2020), which is >= 0 and unbiased. No value model is needed.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genforge.align import ppo_math
from genforge.align.ppo import PPOConfig, apply_update, optimizer_settings, rollout
from genforge.errors import ConfigError
from genforge.objectives.dpo import response_mask, token_logps

RewardFn = Callable[[str, str], float]


@dataclass
class GRPOConfig:
    estimator: Literal["grpo", "rloo"] = "grpo"
    group_size: int = 4  # samples per prompt
    prompts_per_iter: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    epochs: int = 1
    clip: float = 0.2
    beta: float = 0.04  # KL to the reference
    lr: float = 1e-5
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.group_size < 2:
            raise ConfigError(f"grpo.group_size={self.group_size} must be >= 2 (advantages compare samples of a prompt)")
        if self.estimator not in ("grpo", "rloo"):
            raise ConfigError(f"grpo.estimator={self.estimator!r}: expected grpo or rloo")


def group_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "grpo") -> torch.Tensor:
    """Advantages (B,) of rewards (B,) laid out as consecutive groups of group_size samples."""
    r = rewards.view(-1, group_size)  # (prompts, k)
    if estimator == "rloo":
        return (r - (r.sum(1, keepdim=True) - r) / (group_size - 1)).flatten()
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).flatten()


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate exp(ref - pi) - (ref - pi) - 1 (>= 0)."""
    d = ref_logps - logps
    return torch.exp(d) - d - 1


class GRPOTrainer:
    def __init__(self, policy: nn.Module, tokenizer, rewards: Sequence[RewardFn], cfg: GRPOConfig):
        from genforge.train.optim import build_optimizer

        if not rewards:
            raise ConfigError("GRPO needs at least one reward function")
        self.policy, self.tokenizer, self.rewards, self.cfg = policy.eval(), tokenizer, list(rewards), cfg
        self.reference = copy.deepcopy(policy).requires_grad_(False)
        device = next(policy.parameters()).device
        self.opt = build_optimizer(policy.parameters(), optimizer_settings(cfg.lr, cfg.grad_clip), device)
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self._sampling = PPOConfig(samples_per_prompt=cfg.group_size, max_new_tokens=cfg.max_new_tokens,
                                   temperature=cfg.temperature)

    def step(self, prompts: list[str]) -> dict[str, float]:
        """One iteration: group_size samples per prompt, the summed rewards, cfg.epochs updates."""
        cfg = self.cfg
        r = rollout(self.policy, self.tokenizer, prompts, self._sampling, self.generator)
        scores = torch.tensor([sum(float(fn(p, t)) for fn in self.rewards) for p, t in zip(r.prompts, r.texts)],
                              device=r.ids.device)
        adv = group_advantages(scores, cfg.group_size, cfg.estimator)[:, None]  # (B, 1): every token shares it
        mask = response_mask(r.ids, r.start, r.length).float()
        with torch.no_grad():
            old_logps = token_logps(self.policy, r.ids)
            ref_logps = token_logps(self.reference, r.ids)
        for _ in range(cfg.epochs):
            logps = token_logps(self.policy, r.ids)
            pg, m = ppo_math.policy_loss(logps, old_logps, adv.expand_as(logps), mask, cfg.clip)
            kl = ppo_math.masked_mean(k3_kl(logps, ref_logps), mask)
            apply_update(pg + cfg.beta * kl, self.policy, self.opt, cfg.grad_clip)
        return {"score": float(scores.mean()), "policy_loss": pg.item(), "kl": kl.item(),
                "clip_frac": m["clip_frac"].item()}
