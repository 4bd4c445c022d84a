"""A deterministic synthetic .jsonl corpus for the prepare benchmarks, written as a stream.

Documents are runs of 1 to 60 paragraphs of Tiny Shakespeare (../shared/data/tinyshakespeare/
input.txt when present), shuffled by a seeded RNG, so lengths vary from a line to ~15 KB; without
the file, sentences of words drawn from a fixed vocabulary stand in. Nothing larger than one
document is held in memory, so a 2 GB corpus costs what a 2 MB one does.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"


def _paragraphs() -> list[str]:
    if SHAKESPEARE.is_file():
        paras = [p.strip() for p in SHAKESPEARE.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        if paras:
            return paras
    rng = random.Random(1)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 9))) for _ in range(5000)]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 80))).capitalize() + "."
            for _ in range(20000)]


def documents(seed: int = 0) -> Iterator[str]:
    """An endless, deterministic stream of documents."""
    paras, rng = _paragraphs(), random.Random(seed)
    while True:
        start = rng.randrange(len(paras))
        n = min(rng.choice((1, 2, 3, 5, 8, 13, 21, 34, 60)), len(paras) - start)
        yield "\n\n".join(paras[start:start + n])


def first_bytes(limit: int, seed: int = 0) -> Iterator[str]:
    """The documents until `limit` bytes of UTF-8 have gone by (the last one is whole): a
    tokenizer's training sample."""
    for doc in documents(seed):
        yield doc
        limit -= len(doc.encode("utf-8"))
        if limit <= 0:
            return


def write_jsonl(path: str | Path, megabytes: float, seed: int = 0) -> tuple[int, int]:
    """Write documents to path as {"text": ...} lines until it holds `megabytes` MB (10^6 bytes);
    return (bytes, documents)."""
    limit, size, n = int(megabytes * 1e6), 0, 0
    with open(path, "w", encoding="utf-8") as f:
        for doc in documents(seed):
            line = json.dumps({"text": doc}) + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))
            n += 1
            if size >= limit:
                break
    return size, n


def write_txt(path: str | Path, megabytes: float, seed: int = 0) -> tuple[int, int]:
    """Write the documents as ONE plain text file (blank lines between) of `megabytes` MB;
    return (bytes, 1)."""
    limit, size = int(megabytes * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        for doc in documents(seed):
            f.write(doc + "\n\n")
            size += len(doc.encode("utf-8")) + 2
            if size >= limit:
                break
    return size, 1
