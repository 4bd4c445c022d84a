"""Model families. FAMILIES maps a checkpoint's `family` to its model config class, its builder
and the data config class its training runs read (the `data:` section of a run config)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from genforge.config import DataConfig
from genforge.data.image_batches import ImageDataConfig
from genforge.models.classifier import Classifier, ClassifierConfig
from genforge.models.encoder import Encoder, EncoderConfig
from genforge.models.gan import GAN, GANConfig
from genforge.models.gpt import GPT, GPTConfig
from genforge.models.vae import VAE, VAEConfig


@dataclass(frozen=True)
class Family:
    config: type
    build: Callable[..., nn.Module]
    data: type = DataConfig


FAMILIES: dict[str, Family] = {
    "gpt": Family(GPTConfig, GPT),
    "encoder": Family(EncoderConfig, Encoder),
    "vae": Family(VAEConfig, VAE, ImageDataConfig),
    "gan": Family(GANConfig, GAN, ImageDataConfig),
    "classifier": Family(ClassifierConfig, Classifier, ImageDataConfig),
}
