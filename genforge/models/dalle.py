"""A DALL·E-style text-to-image model (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation"):
a frozen VQ-VAE image tokenizer (models/vqvae.py, trained first by its own recipe) turns an image
into a grid of codes, and genforge's GPT (models/gpt.py) models the one stream

    [caption ids (text_len, padded with text_pad), BOI, image codes (grid x grid, raster order)]

over one vocabulary: text ids [0, text_vocab), image code k as text_vocab + k, and BOI (the
beginning-of-image token) last, so the first code is predicted from a token of its own rather
than from the caption's last pad. Classifier-free guidance needs an unconditional model: the
null caption is text_len pad ids (a real caption is never empty), which condition dropout
trains (objectives/dalle.py). The VQ-VAE is frozen: no gradients, always in eval mode; its
weights are saved with the model, so a checkpoint samples without the tokenizer's own.

With a frozen pretrained text encoder (`text_encoder`, the one text-conditioning interface of
models/text_cond.py, e.g. MiniLM imported by `genforge import hf`) the caption is not in the
stream's vocabulary: its encoder states, projected to the GPT's width, take the first 1 +
text_len positions as embeddings (GPT.forward's `prefix`), and the vocabulary is the image codes
and BOI alone:

    [null state, caption states (text_len), BOI, image codes]

The null caption is then the encoder's states of an all-pad caption, so guidance needs no
other change.

With a two-stream tokenizer (the VQ-VAE's `streams: value_chroma`: colour-free value codes and
per-patch chroma codes) the image is the whole value grid, then the whole chroma grid, each in
raster order,

    [..., BOI, v_1, ..., v_n, c_1, ..., c_n]

value codes as image ids [0, codebook_size) and chroma codes after them; `code_spans` gives
each stream's span, which the objective's softmax and the sampler's mask keep to. Shapes and
layout come first, then their colours knowing them all: on t2i/scenes the value-first order
judged 0.66 on held-out prompts, interleaving (v_1, c_1, v_2, ...) 0.57 (docs/text-to-image.md).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from genforge.errors import ConfigError
from genforge.models.encoder import EncoderConfig
from genforge.models.gpt import GPT, GPTConfig, KVCache
from genforge.models.text_cond import TextConditioner
from genforge.models.vqvae import VQVAE, VQVAEConfig


@dataclass
class DalleConfig:
    # filled in by the training run from the data (run_t2i): image size and channels, the caption
    # tokenizer's vocabulary, caption length and padding token
    image_size: int = 0
    channels: int = 0
    text_vocab: int = 0
    text_len: int = 0
    text_pad: int = 0
    # the image tokenizer: a vqvae checkpoint (say runs/vqvae_scenes/latest), its model config
    # copied in by the run (its weights are this model's `vqvae` submodule)
    vqvae: str = ""
    vqvae_config: dict = field(default_factory=dict)
    # a genforge encoder checkpoint whose states condition the GPT, frozen ("": the caption's tokens
    # are in the stream, learnt with the model); its config is copied in by the run
    text_encoder: str = ""
    text_encoder_config: dict = field(default_factory=dict)
    # the GPT over [text, BOI, image codes]; block_size is text_len + the number of codes
    flavour: Literal["gpt2", "llama"] = "gpt2"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    text_loss_weight: float = 0.0  # weight of the caption tokens' cross-entropy (DALL·E: 1/7 of the image's)
    cond_dropout: float = 0.1  # captions replaced by the null caption in training: guidance's unconditional model
    # sampling defaults (each one can be given per call); on t2i/scenes_dalle guidance 2 and
    # temperature 0.8 judged best of guidance 1-5, temperature 0.5-1 and top_k 0 or 32 (docs/images.md)
    guidance: float = 2.0
    temperature: float = 0.8
    top_k: int = 0  # 0: all codes

    def __post_init__(self):
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"model.cond_dropout={self.cond_dropout} must be in [0, 1)")
        if self.text_loss_weight < 0:
            raise ConfigError(f"model.text_loss_weight={self.text_loss_weight} must be >= 0")
        if self.text_loss_weight and (self.text_encoder or self.text_encoder_config):
            raise ConfigError("model.text_loss_weight must be 0 with model.text_encoder: the caption is the "
                              "frozen encoder's states, not tokens the model predicts")
        check_sampling(self, self.guidance, self.temperature, self.top_k)


def check_sampling(cfg: DalleConfig, guidance: float, temperature: float, top_k: int) -> None:
    """ConfigError unless guidance, temperature and top_k are in range."""
    if not 0 <= guidance <= 30:
        raise ConfigError(f"guidance={guidance} must be in [0, 30] (1: no guidance; 2-5 is typical)")
    if not 0 <= temperature <= 10:
        raise ConfigError(f"temperature={temperature} must be in [0, 10] (0: greedy)")
    size = cfg.vqvae_config.get("codebook_size", 0)
    if top_k < 0 or (size and top_k > size):
        raise ConfigError(f"top_k={top_k} must be in [0, {size or 'the codebook size'}] (0: all codes)")


class Dalle(nn.Module):
    def __init__(self, config: DalleConfig):
        super().__init__()
        self.config = c = config
        if not (c.image_size and c.channels and c.text_vocab and c.text_len):
            raise ConfigError("model.image_size, model.channels, model.text_vocab and model.text_len must be set "
                              "(a training run fills them in from the data)")
        if not c.vqvae_config:
            raise ConfigError("model.vqvae must name a vqvae checkpoint (train one first, e.g. "
                              "`genforge train vqvae/scenes`, then model.vqvae=runs/vqvae_scenes/latest)")
        self.vqvae = VQVAE(VQVAEConfig(**c.vqvae_config))
        vq = self.vqvae.config
        if (vq.image_size, vq.channels) != (c.image_size, c.channels):
            raise ConfigError(f"model.vqvae={c.vqvae or '(its config)'} encodes {vq.channels}-channel "
                              f"{vq.image_size}x{vq.image_size} images; the data has {c.channels}-channel "
                              f"{c.image_size}x{c.image_size} (set data.image_size / data.channels to the tokenizer's)")
        if not 0 <= c.text_pad < c.text_vocab:
            raise ConfigError(f"model.text_pad={c.text_pad} must be a text id, in [0, {c.text_vocab})")
        self.vqvae.requires_grad_(False)
        self.text = None
        if c.text_encoder_config:
            self.text = TextConditioner(EncoderConfig(**c.text_encoder_config), c.n_embd, c.text_pad, frozen=True)
        self.gpt = GPT(GPTConfig(flavour=c.flavour, vocab_size=self.boi + 1, block_size=self.prefix_len + self.n_codes,
                                 n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, dropout=c.dropout))

    @property
    def n_codes(self) -> int:
        """Image tokens per image: the tokenizer's code grid, grid x grid, times its streams."""
        return self.vqvae.grid ** 2 * self.vqvae.streams

    @property
    def code_spans(self) -> list[tuple[int, int]]:
        """Each stream's [lo, hi) of image codes (0 = the first code), in the order the image's
        tokens hold them: [(0, codebook_size)], or value then chroma."""
        spans, lo = [], 0
        for size in self.vqvae.stream_sizes:
            spans.append((lo, lo + size))
            lo += size
        return spans

    @property
    def prefix_len(self) -> int:
        """Positions before BOI: the caption's tokens, or the encoder's null and caption states."""
        return self.config.text_len + (self.text is not None)

    @property
    def image_range(self) -> tuple[int, int]:
        """[lo, hi): the ids of image codes in the one vocabulary (after the text ids, if any)."""
        lo = 0 if self.text is not None else self.config.text_vocab
        return lo, lo + sum(self.vqvae.stream_sizes)

    @property
    def boi(self) -> int:
        """The beginning-of-image token, after the text ids and the image codes."""
        return self.image_range[1]

    def train(self, mode: bool = True) -> Dalle:
        super().train(mode)
        self.vqvae.eval()  # frozen: the tokenizer is what it was trained to be, whatever the loop sets
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """The image codes (B, n_codes) of images (B, C, H, W) in [0, 1], raster order, stream
        after stream (each in its code_spans span)."""
        codes = self.vqvae.encode(images.float())[1]  # (B, h, w) or (B, h, w, streams)
        if self.vqvae.streams > 1:
            codes = (codes + self._offsets(codes.device)).movedim(-1, 1)
        return codes.flatten(1)

    def _offsets(self, device: torch.device) -> torch.Tensor:
        """(streams,) each stream's first code (code_spans' lows): a stream's own code + offset = its image code."""
        return torch.tensor([lo for lo, _ in self.code_spans], device=device)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] of image codes (B, n_codes) as `codes` gives them."""
        g, s = self.vqvae.grid, self.vqvae.streams
        if s == 1:
            return self.vqvae.decode_codes(codes.view(-1, g, g)).float()
        return self.vqvae.decode_codes(codes.view(-1, s, g, g).movedim(1, -1) - self._offsets(codes.device)).float()

    def code_mask(self) -> torch.Tensor | None:
        """(n_codes, number of image codes) bool: the codes each position may take (its stream's
        span); None with one stream (every code everywhere)."""
        spans = self.code_spans
        if len(spans) == 1:
            return None
        codes = torch.arange(spans[-1][1])
        per = self.n_codes // len(spans)  # positions of each stream, one after the other
        return torch.cat([((codes >= lo) & (codes < hi)).expand(per, -1) for lo, hi in spans])

    def prefix(self, ids: torch.Tensor) -> torch.Tensor:
        """The token ids before the first code: caption ids (B, text_len) then BOI, (B, text_len + 1);
        with a text encoder BOI alone, (B, 1) (the caption is `states`)."""
        boi = torch.full((len(ids), 1), self.boi, dtype=ids.dtype, device=ids.device)
        return boi if self.text is not None else torch.cat([ids, boi], 1)

    def states(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The frozen encoder's prefix embeddings (B, 1 + text_len, n_embd) of caption ids, or None
        without a text encoder."""
        return None if self.text is None else self.text(ids)[0]

    def decoder(self, ids: torch.Tensor) -> GPT | PrefixedGPT:
        """What the text sampler draws codes from for caption ids (B, text_len), fed `prefix(ids)`:
        the GPT, or with a text encoder the GPT behind the captions' states."""
        return self.gpt if self.text is None else PrefixedGPT(self.gpt, self.states(ids))

    def null_caption(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The unconditional caption (batch, text_len): all padding."""
        return torch.full((batch, self.config.text_len), self.config.text_pad, dtype=torch.long, device=device)

    def forward(self, ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, text_len + n_codes, vocab) over the stream [ids, BOI, codes]
        without its last code: position i predicts stream token i + 1, so positions
        text_len .. text_len + n_codes - 1 predict the codes and 0 .. text_len - 2 the caption."""
        lo = self.image_range[0]
        stream = torch.cat([self.prefix(ids), codes[:, :-1] + lo], 1)  # (B, T + N), or (B, N) after the states
        return self.gpt(stream, prefix=self.states(ids))[0]


class PrefixedGPT:
    """A GPT whose every sequence starts with fixed prefix embeddings (B, P, n_embd), with the text
    sampler's interface (`model(idx, cache, pos)`, `new_cache`, `config`): positions count from
    the first token after the prefix, which the first call (pos 0) feeds, and so does a refill."""

    def __init__(self, gpt: GPT, prefix: torch.Tensor):
        self.gpt, self.prefix = gpt, prefix
        self.config = dataclasses.replace(gpt.config, block_size=gpt.config.block_size - prefix.size(1))

    def new_cache(self, batch: int) -> KVCache:
        return self.gpt.new_cache(batch)

    def __call__(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0):
        P = self.prefix.size(1)
        if pos == 0:
            logits, cache = self.gpt(idx, cache, 0, prefix=self.prefix)
            return logits[:, P:], cache
        return self.gpt(idx, cache, pos + P)
