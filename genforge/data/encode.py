"""Tokenize a stream of documents in worker processes, results in input order.

Documents go to workers in batches of about BATCH_BYTES of text; at most two batches per worker
are in flight, so memory stays bounded however large the corpus is (`Pool.imap` would read its
whole input ahead). Results come back in submission order, so the output does not depend on the
number of workers. Workers are spawned, so a script that prepares with workers > 1 must do so
under `if __name__ == "__main__":`.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from genforge.data.tokenizer import Tokenizer

BATCH_BYTES = 1 << 20
# tokenizers holds ~100 bytes per token of the texts it encodes at once: encode at most this many
# characters per call, long texts cut in parts where that gives the same tokens (see seam)
ENCODE_CHARS = 1 << 18

# a document's pieces: [(split, start, end), ...], character ranges of its text
Piece = tuple[str, int, int]


def encode_stream(tok: Tokenizer, items: Iterable[tuple[object, str, list[Piece]]], workers: int,
                  dtype: np.dtype) -> Iterator[tuple[object, list[Piece], list[np.ndarray] | str]]:
    """For each (meta, text, pieces) yield (meta, pieces, result) in input order."""
    if workers <= 1:
        for batch in _batches(items):
            results = encode_documents(tok, [(text, pieces) for _, text, pieces in batch], dtype)
            yield from ((meta, pieces, r) for (meta, _, pieces), r in zip(batch, results))
        return
    # spawn, not fork: the parent may hold threads (torch's, the tokenizers library's) that a
    # forked child would inherit locked
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tok.tok.to_str(), dtype.str, tok.bos_ids, tok.eot_id)) as pool:
        pending: deque = deque()
        for batch in _batches(items):
            work = [(text, pieces) for _, text, pieces in batch]
            metas = [(meta, pieces) for meta, _, pieces in batch]
            pending.append((metas, pool.apply_async(_encode_in_worker, (work,))))
            if len(pending) > 2 * workers:
                yield from _collect(*pending.popleft())
        while pending:
            yield from _collect(*pending.popleft())


def encode_documents(tok: Tokenizer, work: list[tuple[str, list[Piece]]], dtype: np.dtype) -> list:
    """Results of a batch of (text, pieces): arrays of the tokenizer's BOS (where its config adds
    one, as transformers' tokenizer(text) does) + ids + end-of-text per piece, or a reason."""
    results: list = [tok.unknown_char(text) for text, _ in work]
    parts: list[tuple[int, int, str]] = []  # (document, piece, text) in order
    for i, (text, pieces) in enumerate(work):
        if results[i] is None:
            results[i] = [[] for _ in pieces]
            parts += [(i, j, part) for j, (_, a, b) in enumerate(pieces) for part in split_text(text[a:b])]
    group, size = [], 0
    for k, part in enumerate(parts):
        group.append(part)
        size += len(part[2])
        if size >= ENCODE_CHARS or k == len(parts) - 1:
            for (i, j, _), ids in zip(group, tok.encode_arrays([t for _, _, t in group], dtype)):
                results[i][j].append(ids)
            group, size = [], 0
    bos, eot = np.array(tok.bos_ids, dtype=dtype), np.array([tok.eot_id], dtype=dtype)
    return [r if isinstance(r, str) else [np.concatenate([bos, *arrays, eot]) for arrays in r] for r in results]


def split_text(text: str, limit: int | None = None) -> list[str]:
    """text in parts of at most about `limit` characters, cut where seam says."""
    limit = limit or ENCODE_CHARS
    parts = []
    while len(text) > limit:
        cut = seam(text, limit)
        parts.append(text[:cut])
        text = text[cut:]
    return parts + [text]


def seam(data: str | bytes, limit: int) -> int:
    """A cut of data at or before `limit` after which tokenizing the two sides gives the tokens of
    the whole: just after a line break that an ASCII non-space follows (byte-level BPE splits there
    anyway). Else the last character boundary: a token may then differ at the cut."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    i = data.rfind(newline, limit // 2, limit)
    while i > 0 and not (data[i + 1:i + 2].isascii() and not data[i + 1:i + 2].isspace()):
        i = data.rfind(newline, limit // 2, i)
    if i > 0:
        return i + 1
    cut = limit
    while isinstance(data, bytes) and cut > 0 and data[cut] & 0xC0 == 0x80:  # inside a UTF-8 character
        cut -= 1
    return cut or limit


def _collect(metas, async_result):
    for (meta, pieces), r in zip(metas, async_result.get()):
        yield meta, pieces, r


def _batches(items):
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += len(item[1])
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


_worker: tuple[Tokenizer, np.dtype] | None = None


def _init_worker(tokenizer_json: str, dtype: str, bos_ids: list[int], eot_id: int) -> None:
    global _worker
    import tokenizers

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    tok = Tokenizer(tokenizers.Tokenizer.from_str(tokenizer_json))
    tok.bos_ids, tok.eot_id = bos_ids, eot_id  # what the parent read from tokenizer_config.json beside the file
    _worker = (tok, np.dtype(dtype))


def _encode_in_worker(work):
    tok, dtype = _worker
    return encode_documents(tok, work, dtype)
