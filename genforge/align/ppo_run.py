"""`genforge train` runners of the `ppo` and `grpo` methods of a gpt: the policy from ppo.base
(grpo.base), a reward from a reward checkpoint trained from that policy or a Python callable
(ppo.reward), prompts from data.path, and training in the one loop on rollouts
(genforge/align/rollouts.py; the objectives are genforge/objectives/ppo.py and grpo.py).

The final checkpoint is a plain `gpt` checkpoint (sample, serve and eval read it as the SFT
model), with the run's settings under "ppo" (or "grpo") in config.json.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn

from genforge.align.rewards import reward_of
from genforge.align.rollouts import RolloutBatches
from genforge.align.runs import load_base
from genforge.config import RunConfig
from genforge.data.prompts import open_prompts
from genforge.device import resolve_device, resolve_dtype
from genforge.train import dist as dist_mod
from genforge.train.loop import train


def fresh_value(policy: nn.Module, seed: int) -> nn.Module:
    """With a reward function there is no reward model to start from: the policy's trunk and a new
    head (its init follows train.seed)."""
    from genforge.models.reward import RewardConfig, RewardModel

    torch.manual_seed(seed)
    value = RewardModel(RewardConfig(gpt=policy.config))
    value.gpt.load_state_dict(policy.state_dict())
    return value


def run_ppo(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """The base decoder optimised by PPO against ppo.reward; the value model starts as the reward
    model (TRL's choice) or, for a callable, as the policy's trunk with a fresh head."""
    from genforge.objectives.ppo import PPOObjective

    policy, base_config, path = load_base(cfg.settings.base, "ppo.base")
    reward, source = reward_of(cfg.settings.reward, path, "ppo.reward")
    if isinstance(reward, nn.Module):
        value = copy.deepcopy(reward).requires_grad_(True)
    else:
        value = fresh_value(policy, cfg.train.seed)
    return _train(cfg, PPOObjective(policy, value, reward, cfg.settings), base_config, path, source, resume,
                  progress)


def run_grpo(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """The base decoder optimised by GRPO (or RLOO) against grpo.reward."""
    from genforge.objectives.grpo import GRPOObjective

    policy, base_config, path = load_base(cfg.settings.base, "grpo.base")
    reward, source = reward_of(cfg.settings.reward, path, "grpo.reward")
    return _train(cfg, GRPOObjective(policy, reward, cfg.settings), base_config, path, source, resume, progress)


def _train(cfg: RunConfig, objective, base_config: dict, path: Path, source: str, resume: bool,
           progress: bool) -> Path:
    from genforge.data.tokenizer import Tokenizer

    dist, device = dist_mod.init(resolve_device(cfg.train.device))  # under torchrun: this rank's device
    objective.reference.to(device)  # the loop moves only modules()
    if isinstance(objective.reward, nn.Module):
        objective.reward.to(device)
    prompts, val_prompts = open_prompts(cfg.data, cfg.train.seed)
    data = RolloutBatches(objective, cfg.settings, Tokenizer.from_file(path / "tokenizer.json"), prompts, val_prompts,
                          cfg.data.batch_size, cfg.train.seed, device, resolve_dtype(cfg.train.dtype, device),
                          dist.rank, dist.world)
    summary = {"prompts": cfg.data.path, "train_prompts": len(prompts), "val_prompts": len(val_prompts),
               "reward_source": source}
    config = {"family": "gpt", "model": dataclasses.asdict(objective.model.config), "tokenizer": "tokenizer.json",
              "data": base_config.get("data", {}),  # the original data: `genforge eval` finds its validation split
              cfg.method: {**dataclasses.asdict(cfg.settings), **summary}, "run": cfg.to_dict()}
    return train(objective, data, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config,
                 tokenizer=path / "tokenizer.json", progress=progress)
