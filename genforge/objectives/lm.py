"""Next-token prediction: mean cross-entropy of the model's logits against the shifted tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LMObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = True  # the loss is a mean over examples: batches split into shards (cpu/shards.py)

    def __init__(self, model: nn.Module):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor], phase: str = "main"):
        x, y = batch  # (B, T) inputs and their next tokens
        logits, _ = self.model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        return loss, {"loss": loss.detach(), "tokens": x.numel()}

    def evaluate(self, batches) -> dict[str, float]:
        losses = [self.loss(b)[0].item() for b in batches]
        return {"val_loss": sum(losses) / len(losses)}
