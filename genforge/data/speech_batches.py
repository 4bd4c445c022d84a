"""SpeechBatches: padded batches of utterances for the acoustic model, the iterator the training
loop reads, with exact resume: batch n of epoch e takes rows [n*B, (n+1)*B) of a permutation
seeded by (seed, e), so the data cursor is one integer.

A batch is (phoneme ids (B, P) with 0 as padding, frames per phoneme (B, P), log-mel (B, T, n_mels)
zero-padded, voice ids (B,)).
"""
from __future__ import annotations

import numpy as np
import torch

from genforge.data.speech import Utterances
from genforge.errors import DataError


def phoneme_ids(phonemes: list[str], inventory: dict[str, int], where: str) -> list[int]:
    """Ids of phonemes in inventory (name -> id, 1-based); DataError naming one it lacks."""
    missing = [p for p in phonemes if p not in inventory]
    if missing:
        raise DataError(f"{where}: phoneme {missing[0]!r} is not in the model's inventory of {len(inventory)}")
    return [inventory[p] for p in phonemes]


def collate(rows: list[tuple[list[int], np.ndarray, np.ndarray, int]]) -> tuple[torch.Tensor, ...]:
    """Pad (ids, durations, log-mel (T, n_mels), voice) rows into one batch."""
    B, P = len(rows), max(len(r[0]) for r in rows)
    T, n_mels = max(len(r[2]) for r in rows), rows[0][2].shape[1]
    ids = torch.zeros(B, P, dtype=torch.long)
    durations = torch.zeros(B, P, dtype=torch.long)
    mel = torch.zeros(B, T, n_mels)
    for b, (i, d, m, _) in enumerate(rows):
        ids[b, :len(i)] = torch.tensor(i)
        durations[b, :len(d)] = torch.from_numpy(np.asarray(d, dtype=np.int64))
        mel[b, :len(m)] = torch.from_numpy(m)
    return ids, durations, mel, torch.tensor([r[3] for r in rows], dtype=torch.long)


class SpeechBatches:
    def __init__(self, train: Utterances, val: Utterances, inventory: dict[str, int], voice_ids: dict[str, int],
                 batch_size: int, seed: int, device: torch.device):
        self.train, self.val = self._encode(train, inventory, voice_ids), self._encode(val, inventory, voice_ids)
        self.batch_size, self.seed, self.device = min(batch_size, len(self.train)), seed, device
        self.n = 0  # batches drawn

    @staticmethod
    def _encode(data: Utterances, inventory: dict[str, int], voice_ids: dict[str, int]) -> list:
        rows = []
        for i in range(len(data)):
            names, d, mel, v = data.item(i)
            rows.append((phoneme_ids(names, inventory, f"utterance {i} ({data.texts[i][:40]!r})"), d, mel,
                         voice_ids[data.voices[v]]))
        return rows

    def _to(self, batch):
        return tuple(t.to(self.device) for t in batch)

    def __iter__(self):
        return self

    def __next__(self):
        per_epoch = len(self.train) // self.batch_size
        epoch, k = divmod(self.n, per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        self.n += 1
        return self._to(collate([self.train[i] for i in order[k * self.batch_size:(k + 1) * self.batch_size]]))

    def eval_batches(self, n: int):
        """The first n batches of the validation utterances, in order, every time."""
        for k in range(min(n, -(-len(self.val) // self.batch_size))):
            rows = self.val[k * self.batch_size:(k + 1) * self.batch_size]
            if rows:
                yield self._to(collate(rows))

    def state_dict(self) -> dict:
        return {"n": self.n}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state.get("n"), int):
            raise DataError(f"speech batches: malformed data cursor {state!r}")
        self.n = state["n"]
