"""The Bradley–Terry objective of a reward model (Bradley & Terry 1952; Ouyang et al. 2022,
eq. 1): P(chosen > rejected) = sigmoid(r(x, y_w) - r(x, y_l)), trained by -log sigmoid(r_w - r_l).
Held-out pairwise accuracy: how often r_w > r_l. The model is genforge/models/reward.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genforge.models.reward import RewardModel


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean Bradley–Terry loss -log sigmoid(r_w - r_l) over (B,) rewards, with accuracy and margin."""
    margin = r_chosen - r_rejected
    loss = -F.logsigmoid(margin).mean()
    return loss, {"acc": (margin > 0).float().mean().detach(), "margin": margin.mean().detach()}


class RewardObjective:
    phases = ("main",)
    ema_module = "model"

    def __init__(self, model: RewardModel):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def loss(self, batch: dict, phase: str = "main"):
        r_chosen, r_rejected = _scores(self.model, batch)
        loss, metrics = bt_loss(r_chosen.float(), r_rejected.float())
        return loss, {"loss": loss.detach(), **metrics, "tokens": int(batch["index"].numel())}

    def evaluate(self, batches) -> dict[str, float]:
        """Held-out loss and pairwise accuracy over every held-out pair (ties count as wrong)."""
        total, correct, n = 0.0, 0, 0
        for batch in batches:
            r_chosen, r_rejected = _scores(self.model, batch)
            margin = (r_chosen - r_rejected).float()
            total += float(-F.logsigmoid(margin).sum())
            correct += int((margin > 0).sum())
            n += margin.numel()
        return {"val_loss": total / max(n, 1), "val_acc": correct / max(n, 1)}


def _scores(model: RewardModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The rewards (B,) of a batch's chosen and rejected sides."""
    return tuple(model.score(batch[side], batch[f"{side}_start"], batch[f"{side}_len"]) for side in ("chosen", "rejected"))
