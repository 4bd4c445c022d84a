"""CLIP's contrastive objective (Radford et al. 2021, Figure 3): the symmetric InfoNCE loss (van
den Oord et al. 2018) of the batch's image-caption logits, cross-entropy of each image over the
captions and of each caption over the images, the i-th caption being the i-th image's, at the
model's learnable temperature. Validation reports the loss and the in-batch retrieval accuracy
(image -> caption and caption -> image, top-1).

The loss is a function of the whole batch (its negatives are the other pairs), not a mean over
examples, so batches are not split into shards (train.cpu_parallel=batch refuses it). Captions
that are the same string in one batch are each other's positives: counting one as the other's
negative would punish the model for being right, so duplicates are masked out of each row's
negatives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(logits: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """The symmetric InfoNCE loss of logits (B, B) whose diagonal holds the positives; `same`
    (B, B) bool marks other pairs that are positives too (equal captions), left out of the negatives."""
    if same is not None:
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def same_captions(ids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: whether captions i and j are the same token ids."""
    return (ids[:, None, :] == ids[None, :, :]).all(-1)


class CLIPObjective:
    phases = ("main",)
    ema_module = "model"
    draw = None  # no random draws per batch (data/image_batches.py)

    def __init__(self, model: nn.Module):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def loss(self, batch, phase: str = "main"):
        x, ids = batch[0], batch[1]  # (B, C, H, W) in [0, 1], (B, T)
        logits = self.model(x.float(), ids).float()  # (B, B)
        loss = info_nce(logits, same_captions(ids))
        return loss, {"loss": loss.detach(), "temperature": 1 / self.model.scale().detach(), "images": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        loss, i2t, t2i, n = 0.0, 0, 0, 0
        for x, ids, *_ in batches:
            logits = self.model(x.float(), ids).float()
            same = same_captions(ids)
            loss += float(info_nce(logits, same)) * len(x)
            # a pick counts when it is the pair's caption or one equal to it
            i2t += int(same[torch.arange(len(x)), logits.argmax(1)].sum())
            t2i += int(same[logits.argmax(0), torch.arange(len(x))].sum())
            n += len(x)
        return {"val_loss": loss / n, "val_i2t": i2t / n, "val_t2i": t2i / n}
