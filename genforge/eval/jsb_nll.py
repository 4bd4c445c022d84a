"""The JSB Chorales protocol: negative log-likelihood per frame, in nats.

The polyphonic-music literature (Boulanger-Lewandowski et al. 2012; Bai et al. 2018, the TCN)
scores a model by -log P(frame_t | frames before t) summed over the frames of each test piece,
the first frame of each piece excluded (it has no past), divided by the number of frames scored:
a frame-weighted mean over the split. Models that output 88 independent Bernoulli probabilities
per frame score the sum of their 88 Bernoulli NLLs.

A GPT on genforge/data/jsb.py's one-to-one encoding (a frame = its pitches ascending, then the
delimiter) gives P(frame) as the product of its tokens' probabilities, the delimiter included.
With grammar=True (the default) each token's distribution is renormalised over the tokens that
can follow the one before it in the encoding (after a pitch: a higher pitch or the delimiter;
after a delimiter: any pitch or the delimiter; never the end of the piece), so the frame
probabilities of every step sum to one over the 2^88 possible frames; with grammar=False the raw
softmax is used, whose mass on sequences that encode no frame is simply lost (a larger NLL).
A piece longer than the model's context is scored in sliding windows (each token once, with at
least half a context of past).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genforge.data.jsb import EOT, FRAME, N_PITCHES, VOCAB_SIZE, split_pieces
from genforge.errors import DataError


def grammar_mask(vocab_size: int = VOCAB_SIZE) -> torch.Tensor:
    """(vocab, vocab) bool: [prev, next] is True where token `next` may follow `prev`."""
    allowed = torch.zeros(vocab_size, vocab_size, dtype=torch.bool)
    pitches = torch.arange(N_PITCHES)
    allowed[:N_PITCHES, :N_PITCHES] = pitches[None, :] > pitches[:, None]  # ascending within a frame
    allowed[:, FRAME] = True
    allowed[FRAME, :N_PITCHES] = allowed[EOT, :N_PITCHES] = True
    return allowed


@torch.inference_mode()
def token_nll(model, ids: np.ndarray, grammar: bool = True) -> np.ndarray:
    """-log P(ids[t] | ids[:t]) for t = 1..len(ids)-1 (float64, nats), in windows of the model's
    block_size; `model(idx)` returns (logits (1, T, vocab), ...)."""
    T = model.config.block_size
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    mask = grammar_mask(VOCAB_SIZE).to(device) if grammar else None
    out = torch.empty(len(x) - 1, dtype=torch.float64)
    done, stride = 0, max(1, T // 2)  # targets 1..done are scored
    while done < len(x) - 1:
        start = 0 if done < T else done - T + stride  # after the first window: half a context of past at least
        start = min(start, max(0, len(x) - 1 - T))
        window = x[start:start + T + 1]
        logits = model(window[None, :-1])[0][0].double()  # (W, vocab)
        if logits.shape[-1] < VOCAB_SIZE:
            raise DataError(f"the model's vocabulary ({logits.shape[-1]}) is smaller than JSB's ({VOCAB_SIZE})")
        logits = logits[:, :VOCAB_SIZE]
        if mask is not None:
            logits = logits.masked_fill(~mask[window[:-1]], float("-inf"))
        logp = torch.log_softmax(logits, dim=-1).gather(1, window[1:, None])[:, 0]  # (W,)
        first = done - start  # window targets already scored
        out[done:start + len(logp)] = -logp[first:].cpu()
        done = start + len(logp)
    return out.numpy()


def piece_frame_nll(token_nlls: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """NLL of each frame of a piece from its tokens' NLLs (the delimiter's included): frame k is
    the tokens after delimiter k-1 up to and including delimiter k. A trailing unfinished frame
    is an error."""
    tokens = np.asarray(tokens)
    if tokens.size == 0 or tokens[-1] != FRAME:
        raise DataError("a JSB piece's tokens must end with the frame delimiter")
    frame_of = np.concatenate([[0], np.cumsum(tokens[:-1] == FRAME)])  # (L,) frame index of each token
    return np.bincount(frame_of, weights=token_nlls, minlength=int(frame_of[-1]) + 1)


def jsb_nll(model, pieces: Sequence[np.ndarray], grammar: bool = True) -> dict[str, float]:
    """The protocol's NLL per frame over `pieces` (each its tokens without EOT, as
    genforge.data.jsb.encode_piece gives them): {"jsb_nll", "frames", "pieces"}, the first frame
    of each piece excluded, a frame-weighted mean."""
    total, frames = 0.0, 0
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for tokens in pieces:
            ids = np.concatenate([[EOT], tokens])  # each piece from the start of a document
            per_frame = piece_frame_nll(token_nll(model, ids, grammar), tokens)
            total += float(per_frame[1:].sum())
            frames += len(per_frame) - 1
    finally:
        model.train(was_training)
    if frames == 0:
        raise DataError("no frames to score (every piece has a single frame)")
    return {"jsb_nll": total / frames, "frames": frames, "pieces": len(pieces)}


def bernoulli_nll(probs: np.ndarray, roll: np.ndarray) -> float:
    """The protocol's NLL per frame for a model of 88 independent Bernoullis: probs and roll are
    (frames, 88), probs[t] the model's prediction of frame t; frame 0 excluded."""
    p, y = np.asarray(probs[1:], dtype=np.float64), np.asarray(roll[1:], dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum() / len(y)) if len(y) else math.nan


def jsb_pieces(data: str | Path, split: str) -> list[np.ndarray]:
    """The pieces of `split` (train, val, test) of a JSB token directory (genforge.data.jsb.
    prepare_jsb); DataError when the directory holds other data."""
    from genforge.data.shards import TokenData

    td = TokenData(data)
    if (td.manifest.get("source") or {}).get("format") != "jsb":
        raise DataError(f"{data}: not JSB Chorales token data (prepare it with `genforge prepare jsb:PATH`); "
                        "jsb_nll scores only the JSB encoding")
    return [p for shard in td.split(split) for p in split_pieces(np.asarray(shard))]


def evaluate_jsb(ckpt, data: str | None = None, split: str = "test", device: str = "auto",
                 grammar: bool = True) -> dict[str, float]:
    """jsb_nll of a GPT checkpoint on `split` of its JSB data (or of `data`)."""
    from genforge import checkpoint as ckpt_io
    from genforge.device import resolve_device
    from genforge.eval.perplexity import ckpt_data_path

    lm = ckpt_io.load(ckpt, resolve_device(device))
    if lm.family.kind != "text":
        raise DataError(f"{lm.path}: a {lm.config.get('family')} checkpoint is not a language model; "
                        "jsb_nll scores a GPT trained on JSB tokens")
    result = jsb_nll(lm.model, jsb_pieces(data or ckpt_data_path(lm), split), grammar)
    return {**result, "split": split}
