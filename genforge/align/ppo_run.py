"""A PPO run from checkpoints: the policy (an SFT decoder), the reward model trained from it (or
a Python reward function), and the prompts to roll out on."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from genforge.align.ppo import PPOConfig, PPOTrainer, RewardFn, train_ppo
from genforge.data.tokenizer import Tokenizer
from genforge.errors import CheckpointError, DataError
from genforge.finetune.load import load_checkpoint_model


def check_same_tokenizer(policy_dir: Path, reward_dir: Path) -> None:
    """DataError unless both checkpoints read text with the same vocabulary: the reward model
    scores the policy's token ids as they are."""
    def vocab(d: Path) -> dict:
        f = d / "tokenizer.json"
        if not f.is_file():
            raise DataError(f"{d}: tokenizer.json missing")
        return json.loads(f.read_text(encoding="utf-8"))["model"].get("vocab") or {}

    a, b = vocab(policy_dir), vocab(reward_dir)
    if a != b:
        raise DataError(f"tokenizer mismatch: the reward model {reward_dir} reads {len(b)} tokens, the policy "
                        f"{policy_dir} {len(a)} other ones; train the reward model from this policy "
                        f"(model.base={policy_dir})")


def load_reward(path: str | Path, policy_dir: Path) -> tuple[nn.Module, Path]:
    """(reward model of checkpoint path, its directory), checked against the policy's tokenizer."""
    model, config, rdir = load_checkpoint_model(path)
    if config.get("family") != "reward":
        raise CheckpointError(f"{rdir}: family {config.get('family')!r}, expected a reward model (family reward)")
    check_same_tokenizer(policy_dir, rdir)
    return model, rdir


def run_ppo(ckpt: str | Path, reward: str | Path | RewardFn, prompts: list[str], out: str | Path,
            cfg: PPOConfig | None = None, device: str = "cpu", progress: bool = True) -> Path:
    """Optimise the policy of checkpoint ckpt by PPO against reward (a reward checkpoint or a
    callable); return the new `gpt` checkpoint under out."""
    cfg = cfg or PPOConfig()
    policy, base_config, pdir = load_checkpoint_model(ckpt)
    if base_config.get("family") != "gpt":
        raise CheckpointError(f"{pdir}: family {base_config.get('family')!r}, PPO needs a decoder (gpt) checkpoint")
    tokenizer = Tokenizer.from_file(pdir / "tokenizer.json")
    torch.manual_seed(cfg.seed)
    if callable(reward) and not isinstance(reward, (str, Path)):
        reward_model, value, source = reward, _fresh_value(policy), getattr(reward, "__name__", "callable")
    else:
        reward_model, rdir = load_reward(reward, pdir)
        value, source = copy.deepcopy(reward_model), str(rdir)  # TRL's choice: the value model starts as the reward model
        reward_model.requires_grad_(False)
    trainer = PPOTrainer(policy.to(device), tokenizer, _to(reward_model, device), value.to(device), cfg)
    config = {"family": "gpt", "model": dataclasses.asdict(policy.config), "tokenizer": "tokenizer.json",
              "data": base_config.get("data", {}), "ppo_reward": source, "ppo_base": str(pdir)}
    return train_ppo(trainer, prompts, out, config, pdir / "tokenizer.json", progress)


def _fresh_value(policy: nn.Module) -> nn.Module:
    """With a reward function there is no reward model to start from: the policy's trunk and a new head."""
    from genforge.models.reward import RewardConfig, RewardModel

    value = RewardModel(RewardConfig(gpt=policy.config))
    value.gpt.load_state_dict(policy.state_dict())
    return value


def _to(reward, device: str):
    return reward.to(device) if isinstance(reward, nn.Module) else reward
