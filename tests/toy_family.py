"""A model family that lives only in the tests: one model file and one objective (both here), and
one table entry (tests/test_families.py). It learns each pixel's mean and spread and samples
images from them, which is enough for the table to be exercised end to end."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ToyConfig:
    image_size: int = 0  # filled in from the data by the image runner
    channels: int = 0
    num_classes: int = 0


class Toy(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        shape = (config.channels, config.image_size, config.image_size)
        self.mean = nn.Parameter(torch.zeros(shape))
        self.log_std = nn.Parameter(torch.zeros(shape))

    @torch.no_grad()
    def sample(self, n: int, cond=None, generator=None, truncation=None) -> torch.Tensor:
        noise = torch.randn((n, *self.mean.shape), generator=generator).to(self.mean.device)
        return (torch.sigmoid(self.mean) + noise * self.log_std.exp() * 0.1).clamp(0, 1)


class ToyObjective:
    """Gaussian negative log-likelihood of each pixel under the model's mean and spread."""
    phases = ("main",)
    ema_module = "model"
    example_mean = True

    def __init__(self, model: Toy):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def _nll(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return (0.5 * ((x.float() - torch.sigmoid(m.mean)) / m.log_std.exp()) ** 2 + m.log_std).mean()

    def loss(self, batch, phase: str = "main"):
        x, _ = batch
        loss = self._nll(x)
        return loss, {"loss": loss.detach(), "tokens": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        losses = [float(self._nll(x)) for x, _ in batches]
        return {"val_loss": sum(losses) / len(losses)}
