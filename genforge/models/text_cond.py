"""The one text-conditioning interface of genforge's text-to-image generators.

A TextConditioner maps caption token ids (B, T) to states (B, 1 + T, width) and a key mask
(B, 1 + T) that a generator cross-attends to (or reads as a prefix). The text tower is the BERT-
style `Encoder` (models/encoder.py), bidirectional with positions, so word order counts ("a left of
b" is not "b left of a"; a bag of words cannot tell them apart), either

- trained with the generator from random init (text_encoder_config empty: a small tower of
  text_layers x text_width), or
- a pretrained encoder (e.g. all-MiniLM-L6-v2 through `genforge import hf`), frozen: the run
  copies its config into text_encoder_config and its weights in before training, so the
  generator's checkpoint holds everything and loads without the encoder's.

State 0 is a learned null token that every caption keeps: classifier-free guidance's
unconditional model is the same network with every caption token masked out (condition dropout
in training, `drop`), so attention always has a key and never divides by zero.
"""
from __future__ import annotations

import torch
from torch import nn

from genforge.models.encoder import Encoder, EncoderConfig


def text_tower_config(vocab: int, text_len: int, width: int, layers: int, heads: int, pad_id: int) -> EncoderConfig:
    """The EncoderConfig of a text tower trained from scratch."""
    return EncoderConfig(vocab_size=vocab, block_size=text_len, type_vocab_size=1, n_layer=layers, n_head=heads,
                         n_embd=width, dropout=0.0, pooler=False, pad_id=pad_id)


class TextConditioner(nn.Module):
    def __init__(self, tower: EncoderConfig, width: int, pad_id: int, frozen: bool):
        super().__init__()
        self.pad_id, self.frozen = pad_id, frozen
        self.encoder = Encoder(tower)
        self.proj = nn.Linear(tower.n_embd, width)
        self.null = nn.Parameter(torch.zeros(1, 1, width))
        if frozen:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # a frozen tower keeps its inference behaviour (no dropout)
        return self

    def forward(self, ids: torch.Tensor, drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (B, 1 + T, width), mask (B, 1 + T) True where attended) of token ids (B, T);
        drop (B,) bool masks every caption token of those rows (the unconditional model)."""
        B = len(ids)
        mask = ids != self.pad_id  # (B, T)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            h = self.encoder(ids, mask | ~mask.any(1, keepdim=True))  # (B, T, C); an all-pad row attends to all
        states = torch.cat([self.null.expand(B, 1, -1).to(h.dtype), self.proj(h)], 1)  # (B, 1 + T, width)
        if drop is not None:
            mask = mask & ~drop[:, None]
        return states, torch.cat([torch.ones(B, 1, dtype=torch.bool, device=ids.device), mask], 1)
