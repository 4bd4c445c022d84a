"""A reward model: the SFT decoder with a scalar value head. It reads the policy's own tokens
(PPO scores rollouts without decoding and re-encoding them) and starts from what the policy
already knows about the text. Trained by objectives/reward.py.

The score of a response is the mean of the head's values over its tokens (pool=mean: a quality
spread over the text, like the number of lines, is a sum of local evidence and is learnt from
few pairs), or the value after its last token (pool=last, the usual sequence-classification
reward model, e.g. TRL's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.models.gpt import GPT, GPTConfig


@dataclass
class RewardConfig:
    base: str = ""  # the decoder checkpoint whose trunk and tokenizer the reward model starts from
    gpt: GPTConfig | None = None  # filled in from base's config.json
    pool: Literal["mean", "last"] = "mean"  # over the response's tokens, or its last token


def trunk(gpt: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The decoder's final hidden states (B, T, C) of idx (B, T): GPT.forward without lm_head."""
    t = gpt.transformer
    x = t.wte(idx)  # (B, T, C)
    if "wpe" in t:
        x = x + t.wpe(torch.arange(idx.size(1), device=idx.device))
    x = t.drop(x)
    for i, block in enumerate(t.h):
        x = block(x, None, i)
    return t.ln_f(x)


class RewardModel(nn.Module):
    """A GPT trunk with a scalar head: score(ids, length) -> (B,) at each row's last token."""

    def __init__(self, cfg: RewardConfig):
        super().__init__()
        if cfg.gpt is None:
            raise ConfigError("model.base: required (the decoder checkpoint the reward model starts from)")
        self.config = cfg
        self.gpt = GPT(cfg.gpt)
        self.head = nn.Linear(cfg.gpt.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1 / (cfg.gpt.n_embd + 1) ** 0.5)  # TRL's value-head init scale
        nn.init.zeros_(self.head.bias)

    def values(self, idx: torch.Tensor) -> torch.Tensor:
        """A scalar after every token (B, T)."""
        return self.head(trunk(self.gpt, idx))[..., 0]

    def score(self, idx: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The reward (B,) of each row of idx (B, L) whose response is the tokens [start, length)."""
        block = self.config.gpt.block_size
        if idx.size(1) > block:  # keep each row's end: the reward reads the whole response
            shift = (length - block).clamp(min=0)
            idx = torch.stack([row[s : s + block] for row, s in zip(idx, shift.tolist())])
            start, length = (start - shift).clamp(min=0), length - shift
        v = self.values(idx)  # (B, T)
        if self.config.pool == "last":
            return v.gather(1, (length - 1).clamp(min=0)[:, None])[:, 0]
        pos = torch.arange(idx.size(1), device=idx.device)
        mask = ((pos >= start[:, None]) & (pos < length[:, None])).to(v.dtype)  # (B, T) the response tokens
        return (v * mask).sum(1) / mask.sum(1).clamp(min=1)
