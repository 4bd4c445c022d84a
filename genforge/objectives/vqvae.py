"""The VQ-VAE objective (van den Oord et al. 2017, eq. 3): reconstruction + beta * ||z_e - sg(e)||^2
(the commitment loss), + ||sg(z_e) - e||^2 (the codebook loss) when the codebook is a parameter; with
an EMA codebook (model.ema) the codebook instead moves in `loss`, in training mode, with no autograd.
Codebook usage is logged (nn/vq.py's `usage`): `perplexity` (exp of the entropy of code use in the
batch; the codebook size when all codes are used equally) and `codes_used` (the fraction of codes
used at all).

With two streams (model.streams=value_chroma) the reconstruction is of the value image
(VQVAE.split) and the chroma codebook moves by EMA towards the patch colours it is assigned,
seeded on the first training batch by k-means++ (nn/vq.py's `seed_spread`); `chroma_perplexity` and
`chroma_used` log its usage.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from genforge.models.vqvae import VQVAE
from genforge.nn.vq import usage


def reconstruction(model: VQVAE, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reconstruction loss per image (B,), a mean over pixels: MSE of sigmoid(logits) or BCE."""
    if model.config.rec_loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).mean(1)
    return (torch.sigmoid(logits.float()) - x).pow(2).flatten(1).mean(1)


class VQVAEObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = False  # the EMA codebook update sees each batch once: no sharding of a batch

    def __init__(self, model: VQVAE):
        self.model = model

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                              torch.Tensor | None]:
        """(loss, reconstruction per image (B,), commitment, codes (B, h, w), chroma codes
        (B, h, w) or None) of images x in [0, 1]."""
        model = self.model
        target, chroma = model.split(x)
        logits, z_e, codes, stats = model(x)
        rec = reconstruction(model, logits, target)
        loss = rec.mean() + model.config.beta * stats["commit"]
        if not model.config.ema:
            loss = loss + stats["codebook"]
        learn = model.training and torch.is_grad_enabled()
        if model.config.ema and learn:
            model.quantizer.update(z_e, codes)
        chroma_codes = None
        if chroma is not None:
            if learn and int(model.chroma.steps) == 0:
                model.chroma.seed_spread(chroma)
            chroma_codes = model.chroma.nearest(chroma)
            if learn:
                model.chroma.update(chroma, chroma_codes)
        return loss, rec, stats["commit"], codes, chroma_codes

    def loss(self, batch, phase: str = "main"):
        x = batch[0].float()  # (B, C, H, W) in [0, 1]
        loss, rec, commit, codes, chroma = self.terms(x)
        perplexity, used = usage(codes, self.model.config.codebook_size)
        metrics = {"loss": loss.detach(), "rec": rec.mean().detach(), "commit": commit.detach(),
                   "perplexity": perplexity, "codes_used": used, "images": len(x)}
        if chroma is not None:
            metrics["chroma_perplexity"], metrics["chroma_used"] = usage(chroma, self.model.config.chroma_size)
        return loss, metrics

    def evaluate(self, batches) -> dict[str, float]:
        """val_loss and val_rec per image, val_commit, and val_codes_used / val_perplexity over all
        the evaluation batches together."""
        size = self.model.config.codebook_size
        totals, n, all_codes, all_chroma = {"val_loss": 0.0, "val_rec": 0.0, "val_commit": 0.0}, 0, [], []
        for x, _ in batches:
            x = x.float()
            loss, rec, commit, codes, chroma = self.terms(x)
            if chroma is not None:
                all_chroma.append(chroma.reshape(-1))
            totals["val_loss"] += float(loss) * len(x)
            totals["val_rec"] += float(rec.sum())
            totals["val_commit"] += float(commit) * len(x)
            all_codes.append(codes.reshape(-1))
            n += len(x)
        values = {name: v / max(n, 1) for name, v in totals.items()}
        if all_codes:
            perplexity, used = usage(torch.cat(all_codes), size)
            values.update(val_perplexity=float(perplexity), val_codes_used=float(used))
        if all_chroma:
            perplexity, used = usage(torch.cat(all_chroma), self.model.config.chroma_size)
            values.update(val_chroma_perplexity=float(perplexity), val_chroma_used=float(used))
        return values

