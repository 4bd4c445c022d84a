"""Logits processors for the text sampler: `(logits (B, V), ids so far (B, T)) -> logits (B, V)`.

`stream_ids(..., processors=[...])` runs them in order on each step's float32 logits, before the
repetition penalty, temperature, top-k and top-p. Three ship here:

- `allowed_range(lo, hi)`: only tokens in [lo, hi) (a DALL·E image-code span, a grammar's span).
- `logit_bias({id: bias})`: OpenAI's `logit_bias`: add the bias; -100 effectively bans, +100
  effectively forces.
- `classifier_free_guidance(uncond_logits_fn, scale)`: CFG on logits (Ho & Salimans 2022; on
  token logits as in Make-A-Scene, Gafni et al. 2022, and Sanchez et al. 2023, "Stay on topic
  with Classifier-Free Guidance"). `kv_cached_logits` builds its unconditional branch with a KV
  cache of its own.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def allowed_range(lo: int, hi: int) -> Processor:
    """A processor that sets every logit outside [lo, hi) to -inf. Raises ValueError if empty."""
    if not 0 <= lo < hi:
        raise ValueError(f"allowed_range({lo}, {hi}): need 0 <= lo < hi")

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if lo >= logits.size(-1):
            raise ValueError(f"allowed_range({lo}, {hi}) lies outside the vocabulary of {logits.size(-1)}")
        out = torch.full_like(logits, float("-inf"))
        out[:, lo:hi] = logits[:, lo:hi]
        return out

    return process


def logit_bias(bias: Mapping[int, float]) -> Processor:
    """A processor that adds bias[token] to that token's logit (OpenAI's logit_bias; values are
    not clipped, but the API's range is [-100, 100]). Raises ValueError for a negative id."""
    if any(int(t) < 0 for t in bias):
        raise ValueError(f"logit_bias: token ids must be >= 0, got {sorted(bias)}")
    tokens = torch.tensor([int(t) for t in bias], dtype=torch.long)
    values = torch.tensor([float(v) for v in bias.values()], dtype=torch.float32)

    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if tokens.numel() and int(tokens.max()) >= logits.size(-1):
            raise ValueError(f"logit_bias: token {int(tokens.max())} outside the vocabulary of {logits.size(-1)}")
        add = torch.zeros(logits.size(-1), dtype=logits.dtype, device=logits.device)
        add.index_add_(0, tokens.to(logits.device), values.to(logits.device, logits.dtype))
        return logits + add  # (B, V)

    return process


def classifier_free_guidance(uncond_logits_fn: LogitsFn, scale: float) -> Processor:
    """A processor: logits = uncond + scale * (cond - uncond), with cond the sampler's logits and
    uncond = uncond_logits_fn(ids) (B, V), the unconditional model's next-token logits after the
    same ids so far. Scale 1 returns cond unchanged and does not call uncond_logits_fn.

    uncond_logits_fn is called once per step with the whole sequence so far, which only grows
    by one id a step; to avoid a full forward per step it keeps a KV cache of its own and feeds
    only the ids it has not seen. `kv_cached_logits(model, prefix, skip)` is that function: for
    DALL·E-style text-to-image, ids = caption (skip tokens) + image codes, and the unconditional
    branch sees prefix (an empty/null caption) + the same image codes:

        uncond = kv_cached_logits(model, null_caption_ids, skip=caption_ids.size(1))
        generate_ids(model, caption_ids, 256, processors=[classifier_free_guidance(uncond, 3.0),
                                                          allowed_range(img_lo, img_hi)])

    Put masking processors (allowed_range) after this one: a token both branches rule out stays
    -inf, but one only the unconditional branch rules out would turn into nan.
    """
    def process(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return logits
        uncond = uncond_logits_fn(ids).to(logits.dtype)  # (B, V)
        if uncond.shape != logits.shape:
            raise ValueError(f"uncond_logits_fn gave shape {tuple(uncond.shape)}, expected {tuple(logits.shape)}")
        guided = uncond + scale * (logits - uncond)
        return torch.where(torch.isneginf(logits), logits, guided)  # banned stays banned

    return process


def kv_cached_logits(model, prefix: torch.Tensor, skip: int = 0) -> LogitsFn:
    """A `uncond_logits_fn` for classifier_free_guidance over a model with the sampler's interface
    (`model(idx, cache, pos) -> (logits, cache)`, `new_cache(batch)`, `config.block_size`).

    Called with ids (B, T), it returns the model's next-token logits (B, V) after
    prefix (B, P) followed by ids[:, skip:], prefilling on the first call and then feeding only
    the new ids through its own cache. Raises ValueError when that sequence is empty or longer
    than block_size (this branch keeps no sliding window).
    """
    if prefix.dim() != 2:
        raise ValueError("prefix must be a (batch, tokens) tensor")
    state = {"cache": None, "pos": 0, "last": None}

    def logits_fn(ids: torch.Tensor) -> torch.Tensor:
        new = ids[:, skip + max(0, state["pos"] - prefix.size(1)):]  # (B, unseen)
        if state["cache"] is None:
            new = torch.cat([prefix.to(ids.device), new], dim=1)  # (B, P + T - skip)
            state["cache"] = model.new_cache(ids.size(0))
        if state["pos"] + new.size(1) > model.config.block_size:
            raise ValueError(f"unconditional context of {state['pos'] + new.size(1)} tokens exceeds "
                             f"block_size={model.config.block_size}")
        if new.size(1) == 0:
            if state["last"] is None:
                raise ValueError("kv_cached_logits: nothing to condition on (empty prefix and no new ids)")
            return state["last"]  # called again with the same ids
        state["last"] = model(new, state["cache"], state["pos"])[0][:, -1, :].float()  # (B, V)
        state["pos"] += new.size(1)
        return state["last"]

    return logits_fn
