"""`genforge train` runners on preference pairs: the `reward` family (a Bradley–Terry reward
model, from model.base) and the `dpo` method of a gpt (a policy optimised by DPO/IPO, from
dpo.base). Both start from a decoder checkpoint, read a preference jsonl (data.path) with that
checkpoint's tokenizer and train in the one loop.

A DPO checkpoint is a plain `gpt` checkpoint (sample, serve, eval and finetune read it as the
SFT model), with the run's DPO settings under "dpo" in config.json.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from genforge import checkpoint as ckpt_io
from genforge.config import RunConfig
from genforge.data.pairs import PreferenceBatches, open_preferences
from genforge.device import resolve_device
from genforge.errors import ConfigError
from genforge.train.loop import train


def load_base(base: str, key: str = "model.base") -> tuple[torch.nn.Module, dict, Path]:
    """(decoder model, config.json, checkpoint dir) of the checkpoint `key` names; ConfigError if
    it is not a decoder."""
    if not base:
        raise ConfigError(f"{key}: required (the SFT decoder checkpoint to start from)")
    family = ckpt_io.read_config(ckpt_io.resolve(base)).get("family")
    if family != "gpt":
        raise ConfigError(f"{key}={base}: family {family!r}, expected a decoder (gpt) checkpoint")
    loaded = ckpt_io.load(base, trainable=True)
    return loaded.model, loaded.config, loaded.path


def _data(cfg: RunConfig, path: Path, block_size: int) -> PreferenceBatches:
    from genforge.data.tokenizer import Tokenizer  # here: `genforge train` of other families needs no tokenizer library

    tok = Tokenizer.from_file(path / "tokenizer.json")
    return open_preferences(cfg.data, tok, block_size, cfg.train.seed, resolve_device(cfg.train.device))


def _summary(cfg: RunConfig, data: PreferenceBatches) -> dict:
    return {"prefs": cfg.data.path, "train_pairs": len(data.train["index"]), "val_pairs": len(data.val["index"])}


def run_reward(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """A reward model: the base decoder's trunk plus a fresh scalar head, trained by Bradley–Terry."""
    from genforge.models.reward import RewardModel
    from genforge.objectives.reward import RewardObjective

    base_model, _, path = load_base(cfg.model.base)
    rcfg = dataclasses.replace(cfg.model, base=str(path), gpt=base_model.config)
    torch.manual_seed(cfg.train.seed)  # the head's init follows train.seed
    model = RewardModel(rcfg)
    model.gpt.load_state_dict(base_model.state_dict())
    data = _data(cfg, path, rcfg.gpt.block_size)
    config = {"family": "reward", "model": dataclasses.asdict(rcfg), "tokenizer": "tokenizer.json",
              "data": _summary(cfg, data), "run": cfg.to_dict()}
    return train(RewardObjective(model), data, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config,
                 tokenizer=path / "tokenizer.json", progress=progress)


def run_dpo(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """The base decoder optimised by DPO against a frozen copy of itself (or its precomputed log-probs)."""
    from genforge.objectives.dpo import DPOObjective

    policy, base_config, path = load_base(cfg.settings.base, "dpo.base")
    data = _data(cfg, path, policy.config.block_size)
    precomputed = data.all_batches() if cfg.settings.reference == "precomputed" else None
    objective = DPOObjective(policy, cfg.settings, precomputed)
    config = {"family": "gpt", "model": dataclasses.asdict(policy.config), "tokenizer": "tokenizer.json",
              "data": base_config.get("data", {}),  # the original data: `genforge eval` finds its validation split
              "dpo": {**dataclasses.asdict(cfg.settings), **_summary(cfg, data)}, "run": cfg.to_dict()}
    return train(objective, data, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config,
                 tokenizer=path / "tokenizer.json", progress=progress)
