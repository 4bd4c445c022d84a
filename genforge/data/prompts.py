"""Prompts for training on rollouts (PPO, GRPO): a text file of one prompt per line, or a jsonl
whose records carry a string "prompt" (e.g. preference pairs exported by `genforge feedback
export`: each distinct prompt once). The rollouts themselves are made by genforge/align/rollouts.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genforge.data.jsonl import jsonl_records
from genforge.errors import ConfigError, DataError


@dataclass
class PromptDataConfig:
    path: str = ""  # prompts.txt (one a line) or a jsonl of records with "prompt"
    batch_size: int = 8  # prompts per rollout batch (each sampled ppo.samples_per_prompt / grpo.group_size times)
    val_path: str | None = None  # held-out prompts for evaluation (mean reward, KL) instead of val_fraction
    val_fraction: float = 0.1  # share of path's prompts held out when there is no val_path; 0: none

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")


def read_prompts(path: str | Path) -> list[str]:
    """The distinct non-blank prompts of a text file or jsonl, in first-seen order. DataError for
    a missing or empty file and for a jsonl record without a string prompt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prompt file not found (a text file of one prompt per line, or a jsonl with 'prompt')")
    if path.suffix == ".jsonl":
        prompts = []
        for where, rec in jsonl_records(path):
            if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
                raise DataError(f"{where}: expected a JSON object with a string field 'prompt'")
            prompts.append(rec["prompt"])
    else:
        prompts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = list(dict.fromkeys(p for p in prompts if p.strip()))
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def open_prompts(cfg: PromptDataConfig, seed: int) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts) of the data config: val_path's, or a seeded
    val_fraction of path's (at least one when val_fraction > 0)."""
    if not cfg.path:
        raise ConfigError("data.path: required (the prompts to roll out on: a text file or a jsonl with 'prompt')")
    prompts = read_prompts(cfg.path)
    if cfg.val_path:
        return prompts, read_prompts(cfg.val_path)
    if not cfg.val_fraction:
        return prompts, []
    if len(prompts) < 2:
        raise DataError(f"{cfg.path}: need at least 2 prompts to hold some out (or data.val_fraction=0)")
    order = np.random.default_rng(seed).permutation(len(prompts))
    k = max(1, round(len(prompts) * cfg.val_fraction))
    return [prompts[i] for i in sorted(order[:-k])], [prompts[i] for i in sorted(order[-k:])]
