"""`logprobs` and `echo` of /v1/completions, in the shape of OpenAI's legacy completions (as vLLM
gives it), which log-likelihood clients such as lm-evaluation-harness read:

    "logprobs": {"tokens": [...], "token_logprobs": [null, -1.2, ...],
                 "top_logprobs": [null, {"tok": -0.1, ...}, ...], "text_offset": [0, 3, ...]}

A prompt given as token ids is scored as exactly those ids. The continuation is generated from
the ids, then the whole sequence is scored in one forward pass: each position's log-probability
under the model's own distribution (before temperature or top-p), the top `logprobs` tokens, and
the token itself (so up to logprobs + 1 entries, as vLLM). With echo the prompt's tokens come
first; the very first token has no context, so its entries are null.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from genforge.data.tokenizer import prompt_ids
from genforge.sample.text import stream_ids

MAX_LOGPROBS = 20  # vLLM's default max_logprobs


def prompt_of(prompt, tokenizer) -> tuple[list[int], str, int]:
    """(token ids, text, number of leading ids that are the tokenizer's BOS, added here) of one
    prompt: a string is encoded as generation encodes it (its BOS first), ids are taken as given."""
    if isinstance(prompt, str):
        ids = prompt_ids(tokenizer, prompt)
        added = len(ids) - len(tokenizer.encode(prompt)) if prompt else len(ids)
        return ids, prompt, added
    return list(prompt), tokenizer.decode(prompt), 0


def complete(model, tokenizer, ids: list[int], max_new_tokens: int, stop: Sequence[str], seed: int | None,
             **sampling) -> tuple[list[int], str]:
    """(generated ids, their text) after ids: up to the end-of-text token or the first stop string
    (cut from the text; the ids keep the tokens that start before it)."""
    if max_new_tokens == 0:
        return [], ""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    out: list[int] = []
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    for next_id in stream_ids(model, idx, max_new_tokens, generator=generator, **sampling):
        token = int(next_id[0])
        if token == tokenizer.eot_id:
            break
        out.append(token)
        text = tokenizer.decode(out)
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cuts:
            while out and len(tokenizer.decode(out[:-1])) >= min(cuts):
                out.pop()
            return out, text[: min(cuts)]
    return out, tokenizer.decode(out)


def score(model, ids: list[int]) -> torch.Tensor:
    """Log-probabilities (T - 1, V) of the token after each of ids[:-1], from one forward pass."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(torch.tensor([ids[:-1]], dtype=torch.long, device=device))[0][0]  # (T - 1, V)
    return logits.float().log_softmax(dim=-1)


def logprobs_object(tokenizer, ids: list[int], logp: torch.Tensor, first: int, k: int, skip: int = 0) -> dict:
    """OpenAI's logprobs object for ids[first:] (first = 0: echo, the prompt included); logp is
    score(ids). text_offset counts characters of the reported text, where the first `skip` ids
    (a BOS the server added) take none."""
    tokens, token_logprobs, top_logprobs, offsets = [], [], [], []
    for i in range(first, len(ids)):
        tokens.append(tokenizer.decode([ids[i]]))
        offsets.append(len(tokenizer.decode(ids[skip:i])) if i > skip else 0)
        if i == 0:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        row = logp[i - 1]
        token_logprobs.append(row[ids[i]].item())
        top = {}
        if k:
            values, indices = row.topk(min(k, row.numel()))
            top = {tokenizer.decode([j]): v for j, v in zip(indices.tolist(), values.tolist())}
        top.setdefault(tokens[-1], token_logprobs[-1])
        top_logprobs.append(top)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": offsets}


def scored_choice(model, tokenizer, prompt, max_tokens: int, stop: Sequence[str], seed: int | None,
                  echo: bool, k: int | None, **sampling) -> dict:
    """One choice of a completion with echo and/or logprobs: {"text", "logprobs", "tokens": the
    completion's token count, "prompt_tokens"}."""
    ids, text, added = prompt_of(prompt, tokenizer)
    generated, completion = complete(model, tokenizer, ids, max_tokens, stop, seed, **sampling)
    full = ids + generated
    logprobs = None
    if k is not None:
        first = 0 if echo else len(ids)
        logp = score(model, full) if len(full) > 1 else torch.empty(0)
        logprobs = logprobs_object(tokenizer, full, logp, first, k, skip=added if echo else 0)
        if not echo:  # offsets within the completion's text
            logprobs["text_offset"] = [len(tokenizer.decode(generated[:j])) for j in range(len(generated))]
    return {"text": (text if echo else "") + completion, "logprobs": logprobs, "tokens": len(generated),
            "prompt_tokens": len(ids)}
