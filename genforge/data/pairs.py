"""Preference pairs for training: read TRL's jsonl (`prompt`, `chosen`, `rejected`), check it,
tokenize each side as prompt + response, and serve batches to the one loop.

A side is stored as its token ids (prompt then response, cut to block_size + 1 tokens so the
model sees at most block_size inputs), the index where the response starts and its length; the
objectives derive the response mask from those. Batches are drawn by a generator seeded with
(seed, n), so the cursor is one integer and resume is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genforge.data.jsonl import jsonl_records
from genforge.data.tokenizer import prompt_ids
from genforge.errors import ConfigError, DataError


@dataclass
class PreferenceDataConfig:
    path: str = ""  # prefs.jsonl from `genforge feedback export`
    batch_size: int = 8
    val_fraction: float = 0.2  # held out for pairwise accuracy / validation loss
    val_path: str | None = None  # a separate held-out jsonl instead of val_fraction

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in (0, 1)")


def read_preferences(path: str | Path) -> list[dict]:
    """The records of a preference jsonl, checked: each has a string prompt, chosen and rejected.

    Raises DataError for a missing file, a malformed line, a record without its prompt, and for
    data with no contrast (no records, or chosen == rejected in every one)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: preference file not found (make one with `genforge feedback export DB --out FILE`)")
    records = []
    for where, rec in jsonl_records(path):
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object with prompt, chosen, rejected")
        if not isinstance(rec.get("prompt"), str):
            raise DataError(f"{where}: the pair's prompt is missing (expected a string field 'prompt')")
        for key in ("chosen", "rejected"):
            if not isinstance(rec.get(key), str):
                raise DataError(f"{where}: field {key!r} is missing or not a string")
        records.append(rec)
    if not records:
        raise DataError(f"{path}: no preference pairs (the feedback has no ratings, or only ties)")
    if all(r["chosen"] == r["rejected"] for r in records):
        raise DataError(f"{path}: one-sided data: in all {len(records)} pairs chosen == rejected, nothing to learn")
    return records


def encode_side(tokenizer, prompt: str, response: str, block_size: int) -> tuple[list[int], int]:
    """(ids of prompt + response cut to block_size + 1 tokens, index of the response's first token).
    The prompt loses its start first; a response longer than the window keeps its start."""
    p, r = prompt_ids(tokenizer, prompt), tokenizer.encode(response)
    limit = block_size + 1
    if len(p) + len(r) > limit:
        r = r[: limit - 1]
        p = p[-(limit - len(r)):]
    return p + r, len(p)


def encode_pairs(records: list[dict], tokenizer, block_size: int, where: str = "") -> dict[str, np.ndarray]:
    """Arrays of the pairs: chosen/rejected ids (N, L) padded with 0, their starts and lengths (N,)."""
    sides = {}
    for side in ("chosen", "rejected"):
        rows = []
        for n, rec in enumerate(records):
            try:
                rows.append(encode_side(tokenizer, rec["prompt"], rec[side], block_size))
            except DataError as e:
                raise DataError(f"{where}record {n + 1} ({side}): {e}") from None
        sides[side] = rows
    width = max(len(ids) for rows in sides.values() for ids, _ in rows)
    out = {}
    for side, rows in sides.items():
        ids = np.zeros((len(rows), width), dtype=np.int64)
        for i, (row, _) in enumerate(rows):
            ids[i, : len(row)] = row
        out[side] = ids
        out[f"{side}_start"] = np.array([s for _, s in rows], dtype=np.int64)
        out[f"{side}_len"] = np.array([len(row) for row, _ in rows], dtype=np.int64)
    out["index"] = np.arange(len(records), dtype=np.int64)
    return out


def split_records(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) records: a seeded shuffle, the last `fraction` (at least 1) held out."""
    if len(records) < 2:
        raise DataError(f"need at least 2 preference pairs to hold some out, got {len(records)}")
    order = np.random.default_rng(seed).permutation(len(records))
    k = max(1, round(len(records) * fraction))
    return [records[i] for i in order[:-k]], [records[i] for i in order[-k:]]


class PreferenceBatches:
    """Random batches of training pairs; validation walks the held-out pairs in order. A batch is a
    dict of tensors (see encode_pairs); `index` numbers pairs across train then val."""

    def __init__(self, train: dict[str, np.ndarray], val: dict[str, np.ndarray], batch_size: int, seed: int = 0,
                 device: str | torch.device = "cpu"):
        val = {**val, "index": val["index"] + len(train["index"])}
        self.train, self.val = train, val
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        return self._take(self.train, rng.integers(0, len(self.train["index"]), size=self.batch_size))

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int | None = None) -> list[dict[str, torch.Tensor]]:
        """All held-out pairs (n is ignored: pairwise accuracy is over the whole held-out set)."""
        rows = np.arange(len(self.val["index"]))
        return [self._take(self.val, rows[i:i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]

    def all_batches(self) -> list[dict[str, torch.Tensor]]:
        """Every pair, train then val, in order (for precomputing reference log-probs)."""
        out = []
        for arrays in (self.train, self.val):
            rows = np.arange(len(arrays["index"]))
            out += [self._take(arrays, rows[i:i + self.batch_size]) for i in range(0, len(rows), self.batch_size)]
        return out

    def _take(self, arrays: dict, rows: np.ndarray) -> dict[str, torch.Tensor]:
        batch = {k: torch.from_numpy(v[rows]) for k, v in arrays.items()}
        width = int(max(batch["chosen_len"].max(), batch["rejected_len"].max()))  # no all-pad columns
        for side in ("chosen", "rejected"):
            batch[side] = batch[side][:, :width]
        return {k: v.to(self.device) for k, v in batch.items()}


def open_preferences(cfg: PreferenceDataConfig, tokenizer, block_size: int, seed: int,
                     device: str | torch.device = "cpu") -> PreferenceBatches:
    """PreferenceBatches for data config cfg, tokenized with the policy's tokenizer."""
    if not cfg.path:
        raise ConfigError("data.path: required (a preference jsonl from `genforge feedback export`)")
    records = read_preferences(cfg.path)
    if cfg.val_path:
        train, val = records, read_preferences(cfg.val_path)
    else:
        train, val = split_records(records, cfg.val_fraction, seed)
    return PreferenceBatches(encode_pairs(train, tokenizer, block_size, f"{cfg.path}: "),
                             encode_pairs(val, tokenizer, block_size, f"{cfg.val_path or cfg.path}: "),
                             cfg.batch_size, seed, device)
