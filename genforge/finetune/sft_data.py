"""Instruction / chat data for supervised fine-tuning (SFT), in TRL's jsonl formats:

    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
    {"prompt": "...", "completion": "..."}

Each example becomes token ids with a flag per token (trained or not: only the assistant's
replies, or the completion, are learned). Examples are packed into rows of block_size tokens
with document ids, so the model's block-diagonal attention keeps them apart (GPT.forward's
doc_ids); `pack=False` gives one example per row instead (padded).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genforge.data.jsonl import jsonl_records
from genforge.errors import DataError
from genforge.finetune.template import check_messages, segments
from genforge.objectives.sft import IGNORE


def is_chat_jsonl(path: Path) -> bool:
    """True for a .jsonl file whose first record has "messages" or "prompt"+"completion"."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(first, dict) and ("messages" in first or "prompt" in first)
    return False


def read_examples(path: Path, tokenizer, template: str, eos: str, bos: str = "") -> list[tuple[list[int], list[bool]]]:
    """(token ids, trained flags) of each record of a chat jsonl file; DataError naming file:line."""
    examples = []
    for where, record in jsonl_records(path):
        # a prompt/completion pair starts as the tokenizer encodes a text (its BOS where its config adds
        # one, as at generation); a conversation as its chat template writes it (bos_token in the template)
        ids = [] if "messages" in (record if isinstance(record, dict) else {}) else list(tokenizer.bos_ids)
        flags = [False] * len(ids)
        for text, trained in _pieces(record, where, template, eos, bos):
            problem = tokenizer.unknown_char(text)
            if problem:
                raise DataError(f"{where}: {problem}")
            t = tokenizer.encode(text)
            ids += t
            flags += [trained] * len(t)
        examples.append((ids, flags))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def _pieces(record, where: str, template: str, eos: str, bos: str) -> list[tuple[str, bool]]:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object")
    if "messages" in record:
        return segments(template, check_messages(record["messages"], where), eos, bos)
    if "prompt" in record or "completion" in record:
        for key in ("prompt", "completion"):
            if not isinstance(record.get(key), str):
                raise DataError(f"{where}: \"{key}\" must be a string")
        if not record["completion"]:
            raise DataError(f"{where}: \"completion\" is empty, so there is nothing to learn")
        return [(record["prompt"], False), (record["completion"] + eos, True)]
    raise DataError(f"{where}: expected \"messages\" or \"prompt\" and \"completion\"")


def pack(examples: list[tuple[list[int], list[bool]]], block_size: int, pack: bool = True,
         pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(x, y, doc) arrays of shape (rows, block_size) and the number of examples cut short.

    y is the next token where it is trained, else IGNORE; doc numbers the examples within a
    row (-1 on padding). An example of more than block_size + 1 tokens keeps its first ones."""
    rows: list[tuple[list[int], list[int], list[int]]] = []
    cur: tuple[list[int], list[int], list[int]] = ([], [], [])
    cut = 0
    for ids, flags in examples:
        if len(ids) < 2:
            continue
        if len(ids) > block_size + 1:
            ids, flags, cut = ids[: block_size + 1], flags[: block_size + 1], cut + 1
        x = ids[:-1]
        y = [t if f else IGNORE for t, f in zip(ids[1:], flags[1:])]
        if cur[0] and (not pack or len(cur[0]) + len(x) > block_size):
            rows.append(cur)
            cur = ([], [], [])
        doc = (cur[2][-1] + 1) if cur[2] else 0
        cur[0].extend(x), cur[1].extend(y), cur[2].extend([doc] * len(x))
    if cur[0]:
        rows.append(cur)
    if not rows:
        raise DataError("no example has two or more tokens")
    X = np.full((len(rows), block_size), pad_id, dtype=np.int64)
    Y = np.full((len(rows), block_size), IGNORE, dtype=np.int64)
    D = np.full((len(rows), block_size), -1, dtype=np.int64)
    for i, (x, y, d) in enumerate(rows):
        X[i, : len(x)], Y[i, : len(y)], D[i, : len(d)] = x, y, d
    return X, Y, D, cut


class SFTBatches:
    """Random rows of packed examples; batch n is drawn by a generator seeded with (seed, n), so
    the cursor is one integer and resume is exact. Each draw takes batch_size * world rows and a
    rank keeps its slice (as TokenBatches). Validation walks the held-out rows in order, the same
    on every rank."""

    def __init__(self, train: tuple, val: tuple, batch_size: int, seed: int = 0, device: str | torch.device = "cpu",
                 rank: int = 0, world: int = 1):
        self.train, self.val = train, val  # (X, Y, D) arrays each
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.rank, self.world = rank, world
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        rows = rng.integers(0, len(self.train[0]), size=self.batch_size * self.world)
        return self._take(self.train, rows[self.rank * self.batch_size:(self.rank + 1) * self.batch_size])

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        rows = np.arange(min(len(self.val[0]), n * self.batch_size))
        return [self._take(self.val, rows[i:i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]

    def _take(self, arrays: tuple, rows: np.ndarray):
        return tuple(torch.from_numpy(a[rows]).to(self.device) for a in arrays)
