"""Labelled text for encoder classifiers: jsonl records {"text": "...", "label": ...} (a label
is a string or an integer), tokenized with the encoder's own tokenizer ([CLS] ... [SEP])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genforge.data.jsonl import jsonl_records
from genforge.errors import DataError
from genforge.hf.tokenizer import encode_batch


def read_labelled(path: Path) -> tuple[list[str], list]:
    """(texts, labels) of a jsonl file; DataError naming file:line for a bad record."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    texts, labels = [], []
    for where, record in jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{where}: expected an object with a string \"text\" and a \"label\"")
        label = record.get("label")
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise DataError(f"{where}: \"label\" must be a string or an integer, got {label!r}")
        texts.append(record["text"])
        labels.append(label)
    if not texts:
        raise DataError(f"{path}: no examples")
    return texts, labels


def label_names(labels: list) -> list:
    names = sorted(set(labels), key=lambda v: (isinstance(v, str), v))
    if len(names) < 2:
        raise DataError(f"labels: need at least two different labels to classify, got {names}")
    return names


class ClassifyBatches:
    """Random batches of (ids, mask, labels), padded per batch; batch n is drawn with a generator
    seeded by (seed, n), so resume is exact. Each draw takes batch_size * world examples and a
    rank keeps its slice (as TokenBatches). Validation walks the held-out examples in order, the
    same on every rank."""

    def __init__(self, tok, train: tuple[list[str], list[int]], val: tuple[list[str], list[int]], batch_size: int,
                 max_len: int, seed: int = 0, device: str | torch.device = "cpu", pad_id: int = 0,
                 rank: int = 0, world: int = 1):
        self.tok, self.train, self.val = tok, train, val
        self.batch_size, self.max_len, self.seed = batch_size, max_len, seed
        self.device, self.pad_id, self.rank, self.world = torch.device(device), pad_id, rank, world
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self):
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        rows = rng.integers(0, len(self.train[0]), size=self.batch_size * self.world)
        return self._batch(self.train, rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size])

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int) -> list:
        rows = np.arange(min(len(self.val[0]), n * self.batch_size))
        return [self._batch(self.val, rows[i:i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]

    def _batch(self, split, rows):
        idx, mask = encode_batch(self.tok, [split[0][i] for i in rows], self.max_len, self.pad_id)
        labels = torch.tensor([split[1][i] for i in rows], dtype=torch.long)
        return idx.to(self.device), mask.to(self.device), labels.to(self.device)
