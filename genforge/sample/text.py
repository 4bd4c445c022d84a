"""Autoregressive text sampling with a KV cache: temperature, top-k, nucleus (top-p, Holtzman
et al. 2019), repetition penalty (Keskar et al. 2019, CTRL), logits processors
(genforge/sample/processors.py), stop strings, streaming.

Works with any model exposing `forward(idx, cache=None, pos=0) -> (logits, cache)`,
`new_cache(batch)` and `config.block_size`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from genforge.data.tokenizer import prompt_ids

# (logits (B, V) float32, ids so far (B, T): prompt + generated) -> logits (B, V)
Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def stream_ids(model, idx: torch.Tensor, max_new_tokens: int = 200, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0,
               generator: torch.Generator | None = None,
               processors: Sequence[Processor] = ()) -> Iterator[torch.Tensor]:
    """Yield the next token ids (B,) one step at a time after the prompt idx (B, T).

    When the context fills the model's block_size, the cache is rebuilt from the last half of
    the context (a sliding window that costs one prefill per block_size/2 tokens).

    processors run in order on each step's float32 logits (B, V), before the repetition penalty,
    temperature, top-k and top-p, under inference mode. Each gets the whole sequence so far
    (B, T0 + steps): the full prompt, not the window, and every id yielded before.
    """
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError("prompt must be a non-empty (batch, tokens) tensor")
    block, batch = model.config.block_size, idx.size(0)
    keep = max(1, block // 2)  # context kept when the window is full
    seen = None
    if repetition_penalty != 1.0:
        seen = torch.zeros(batch, model.config.vocab_size, dtype=torch.bool, device=idx.device)
        seen.scatter_(1, idx, True)
    # The context window, preallocated: the cache holds tokens[:, :pos] and each step writes one
    # id (no concatenation). Model calls run in inference mode; the caller's code between yields not.
    pos = min(idx.size(1), block)
    tokens = idx.new_empty(batch, block)
    tokens[:, :pos] = idx[:, -pos:]
    history = n_ids = None
    if processors:  # the sequence so far, preallocated; the path without processors keeps none
        n_ids = idx.size(1)
        history = idx.new_empty(batch, n_ids + max_new_tokens)
        history[:, :n_ids] = idx
    with torch.inference_mode():
        cache = model.new_cache(batch)
        logits = model(tokens[:, :pos], cache, 0)[0][:, -1, :]  # (B, vocab)
    for _ in range(max_new_tokens):
        logits = logits.float()
        if history is not None:
            with torch.inference_mode():
                for process in processors:
                    logits = process(logits, history[:, :n_ids])
        next_id = pick(logits, temperature, top_k, top_p, repetition_penalty, seen, generator)  # (B,)
        yield next_id
        if history is not None:
            history[:, n_ids] = next_id
            n_ids += 1
        if seen is not None:
            seen.scatter_(1, next_id[:, None], True)
        with torch.inference_mode():
            if pos == block:  # full: keep the last half as context and prefill again
                tokens[:, : keep - 1] = tokens[:, block - keep + 1 :].clone()
                tokens[:, keep - 1] = next_id
                logits = model(tokens[:, :keep], cache, 0)[0][:, -1, :]
                pos = keep
            else:
                tokens[:, pos] = next_id
                logits = model(tokens[:, pos : pos + 1], cache, pos)[0][:, -1, :]
                pos += 1


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
         repetition_penalty: float, seen: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """Choose one token per row of logits (B, V); temperature 0 means greedy."""
    if seen is not None:
        penalized = torch.where(logits > 0, logits / repetition_penalty, logits * repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > top_p  # the most likely token always stays
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def generate_ids(model, idx: torch.Tensor, max_new_tokens: int = 200, **kw) -> torch.Tensor:
    """The new token ids (B, max_new_tokens) after the prompt idx (B, T).

    Keywords are stream_ids': temperature, top_k, top_p, repetition_penalty, generator and
    processors (a sequence of `(logits (B, V), ids (B, T)) -> logits`, applied in order).
    """
    steps = list(stream_ids(model, idx, max_new_tokens, **kw))
    return torch.stack(steps, dim=1) if steps else idx.new_zeros(idx.size(0), 0)


def stream_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, stop: Sequence[str] = (),
                seed: int | None = None, bos: bool = True, **kw) -> Iterator[str]:
    """Yield pieces of generated text for one prompt as they become final.

    The prompt starts with the tokenizer's BOS where its config adds one; bos=False for a prompt
    rendered by a chat template (which writes its own). Stops at the tokenizer's end-of-text token
    or at the first stop string (which is not yielded). Text that might still become a stop
    string, or an incomplete UTF-8 character, is held back until it is decided. Keywords are
    stream_ids', processors among them.
    """
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids(tokenizer, prompt, bos)], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    ids: list[int] = []
    emitted = 0
    hold = max((len(s) for s in stop), default=1) - 1
    for next_id in stream_ids(model, idx, max_new_tokens, generator=generator, **kw):
        token = int(next_id[0])
        if token == tokenizer.eot_id:
            break
        ids.append(token)
        text = tokenizer.decode(ids)
        cut = min((i for i in (text.find(s, max(0, emitted - hold)) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            if cut > emitted:
                yield text[emitted:cut]
            return
        ready = len(text) - hold
        while ready > emitted and text[ready - 1] == "\ufffd":  # a multi-byte character not yet complete
            ready -= 1
        if ready > emitted:
            yield text[emitted:ready]
            emitted = ready
    text = tokenizer.decode(ids)
    if len(text) > emitted:
        yield text[emitted:]


def truncate(text: str, stop: Sequence[str]) -> str:
    """Text up to the first stop string."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text
