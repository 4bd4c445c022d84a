"""RLHF with PPO (Ouyang et al. 2022; Ziegler et al. 2019) as an objective of the one loop: a
policy, a value model (initialised from the reward model, as TRL's PPOTrainer does, or from the
policy's trunk with a fresh head), a frozen reference, and a reward (a reward model or a Python
callable (prompt, completion) -> float). The arithmetic is genforge/objectives/ppo_math.py.

The batches are rollouts (genforge/align/rollouts.py): when the data source samples a rollout
batch from the current policy it calls `experience`, which scores it, adds the KL penalty to the
reference and estimates advantages (GAE, whitened over the batch); it then serves the rows in
ppo.epochs passes of minibatches, one micro-batch per draw. Each loop step updates the policy
(phase "main": the clipped surrogate) and the value model (phase "value": the clipped value
loss, at train.lr x ppo.value_lr_scale). The losses are per-row sums over a response divided
by ppo.max_new_tokens, averaged over rows (ppo_math.row_mean), so accumulation is exact.

Checkpoints save the policy as "model" (a plain gpt checkpoint: sample, serve and eval read it)
and the value model as "value" (for resume); the reference and the reward model are rebuilt
from their checkpoints.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genforge.errors import ConfigError
from genforge.models.reward import RewardModel, trunk
from genforge.objectives import ppo_math
from genforge.objectives.dpo import response_mask, token_logps

RewardFn = Callable[[str, str], float]  # (prompt, completion) -> reward


@dataclass
class PPOConfig:
    base: str = ""  # the SFT checkpoint: initial policy and reference
    reward: str = ""  # a reward checkpoint trained from base, or FILE.py:FUNCTION / MODULE:FUNCTION (prompt, completion) -> float
    samples_per_prompt: int = 2
    max_new_tokens: int = 48
    temperature: float = 1.0
    epochs: int = 2  # passes over each rollout batch
    minibatch: int = 8  # rollout rows per micro-batch (a loop step takes train.grad_accum of them)
    clip: float = 0.2
    value_clip: float = 0.2
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    value_lr_scale: float = 10.0  # the value model's lr = train.lr x this

    def __post_init__(self):
        for key in ("samples_per_prompt", "max_new_tokens", "epochs", "minibatch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"ppo.{key}={getattr(self, key)} must be >= 1")
        if self.kl_coef < 0 or not 0 < self.clip < 1:
            raise ConfigError(f"ppo.kl_coef={self.kl_coef} must be >= 0 and ppo.clip={self.clip} in (0, 1)")
        if self.value_lr_scale <= 0:
            raise ConfigError(f"ppo.value_lr_scale={self.value_lr_scale} must be > 0")


class Critic(nn.Module):
    """The value model: a reward model's trunk and head, read as a value after every token. Its
    forward is what DistributedDataParallel wraps; it holds no lm_head, which values never use."""

    def __init__(self, rm: RewardModel):
        super().__init__()
        self.transformer, self.head = rm.gpt.transformer, rm.head

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """A value after every token (B, T) of idx (B, T)."""
        return self.head(trunk(self, idx))[..., 0]  # trunk reads only .transformer


def plain(module: nn.Module) -> nn.Module:
    """The module behind a DistributedDataParallel wrapper (the loop wraps modules() under torchrun)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def check_block_size(policy: nn.Module, max_new_tokens: int, key: str) -> None:
    if max_new_tokens >= policy.config.block_size:
        raise ConfigError(f"{key}.max_new_tokens={max_new_tokens} must be < the policy's block_size "
                          f"({policy.config.block_size}): prompt and response share one forward pass")


@torch.no_grad()
def score(reward: nn.Module | RewardFn, ids: torch.Tensor, start: torch.Tensor, length: torch.Tensor,
          prompts: list[str], texts: list[str]) -> torch.Tensor:
    """The reward (B,) of each rollout: the reward model's score of its tokens, or the callable's
    of its text."""
    if isinstance(reward, nn.Module):
        return reward.score(ids, start, length).float()
    return torch.tensor([float(reward(p, t)) for p, t in zip(prompts, texts)], device=ids.device)


@torch.no_grad()
def rollout_metrics(policy: nn.Module, reference: nn.Module, reward, batches) -> dict[str, float]:
    """val_score (mean reward) and val_kl (mean over responses of sum_t log pi - log ref, nats) of
    rollouts on held-out prompts (dicts of ids, start, length, prompts, texts)."""
    total_score, total_kl, n = 0.0, 0.0, 0
    for b in batches:
        mask = response_mask(b["ids"], b["start"], b["length"])
        kl = ((token_logps(policy, b["ids"]) - token_logps(reference, b["ids"])) * mask).sum(1)
        total_score += float(score(reward, b["ids"], b["start"], b["length"], b["prompts"], b["texts"]).sum())
        total_kl += float(kl.sum())
        n += b["ids"].size(0)
    return {"val_score": total_score / n, "val_kl": total_kl / n} if n else {}


class PPOObjective:
    phases = ("main", "value")  # "main": the policy, whose metrics the log shows unprefixed
    ema_module = "model"
    train_mode = False  # the loop keeps the modules in eval mode: dropout would make the first ratio differ from 1

    def __init__(self, policy: nn.Module, value: RewardModel, reward: nn.Module | RewardFn, cfg: PPOConfig):
        check_block_size(policy, cfg.max_new_tokens, "ppo")
        self.model, self.value, self.reward, self.cfg = policy, Critic(value), reward, cfg
        self.reference = copy.deepcopy(policy).eval().requires_grad_(False)
        self.lr_scales = {"value": cfg.value_lr_scale}

    def parameters(self, phase: str):
        return (self.model if phase == "main" else self.value).parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "value": self.value}

    @torch.no_grad()
    def experience(self, ids: torch.Tensor, start: torch.Tensor, length: torch.Tensor, prompts: list[str],
                   texts: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(per-row tensors the updates read, the rollout batch's statistics) of freshly sampled
        rollouts ids (B, L) whose responses are [start, length)."""
        cfg = self.cfg
        mask = response_mask(ids, start, length).float()  # (B, L-1)
        old_logps = token_logps(plain(self.model), ids)
        ref_logps = token_logps(self.reference, ids)
        old_values = plain(self.value)(ids[:, :-1]).float()
        scores = score(self.reward, ids, start, length, prompts, texts)
        rewards, kl = ppo_math.kl_rewards(old_logps, ref_logps, scores, mask, cfg.kl_coef)
        adv, returns = ppo_math.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        adv = ppo_math.whiten(adv, mask)
        rows = {"ids": ids, "mask": mask, "old_logps": old_logps, "old_values": old_values, "adv": adv,
                "returns": returns}
        return rows, {"score": float(scores.mean()), "kl": float(kl.mean()), "response_tokens": float(mask.sum(1).mean())}

    def loss(self, batch: dict, phase: str = "main"):
        cfg, mask = self.cfg, batch["mask"]
        if phase == "main":
            logps = token_logps(self.model, batch["ids"])
            loss, m = ppo_math.policy_loss(logps, batch["old_logps"], batch["adv"], mask, cfg.clip, cfg.max_new_tokens)
            return loss, {"loss": loss.detach(), "clip_frac": m["clip_frac"], "ratio": m["ratio"], **batch["stats"],
                          "tokens": int(mask.sum())}
        values = self.value(batch["ids"][:, :-1]).float()
        loss = ppo_math.value_loss(values, batch["old_values"], batch["returns"], mask, cfg.value_clip,
                                   cfg.max_new_tokens)
        return loss, {"loss": loss.detach()}

    def evaluate(self, batches) -> dict[str, float]:
        return rollout_metrics(self.model, self.reference, self.reward, batches)
