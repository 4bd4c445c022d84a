"""Image classification: cross-entropy of the classifier's logits against the labels. Trains the
domain feature extractor that image metrics use (eval/image_metrics.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, model: nn.Module):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def loss(self, batch, phase: str = "main"):
        x, y = batch
        logits = self.model(x.float())  # (B, num_classes)
        loss = F.cross_entropy(logits.float(), y)
        return loss, {"loss": loss.detach(), "tokens": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        loss, correct, n = 0.0, 0, 0
        for x, y in batches:
            logits = self.model(x.float())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        return {"val_loss": loss / n, "val_acc": correct / n}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch].float()).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).double().mean())
