"""RLHF with PPO (Ouyang et al. 2022; Ziegler et al. 2019): rollouts from the policy through
genforge/sample/text.py, a reward from the reward model (or any Python callable), a KL penalty to
the frozen reference, a separate value model initialised from the reward model (as TRL's
PPOTrainer does), GAE and the clipped objective (genforge/align/ppo_math.py).

PPO needs rollouts between updates, so it keeps its own small loop (DESIGN.md) and reuses the one
loop's parts: the optimizer builder, the checkpoint writer, the run log. Models run in eval mode
throughout: dropout would make the first epoch's ratio differ from 1.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genforge.align import ppo_math
from genforge.config import TrainConfig
from genforge.errors import ConfigError
from genforge.objectives.dpo import response_mask, token_logps
from genforge.sample.text import generate_ids, prompt_ids
from genforge.train import checkpoint as ckpt_io
from genforge.train.log import RunLog
from genforge.train.optim import build_optimizer

RewardFn = Callable[[str, str], float]  # (prompt, completion) -> reward


@dataclass
class PPOConfig:
    iterations: int = 40  # rollout + update rounds
    prompts_per_iter: int = 8
    samples_per_prompt: int = 2
    max_new_tokens: int = 48
    temperature: float = 1.0
    epochs: int = 2  # passes over each batch of rollouts
    minibatch: int = 8
    clip: float = 0.2
    value_clip: float = 0.2
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    lr: float = 1e-5
    value_lr: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for key in ("iterations", "prompts_per_iter", "samples_per_prompt", "max_new_tokens", "epochs", "minibatch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"ppo.{key}={getattr(self, key)} must be >= 1")
        if self.kl_coef < 0 or not 0 < self.clip < 1:
            raise ConfigError(f"ppo.kl_coef={self.kl_coef} must be >= 0 and ppo.clip={self.clip} in (0, 1)")


@dataclass
class Rollouts:
    ids: torch.Tensor  # (B, L) prompt + response, right-padded with 0
    start: torch.Tensor  # (B,) first response token
    length: torch.Tensor  # (B,) real tokens
    prompts: list[str]
    texts: list[str]  # the decoded responses


@torch.no_grad()
def rollout(policy: nn.Module, tokenizer, prompts: list[str], cfg: PPOConfig, generator: torch.Generator) -> Rollouts:
    """cfg.samples_per_prompt samples of each prompt, cut after an end-of-text token."""
    device = next(policy.parameters()).device
    keep = policy.config.block_size - cfg.max_new_tokens  # prompt + response fit one forward pass
    rows, row_prompts, texts = [], [], []
    for prompt in prompts:
        p = prompt_ids(tokenizer, prompt)[-keep:]
        idx = torch.tensor([p] * cfg.samples_per_prompt, device=device)
        new = generate_ids(policy, idx, cfg.max_new_tokens, temperature=cfg.temperature, generator=generator)
        for row in new.tolist():
            end = row.index(tokenizer.eot_id) + 1 if tokenizer.eot_id in row else len(row)
            rows.append((p + row[:end], len(p)))
            row_prompts.append(prompt)
            texts.append(tokenizer.decode([t for t in row[:end] if t != tokenizer.eot_id]))
    ids = torch.zeros(len(rows), max(len(r) for r, _ in rows), dtype=torch.long)
    for i, (r, _) in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    start = torch.tensor([s for _, s in rows])
    length = torch.tensor([len(r) for r, _ in rows])
    return Rollouts(ids.to(device), start.to(device), length.to(device), row_prompts, texts)


class PPOTrainer:
    """Policy, reference, value model and reward; `step(prompts)` is one PPO iteration."""

    def __init__(self, policy: nn.Module, tokenizer, reward: nn.Module | RewardFn, value: nn.Module,
                 cfg: PPOConfig):
        if cfg.max_new_tokens >= policy.config.block_size:
            raise ConfigError(f"ppo.max_new_tokens={cfg.max_new_tokens} must be < the policy's block_size "
                              f"({policy.config.block_size})")
        self.policy, self.tokenizer, self.reward, self.value, self.cfg = policy, tokenizer, reward, value, cfg
        self.reference = copy.deepcopy(policy).requires_grad_(False)
        for m in (policy, self.reference, value, *([reward] if isinstance(reward, nn.Module) else [])):
            m.eval()
        device = next(policy.parameters()).device
        self.opt = build_optimizer(policy.parameters(), optimizer_settings(cfg.lr, cfg.grad_clip), device)
        self.value_opt = build_optimizer(value.parameters(), optimizer_settings(cfg.value_lr, cfg.grad_clip), device)
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)  # minibatch order

    @torch.no_grad()
    def score(self, r: Rollouts) -> torch.Tensor:
        """The reward of each rollout (B,)."""
        if isinstance(self.reward, nn.Module):
            return self.reward.score(r.ids, r.start, r.length).float()
        return torch.tensor([float(self.reward(p, t)) for p, t in zip(r.prompts, r.texts)], device=r.ids.device)

    def step(self, prompts: list[str]) -> dict[str, float]:
        """Roll out, score, estimate advantages, then cfg.epochs passes of clipped updates."""
        cfg = self.cfg
        r = rollout(self.policy, self.tokenizer, prompts, cfg, self.generator)
        mask = response_mask(r.ids, r.start, r.length).float()  # (B, L-1)
        with torch.no_grad():
            old_logps = token_logps(self.policy, r.ids)
            ref_logps = token_logps(self.reference, r.ids)
            old_values = self.value.values(r.ids[:, :-1]).float()
            scores = self.score(r)
            rewards, kl = ppo_math.kl_rewards(old_logps, ref_logps, scores, mask, cfg.kl_coef)
            adv, returns = ppo_math.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            adv = ppo_math.whiten(adv, mask)
        sums: dict[str, float] = {}
        for _ in range(cfg.epochs):
            for mb in np.array_split(self.rng.permutation(len(r.ids)), max(1, len(r.ids) // cfg.minibatch)):
                mb = torch.from_numpy(mb).to(r.ids.device)
                metrics = self._update(r.ids[mb], mask[mb], old_logps[mb], old_values[mb], adv[mb], returns[mb])
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
        n = cfg.epochs * max(1, len(r.ids) // cfg.minibatch)
        return {**{k: v / n for k, v in sums.items()}, "score": float(scores.mean()), "kl": float(kl.mean()),
                "response_tokens": float(mask.sum(1).mean())}

    def _update(self, ids, mask, old_logps, old_values, adv, returns) -> dict[str, float]:
        logps = token_logps(self.policy, ids)
        loss, m = ppo_math.policy_loss(logps, old_logps, adv, mask, self.cfg.clip)
        apply_update(loss, self.policy, self.opt, self.cfg.grad_clip)
        values = self.value.values(ids[:, :-1]).float()
        vloss = ppo_math.value_loss(values, old_values, returns, mask, self.cfg.value_clip)
        apply_update(vloss, self.value, self.value_opt, self.cfg.grad_clip)
        return {"policy_loss": loss.item(), "value_loss": vloss.item(), "clip_frac": m["clip_frac"].item()}


def apply_update(loss: torch.Tensor, module: nn.Module, opt, grad_clip: float) -> None:
    """Backward, clip module's gradients to grad_clip, step, clear."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad], grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def optimizer_settings(lr: float, grad_clip: float) -> TrainConfig:
    """AdamW settings for build_optimizer: no weight decay (it would pull weights off the SFT model)."""
    return TrainConfig(lr=lr, min_lr=0.0, weight_decay=0.0, grad_clip=grad_clip)


def train_ppo(trainer: PPOTrainer, prompts: list[str], out: str | Path, config: dict, tokenizer_file: Path,
              progress: bool = True) -> Path:
    """cfg.iterations PPO steps over prompts (cycled in a seeded order); log to out/metrics.csv,
    draw out/loss.png, save the policy as a `gpt` checkpoint out/step-N; return its path.
    A PPO run does not resume: its checkpoint holds the weights only."""
    cfg, out = trainer.cfg, Path(out)
    if not prompts:
        raise ConfigError("PPO needs at least one prompt")
    (out / "metrics.csv").unlink(missing_ok=True)  # a fresh run: PPO does not resume, its log starts over
    log = RunLog(out)
    rng = np.random.default_rng(cfg.seed)
    order: list[int] = []
    for it in range(1, cfg.iterations + 1):
        batch = []
        while len(batch) < cfg.prompts_per_iter:
            if not order:
                order = rng.permutation(len(prompts)).tolist()
            batch.append(prompts[order.pop()])
        values = trainer.step(batch)
        log.scalars(it, values)
        if progress:
            print(f"ppo {it}/{cfg.iterations}: " + " ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)
    log.plot(wait=True)
    log.close()
    path = ckpt_io.save_checkpoint(out / f"step-{cfg.iterations:07d}", {**config, "ppo": dataclasses.asdict(cfg)},
                                   {"model": trainer.policy}, tokenizer_file)
    ckpt_io.mark_latest(out, path)
    return path
