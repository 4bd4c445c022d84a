"""CLIP's contrastive objective (Radford et al. 2021, Figure 3): the symmetric InfoNCE loss (van
den Oord et al. 2018) of the batch's image-caption logits, cross-entropy of each image over the
captions and of each caption over the images, the i-th caption being the i-th image's, at the
model's learnable temperature. Validation reports the loss, the in-batch retrieval accuracy
(image -> caption and caption -> image, top-1) and, where captions have a relation, the swap
accuracy: how often an image's caption beats its swapped one.

Swapped hard negatives (NegCLIP, Yuksekgonul et al. 2023, "When and Why Vision-Language Models
Behave like Bags-of-Words"): in-batch negatives rarely hold the same words in another order, so
plain CLIP learns a bag of words. With model.swap_negatives, every caption with a relation
phrase (RELATION_PHRASES, as the caption tokenizer spells them) gets a hard negative, its subject
and object swapped around the phrase ("a red circle above a blue square" -> "a blue square above
a red circle"), added to the captions each image is scored against. Captions without one (and
tokenizers without the words) train as plain CLIP.

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

from genforge.errors import DataError

# longest first, so "to the left of" is found before a shorter phrase inside it
RELATION_PHRASES = ("to the right of", "to the left of", "in front of", "on top of", "next to", "behind",
                    "beside", "above", "below", "under")


def info_nce(logits: torch.Tensor, same: torch.Tensor | None = None, hard: torch.Tensor | None = None) -> torch.Tensor:
    """The symmetric InfoNCE loss of image -> caption logits (B, B) whose diagonal holds the
    positives. `same` (B, B) bool marks other pairs that are positives too (equal captions), left
    out of the negatives; `hard` (B, K) are logits of extra negative captions (the swapped ones),
    which only the image -> caption direction scores against."""
    if same is not None:
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    labels = torch.arange(len(logits), device=logits.device)
    i2t = logits if hard is None else torch.cat([logits, hard], 1)  # (B, B + K)
    return (F.cross_entropy(i2t, labels) + F.cross_entropy(logits.T, labels)) / 2


def relation_ids(tokenizer) -> list[list[int]]:
    """The token ids of each of RELATION_PHRASES the tokenizer spells with known tokens."""
    out = []
    for phrase in RELATION_PHRASES:
        try:
            ids = tokenizer.encode(phrase)
        except DataError:  # a word vocabulary without the phrase's words
            continue
        if ids and tokenizer.eot_id not in ids:
            out.append(ids)
    return out


def swapped(ids: torch.Tensor, pad: int, phrases: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(captions (B, T) with subject and object swapped around their first relation phrase, and
    (B,) bool: whether a caption had one, with words on both sides) of caption ids (B, T)
    padded with pad after the caption."""
    out, has = ids.clone(), torch.zeros(len(ids), dtype=torch.bool)
    for b, row in enumerate(ids.tolist()):
        n = next((k for k, t in enumerate(row) if t == pad), len(row))
        for start in range(1, n):
            phrase = next((p for p in phrases if row[start:start + len(p)] == p), None)
            if phrase is not None and start + len(phrase) < n:
                end = start + len(phrase)
                out[b, :n] = torch.tensor(row[end:n] + phrase + row[:start])
                has[b] = True
                break
    return out, has.to(ids.device)


def same_captions(ids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: whether captions i and j are the same token ids."""
    return (ids[:, None, :] == ids[None, :, :]).all(-1)


class CLIPObjective:
    phases = ("main",)
    ema_module = "model"
    draw = None  # no random draws per batch (data/image_batches.py)

    def __init__(self, model: nn.Module):
        self.model = model
        self.phrases: list[list[int]] = []

    def use_tokenizer(self, tokenizer) -> None:
        """Read the relation phrases of the caption tokenizer (for model.swap_negatives)."""
        self.phrases = relation_ids(tokenizer)

    def _logits(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image -> caption logits (B, B); every image against every swapped caption (B, B), or
        None without swapped negatives), in float32."""
        img, txt = self.model.encode_image(x.float()), self.model.encode_text(ids)
        scale = self.model.scale()
        logits = (scale * img @ txt.T).float()  # (B, B)
        if not (self.phrases and self.model.config.swap_negatives):
            return logits, None
        neg, has = swapped(ids, self.model.config.text_pad, self.phrases)
        hard = (scale * img @ self.model.encode_text(neg).T).float()  # (B, B)
        # a swapped caption is no negative where there is none, or where it says what the image's caption says
        return logits, hard.masked_fill(~has[None, :] | (neg[None, :, :] == ids[:, None, :]).all(-1), float("-inf"))

    def parameters(self, phase: str):
        return self.model.parameters()

    def modules(self) -> dict:
        return {"model": self.model}

    def loss(self, batch, phase: str = "main"):
        x, ids = batch[0], batch[1]  # (B, C, H, W) in [0, 1], (B, T)
        logits, hard = self._logits(x, ids)
        loss = info_nce(logits, same_captions(ids), hard)
        return loss, {"loss": loss.detach(), "temperature": 1 / self.model.scale().detach(), "images": len(x)}

    def evaluate(self, batches) -> dict[str, float]:
        loss, i2t_hits, t2i_hits, n, swap_hits, swaps = 0.0, 0, 0, 0, 0, 0
        for x, ids, *_ in batches:
            logits, hard = self._logits(x, ids)
            same = same_captions(ids)
            B, rows = len(x), torch.arange(len(x), device=logits.device)
            loss += float(info_nce(logits, same, hard)) * B
            # a pick counts when it is the pair's caption or one equal to it
            i2t_hits += int(same[rows, logits.argmax(1)].sum())
            t2i_hits += int(same[logits.argmax(0), rows].sum())
            n += B
            if self.phrases:
                neg, has = swapped(ids, self.model.config.text_pad, self.phrases)
                img = self.model.encode_image(x.float())
                true = (img * self.model.encode_text(ids)).sum(-1)
                wrong = (img * self.model.encode_text(neg)).sum(-1)
                swap_hits += int((true > wrong)[has].sum())
                swaps += int(has.sum())
        out = {"val_loss": loss / n, "val_i2t": i2t_hits / n, "val_t2i": t2i_hits / n}
        if swaps:
            out["val_swap"] = swap_hits / swaps
        return out
