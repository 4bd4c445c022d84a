"""Images from caption token ids with the DALL·E-style family (models/dalle.py): the GPT samples
the image codes one at a time after [caption, BOI] through the text sampler (sample/text.py,
KV-cached), then the frozen VQ-VAE decodes them.

Two logits processors (sample/processors.py) make it an image sampler: classifier-free guidance
on the logits (Ho & Salimans 2022; on image tokens as in Make-A-Scene, Gafni et al. 2022), whose
unconditional branch is the same GPT after [null caption, BOI] (or [negative caption, BOI]: a
negative prompt) with a KV cache of its own; then `allowed_range`, so every step draws an image
code, never a text id or BOI (with a two-stream tokenizer `stream_ranges`: the value codes of
the whole grid, then its chroma codes). Every draw takes `generator`, so one seed gives one image,
bitwise; `check()` runs before every token step (a server cancels or times out a request there).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from genforge.models.dalle import Dalle, check_sampling
from genforge.sample.processors import Processor, allowed_range, classifier_free_guidance, kv_cached_logits
from genforge.sample.text import stream_ids


@torch.no_grad()
def generate(model: Dalle, ids: torch.Tensor, generator: torch.Generator | None = None, guidance: float | None = None,
             negative: torch.Tensor | None = None, check: Callable[[], None] | None = None,
             temperature: float | None = None, top_k: int | None = None) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] of caption ids (B, text_len); negative (B, text_len) ids
    replace the null caption in guidance. Defaults come from the model config. ConfigError for a
    guidance scale, temperature or top_k out of range; ValueError for ids of the wrong shape."""
    codes = sample_codes(model, ids, generator, guidance, negative, check, temperature, top_k)
    return model.decode(codes)


@torch.no_grad()
def sample_codes(model: Dalle, ids: torch.Tensor, generator: torch.Generator | None = None,
                 guidance: float | None = None, negative: torch.Tensor | None = None,
                 check: Callable[[], None] | None = None, temperature: float | None = None,
                 top_k: int | None = None) -> torch.Tensor:
    """The image codes (B, n_codes) in [0, codebook_size) sampled for caption ids (B, text_len);
    arguments as generate's."""
    c = model.config
    guidance = c.guidance if guidance is None else guidance
    temperature = c.temperature if temperature is None else temperature
    top_k = c.top_k if top_k is None else top_k
    check_sampling(c, guidance, temperature, top_k)
    check_ids(model, ids, "ids")
    uncond = model.null_caption(len(ids), ids.device) if negative is None else negative
    check_ids(model, uncond, "negative")
    if len(uncond) != len(ids):
        raise ValueError(f"negative has {len(uncond)} captions for {len(ids)} prompts")
    prefix = model.prefix(ids)  # (B, T + 1), or BOI (B, 1) after a text encoder's states
    lo = model.image_range[0]
    spans = [(lo + a, lo + b) for a, b in model.code_spans]
    mask = stream_ranges(spans, prefix.size(1), model.n_codes // len(spans))
    processors = [classifier_free_guidance(kv_cached_logits(model.decoder(uncond), model.prefix(uncond),
                                                            skip=prefix.size(1)), guidance),
                  mask]  # after guidance: a code only one branch rules out is no nan
    steps = stream_ids(model.decoder(ids), prefix, model.n_codes, temperature=temperature, top_k=top_k or None,
                       generator=generator, processors=processors)
    out = []
    for _ in range(model.n_codes):  # not `for tok in steps`: that would feed the last code through the GPT for nothing
        if check is not None:
            check()
        out.append(next(steps))
    steps.close()
    return torch.stack(out, 1) - lo  # (B, N)


def stream_ranges(spans: list[tuple[int, int]], start: int, per_stream: int) -> Processor:
    """A processor for streams one after the other, per_stream tokens each: the k-th token after
    the first `start` ids (k = ids so far - start) keeps only the logits in
    spans[k // per_stream], [lo, hi) (allowed_range's); the rest are -inf. One span is allowed_range."""
    ranges = [allowed_range(lo, hi) for lo, hi in spans]

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return ranges[min((ids.size(1) - start) // per_stream, len(ranges) - 1)](logits, ids)

    return process


def check_ids(model: Dalle, ids: torch.Tensor, name: str) -> None:
    """ValueError unless ids is (B, text_len) of text ids."""
    c = model.config
    if ids.dim() != 2 or ids.size(1) != c.text_len or not len(ids):
        raise ValueError(f"{name}: expected caption ids (batch, {c.text_len}), got shape {tuple(ids.shape)} "
                         "(encode and pad prompts with data.caption_batches.encode_captions)")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.text_vocab):
        raise ValueError(f"{name}: token ids must be in [0, {c.text_vocab}), the caption tokenizer's")
