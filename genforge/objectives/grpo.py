"""Critic-free policy optimisation as an objective of the one loop:

- GRPO (Shao et al. 2024, DeepSeekMath §4.1): k samples per prompt, each sample's advantage is
  its reward standardised within its group, (r - mean) / (std + eps);
- RLOO (Ahmadian et al. 2024): the advantage is r minus the mean reward of the other k - 1
  samples of the same prompt (a leave-one-out baseline).

The advantage is shared by every token of a sample; the update is PPO's clipped surrogate plus
beta * KL(pi || ref) per token with the k3 estimator exp(ref - pi) - (ref - pi) - 1 (Schulman
2020), which is >= 0 and unbiased. No value model is needed: one phase, the policy.

The batches are rollouts (genforge/align/rollouts.py): `experience` scores a freshly sampled
rollout batch (a reward model or a Python callable) and computes the advantages and the
reference's log-probs once; the data source then serves grpo.epochs passes of minibatches. As
in PPO the losses are per-row sums over a response divided by grpo.max_new_tokens (exact
accumulation), and a checkpoint is a plain gpt checkpoint (the policy as "model").
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.objectives import ppo_math
from genforge.objectives.dpo import response_mask, token_logps
from genforge.objectives.ppo import RewardFn, check_block_size, plain, rollout_metrics, score


@dataclass
class GRPOConfig:
    base: str = ""  # the SFT checkpoint: initial policy and reference
    reward: str = ""  # a reward checkpoint trained from base, or FILE.py:FUNCTION / MODULE:FUNCTION (prompt, completion) -> float
    estimator: Literal["grpo", "rloo"] = "grpo"
    group_size: int = 4  # samples per prompt
    max_new_tokens: int = 48
    temperature: float = 1.0
    epochs: int = 1  # passes over each rollout batch
    minibatch: int = 16  # rollout rows per micro-batch (a loop step takes train.grad_accum of them)
    clip: float = 0.2
    beta: float = 0.04  # KL to the reference

    def __post_init__(self):
        if self.group_size < 2:
            raise ConfigError(f"grpo.group_size={self.group_size} must be >= 2 (advantages compare samples of a prompt)")
        if self.estimator not in ("grpo", "rloo"):
            raise ConfigError(f"grpo.estimator={self.estimator!r}: expected grpo or rloo")
        for key in ("max_new_tokens", "epochs", "minibatch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"grpo.{key}={getattr(self, key)} must be >= 1")
        if self.beta < 0 or not 0 < self.clip < 1:
            raise ConfigError(f"grpo.beta={self.beta} must be >= 0 and grpo.clip={self.clip} in (0, 1)")

    @property
    def samples_per_prompt(self) -> int:  # what the rollout source reads
        return self.group_size


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


class GRPOObjective:
    phases = ("main",)
    ema_module = "model"
    train_mode = False  # the loop keeps the policy in eval mode: dropout would make the first ratio differ from 1

    def __init__(self, policy: nn.Module, reward: nn.Module | RewardFn, cfg: GRPOConfig):
        check_block_size(policy, cfg.max_new_tokens, "grpo")
        self.model, self.reward, self.cfg = policy, reward, cfg
        self.reference = copy.deepcopy(policy).eval().requires_grad_(False)

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    @torch.no_grad()
    def experience(self, ids: torch.Tensor, start: torch.Tensor, length: torch.Tensor, prompts: list[str],
                   texts: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(per-row tensors the updates read, the batch's statistics) of rollouts ids (B, L) laid
        out as consecutive groups of group_size samples of a prompt."""
        mask = response_mask(ids, start, length).float()  # (B, L-1)
        scores = score(self.reward, ids, start, length, prompts, texts)
        adv = group_advantages(scores, self.cfg.group_size, self.cfg.estimator)[:, None].expand_as(mask)
        rows = {"ids": ids, "mask": mask, "old_logps": token_logps(plain(self.model), ids),
                "ref_logps": token_logps(self.reference, ids), "adv": adv.contiguous()}
        return rows, {"score": float(scores.mean()), "response_tokens": float(mask.sum(1).mean())}

    def loss(self, batch: dict, phase: str = "main"):
        cfg, mask = self.cfg, batch["mask"]
        logps = token_logps(self.model, batch["ids"])
        pg, m = ppo_math.policy_loss(logps, batch["old_logps"], batch["adv"], mask, cfg.clip, cfg.max_new_tokens)
        kl = ppo_math.row_mean(k3_kl(logps, batch["ref_logps"]), mask, cfg.max_new_tokens)
        loss = pg + cfg.beta * kl
        return loss, {"loss": loss.detach(), "policy_loss": pg.detach(), "kl": kl.detach(), "clip_frac": m["clip_frac"],
                      **batch["stats"], "tokens": int(mask.sum())}

    def evaluate(self, batches) -> dict[str, float]:
        return rollout_metrics(self.model, self.reference, self.reward, batches)
