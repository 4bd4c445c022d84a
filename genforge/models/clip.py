"""A small CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): an image tower and a text tower mapped into one embedding space, trained with
the symmetric InfoNCE loss (objectives/clip.py) at a learnable temperature, so that a caption
and its image are closer than the batch's other pairs. It gives CLIPScore offline
(eval/clipscore.py), where OpenAI's weights cannot be downloaded.

- image tower: a CNN of three stride-2 blocks whose final map is flattened, not pooled, into
  the embedding, so where things are survives ("above" is not "below");
- text tower: the BERT-style Encoder (models/encoder.py), bidirectional with positions, its
  states mean-pooled over the caption's tokens. A bag of words cannot tell "a left of b" from
  "b left of a"; a tower that sees word order can.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genforge.errors import ConfigError
from genforge.models.encoder import Encoder, mean_pool
from genforge.models.text_cond import text_tower_config

MAX_LOGIT_SCALE = 100.0  # CLIP clips the learned 1/temperature at 100 for stability


@dataclass
class CLIPConfig:
    image_size: int = 0  # 0: the data's
    channels: int = 0  # 0: the data's
    text_vocab: int = 0  # 0: the caption tokenizer's
    text_len: int = 0  # 0: the longest training caption's
    text_pad: int = 0  # 0: the caption tokenizer's padding token
    embed_dim: int = 128  # the shared embedding space
    width: int = 32  # channels of the image tower's first block (then 2x, 4x)
    text_layers: int = 2
    text_width: int = 128
    text_heads: int = 4
    temperature: float = 0.07  # the initial temperature; learned from there
    swap_negatives: bool = True  # train against captions with subject and object swapped (objectives/clip.py)

    def __post_init__(self):
        for key in ("embed_dim", "width", "text_layers", "text_width", "text_heads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.text_width % self.text_heads:
            raise ConfigError(f"model.text_heads={self.text_heads} must divide model.text_width={self.text_width}")
        if not 0 < self.temperature <= 1:
            raise ConfigError(f"model.temperature={self.temperature} must be in (0, 1]")
        if self.image_size and self.image_size < 8:
            raise ConfigError(f"model.image_size={self.image_size}: the image tower needs at least 8 pixels")


class CLIP(nn.Module):
    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = c = config
        if not (c.image_size and c.channels and c.text_vocab and c.text_len):
            raise ConfigError("model: image_size, channels, text_vocab and text_len must be set (a run fills them "
                              "from the data)")
        w = c.width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8 if cout % 8 == 0 else 1, cout), nn.GELU()]

        side = c.image_size
        for _ in range(3):
            side = (side + 1) // 2  # what each stride-2 block leaves
        self.image = nn.Sequential(nn.Conv2d(c.channels, w, 3, padding=1), nn.GELU(), *block(w, w), *block(w, 2 * w),
                                   *block(2 * w, 4 * w), nn.Flatten(), nn.Linear(4 * w * side * side, c.embed_dim))
        self.text = Encoder(text_tower_config(c.text_vocab, c.text_len, c.text_width, c.text_layers, c.text_heads,
                                              c.text_pad))
        self.text_proj = nn.Linear(c.text_width, c.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / c.temperature)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, embed_dim) of images x (B, C, H, W) in [0, 1]."""
        return F.normalize(self.image(x * 2 - 1), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Unit embeddings (B, embed_dim) of caption token ids (B, T) padded with text_pad."""
        mask = ids != self.config.text_pad  # (B, T)
        mask = mask | ~mask.any(1, keepdim=True)  # an empty caption reads its padding rather than nothing
        h = self.text(ids, mask)  # (B, T, text_width)
        return F.normalize(self.text_proj(mean_pool(h, mask)), dim=-1)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale): 1 / temperature, at most MAX_LOGIT_SCALE."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, B) of every image (rows) against every caption (columns): scaled cosines."""
        return self.scale() * self.encode_image(x) @ self.encode_text(ids).T
