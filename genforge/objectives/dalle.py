"""The objective of the DALL·E-style text-to-image family (models/dalle.py): cross-entropy of the
image codes given the caption (Ramesh et al. 2021, sec. 2.2; their text tokens weigh 1/8 and the
image's 7/8, here `text_loss_weight` times the image's, 0 by default), with condition dropout for
classifier-free guidance (a caption replaced by the null caption with probability cond_dropout).

Images become codes inside the loss, through the frozen VQ-VAE under no_grad: on t2i/scenes_dalle
its encoder takes 56 ms of a 1.6 s step (one thread, batch 64: 3.5 %), too little to be worth a
cache of codes beside the run, and codes computed per batch keep the data a plain ImageBatches
(augmentations, any source).

Each cross-entropy is over its own span of the vocabulary (codes over the codebook, caption
tokens over the text ids; with a two-stream tokenizer each position's code over its own
stream's), the distributions the sampler draws from (it masks to the codes), so val_loss is the
model's negative log-likelihood of an image's codes, in nats per code. Which
captions drop is drawn per batch by `draw`, from the batch's own seeded generator: the loss is a
function of the batch alone, so resume is exact and batch shards may run in any thread order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from genforge.models.dalle import Dalle


class DalleObjective:
    phases = ("main",)
    ema_module = "model"
    example_mean = True  # a mean over examples of a function of each example's own draws

    def __init__(self, model: Dalle):
        self.model = model

    def parameters(self, phase: str):
        return (p for p in self.model.parameters() if p.requires_grad)

    def modules(self) -> dict:
        return {"model": self.model}

    def draw(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor]:
        """(caption dropped (B,) bool,) for images x (B, C, H, W)."""
        return (torch.rand(len(x), generator=gen) < self.model.config.cond_dropout,)

    def per_example(self, batch, dropout: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(image codes' cross-entropy (B,), caption tokens' cross-entropy (B,)), each a mean over
        its tokens; a dropped caption's is 0 (the null caption is not a caption to learn)."""
        x, ids, drop = batch
        model, T, P = self.model, self.model.config.text_len, self.model.prefix_len
        if dropout:
            ids = torch.where(drop[:, None], model.null_caption(1, ids.device), ids)
        codes = model.codes(x)  # (B, N), no gradient: the tokenizer is frozen
        logits = model(ids, codes).float()  # (B, T + N, V)
        lo, hi = model.image_range
        image_logits = logits[:, P:, lo:hi]  # (B, N, codes)
        mask = model.code_mask()  # two streams: each position's softmax over its own stream's codes
        if mask is not None:
            image_logits = image_logits.masked_fill(~mask.to(image_logits.device), float("-inf"))
        image = F.cross_entropy(image_logits.transpose(1, 2), codes, reduction="none").mean(1)  # (B,)
        if T < 2 or model.text is not None:  # a single token, or states: no caption tokens to predict
            return image, torch.zeros_like(image)
        text = F.cross_entropy(logits[:, :T - 1, :lo].transpose(1, 2), ids[:, 1:], reduction="none").mean(1)
        return image, torch.where(drop, 0.0, text) if dropout else text

    def loss(self, batch, phase: str = "main"):
        image, text = self.per_example(batch)
        loss = (image + self.model.config.text_loss_weight * text).mean()
        return loss, {"loss": loss.detach(), "image_loss": image.mean().detach(), "text_loss": text.mean().detach(),
                      "tokens": len(image)}

    def evaluate(self, batches) -> dict[str, float]:
        """val_loss: the image codes' cross-entropy given the (never dropped) captions, in nats per
        code; val_text_loss: the captions' per token; val_uncond_loss: the codes' with the null
        caption (how much the caption tells the model is val_uncond_loss - val_loss)."""
        totals, n = {"val_loss": 0.0, "val_text_loss": 0.0, "val_uncond_loss": 0.0}, 0
        for x, ids, drop in batches:
            image, text = self.per_example((x, ids, drop), dropout=False)
            uncond, _ = self.per_example((x, ids, torch.ones_like(drop)))
            totals["val_loss"] += float(image.sum())
            totals["val_text_loss"] += float(text.sum())
            totals["val_uncond_loss"] += float(uncond.sum())
            n += len(x)
        return {name: v / max(n, 1) for name, v in totals.items()}
