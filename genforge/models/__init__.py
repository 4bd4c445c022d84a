"""Model families. FAMILIES maps a checkpoint's `family` to its config class and builder."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from genforge.models.gpt import GPT, GPTConfig


@dataclass(frozen=True)
class Family:
    config: type
    build: Callable[..., nn.Module]


FAMILIES: dict[str, Family] = {
    "gpt": Family(GPTConfig, GPT),
}
