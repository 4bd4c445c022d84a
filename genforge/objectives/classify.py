"""Sequence classification with an encoder: cross-entropy of the head's logits on the
mean-pooled hidden states against the labels; validation loss and accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifyObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, model: nn.Module):
        self.model = model  # an Encoder with n_labels >= 2 (or a PEFT model around one)

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], phase: str = "main"):
        idx, mask, labels = batch  # (B, T), (B, T), (B,)
        logits = self.model.logits(idx, mask)  # (B, n_labels)
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc, "tokens": int(mask.sum())}

    def evaluate(self, batches) -> dict[str, float]:
        total, correct, count = 0.0, 0, 0
        for idx, mask, labels in batches:
            logits = self.model.logits(idx, mask)
            total += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += int((logits.argmax(-1) == labels).sum())
            count += len(labels)
        return {"val_loss": total / max(count, 1), "val_acc": correct / max(count, 1)}
