"""Supervised fine-tuning: next-token cross-entropy on the trained targets only (the assistant's
replies or the completions; the rest is IGNORE), over rows of packed examples whose document ids
keep each example's attention to itself."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100  # cross-entropy's ignore_index: no loss on this target


class SFTObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, model: nn.Module):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], phase: str = "main"):
        x, y, doc = batch  # (B, T) inputs, targets (IGNORE where not trained), document ids
        logits, _ = self.model(x, doc_ids=doc)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)
        return loss, {"loss": loss.detach(), "tokens": int((y != IGNORE).sum())}

    def evaluate(self, batches) -> dict[str, float]:
        total, count = 0.0, 0
        for x, y, doc in batches:  # weighted by trained tokens: the mean over the whole val set
            logits, _ = self.model(x, doc_ids=doc)
            total += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE, reduction="sum").item()
            count += int((y != IGNORE).sum())
        return {"val_loss": total / max(count, 1)}
