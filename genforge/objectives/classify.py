"""Classification objectives: cross-entropy of a classifier's logits against the labels, with
validation loss and accuracy.

- ClassifyObjective: sequences, with an encoder (pooled hidden states -> head);
- ClassifierObjective: images; it trains the domain feature extractor that image metrics use
  (eval/image_metrics.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifyObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = True  # the loss is a mean over examples: batches split into shards (cpu/shards.py)

    def __init__(self, model: nn.Module):
        self.model = model  # an Encoder with n_labels >= 2 (or a PEFT model around one)

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], phase: str = "main"):
        idx, mask, labels = batch  # (B, T), (B, T), (B,)
        logits = self.model(idx, mask, head=True)  # (B, n_labels); through forward, which DDP syncs
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc, "tokens": int(mask.sum())}

    def evaluate(self, batches) -> dict[str, float]:
        total, correct, count = 0.0, 0, 0
        for idx, mask, labels in batches:
            logits = self.model(idx, mask, head=True)
            total += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += int((logits.argmax(-1) == labels).sum())
            count += len(labels)
        return {"val_loss": total / max(count, 1), "val_acc": correct / max(count, 1)}


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
        return loss, {"loss": loss.detach(), "images": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        loss, correct, n = 0.0, 0, 0
        for x, y in batches:
            logits = self.model(x.float())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        return {"val_loss": loss / n, "val_acc": correct / n}
