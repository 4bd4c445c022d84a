"""Model families. FAMILIES maps a checkpoint's `family` to its model config class, its builder
and the data config class its training runs read (the `data:` section of a run config)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from genforge.align.pairs import PreferenceDataConfig
from genforge.config import DataConfig
from genforge.data.image_batches import ImageDataConfig
from genforge.models.classifier import Classifier, ClassifierConfig
from genforge.models.encoder import Encoder, EncoderConfig
from genforge.models.gan import GAN, GANConfig
from genforge.models.gpt import GPT, GPTConfig
from genforge.models.reward import RewardConfig, RewardModel
from genforge.models.vae import VAE, VAEConfig
from genforge.objectives.dpo import DPOConfig


@dataclass(frozen=True)
class Family:
    config: type
    build: Callable[..., nn.Module]
    data: type = DataConfig


def _dpo_policy(cfg: DPOConfig) -> nn.Module:
    from genforge.align.runs import dpo_policy  # here: it loads the base checkpoint through genforge.finetune

    return dpo_policy(cfg)


FAMILIES: dict[str, Family] = {
    "gpt": Family(GPTConfig, GPT),
    "encoder": Family(EncoderConfig, Encoder),
    "vae": Family(VAEConfig, VAE, ImageDataConfig),
    "gan": Family(GANConfig, GAN, ImageDataConfig),
    "classifier": Family(ClassifierConfig, Classifier, ImageDataConfig),
    "reward": Family(RewardConfig, RewardModel, PreferenceDataConfig),
    "dpo": Family(DPOConfig, _dpo_policy, PreferenceDataConfig),
}
