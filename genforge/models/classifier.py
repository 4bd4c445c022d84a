"""A small CNN image classifier. genforge trains it on a domain (MNIST, glyphs, ...) so image
metrics (FID, KID, precision/recall, class coverage) have a feature extractor offline, where
Inception weights cannot be downloaded."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genforge.errors import ConfigError


@dataclass
class ClassifierConfig:
    image_size: int = 0  # 0: the data's
    channels: int = 0  # 0: the data's
    num_classes: int = 0  # 0: the data's
    width: int = 32  # channels of the first convolution block (the second has 2x)
    feature_dim: int = 128  # the penultimate layer: the features image metrics compare
    dropout: float = 0.25

    def __post_init__(self):
        if self.num_classes == 1:
            raise ConfigError(f"model.num_classes={self.num_classes} must be >= 2 (or 0: the data's)")


class Classifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = c = config
        w = c.width
        self.body = nn.Sequential(
            nn.Conv2d(c.channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * w, c.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, c.num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) features of images x (B, C, H, W) in [0, 1]."""
        return self.body(x * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


class Features(nn.Module):
    """A classifier's features as a torchmetrics feature extractor: images in [0, 1] -> (B, D)."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.config.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def predict(classifier: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The classifier's class ids (N,) for images, in batches."""
    with torch.no_grad():
        return torch.cat([classifier(images[i:i + batch].float()).argmax(1) for i in range(0, len(images), batch)])
