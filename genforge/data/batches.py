"""Random training windows over memory-mapped token shards.

Batch number n is drawn from its own generator seeded by (seed, n), so the data cursor is one
integer: resuming at n reads exactly the windows an uninterrupted run would have read. Each
draw takes `batch_size * world` windows and a rank keeps its own slice, so ranks never read the
same window and 2 ranks x b see the same data as 1 rank x 2b.
"""
from __future__ import annotations

import os
import weakref

import numpy as np
import torch

from genforge.data.shards import TokenData
from genforge.errors import DataError


class TokenBatches:
    def __init__(self, data: TokenData, batch_size: int, block_size: int, seed: int = 0,
                 device: str | torch.device = "cpu", rank: int = 0, world: int = 1):
        self.data, self.batch_size, self.block_size = data, batch_size, block_size
        self.seed, self.device, self.rank, self.world = seed, torch.device(device), rank, world
        self.step = 0
        self._train = _Windows(data, "train", block_size)
        self._val = _Windows(data, "val", block_size) if data.tokens("val") > block_size else None

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        starts = self._train.sample(rng, self.batch_size * self.world)
        mine = starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        return self._to_device(self._train.gather(mine))

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same n validation batches every time, so evals are comparable across steps."""
        windows = self._val or self._train  # a corpus too small for a val split evaluates on train
        out = []
        for i in range(n):
            rng = np.random.default_rng([self.seed, 1 << 30, i])
            starts = windows.sample(rng, self.batch_size * self.world)  # ranks split one draw, as in training
            out.append(self._to_device(windows.gather(starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size])))
        return out

    def _to_device(self, xy: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (torch.from_numpy(a) for a in xy)
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)


class _Windows:
    """Every start position of a (block_size + 1)-token window inside one shard of a split."""

    def __init__(self, data: TokenData, split: str, block_size: int):
        self.shards = [s for s in data.split(split) if len(s) > block_size]
        self.block_size = block_size
        counts = np.array([len(s) - block_size for s in self.shards], dtype=np.int64)
        if counts.sum() <= 0:
            raise DataError(f"{data.path}: the {split} split has no shard longer than block_size={block_size} tokens")
        self.ends = np.cumsum(counts)
        # Windows are read with pread, not through the memmap: a page fault maps (and keeps resident)
        # its whole fault-around block, so random windows over a big corpus would make RSS grow with it.
        self.fds = [os.open(s.filename, os.O_RDONLY) for s in self.shards] if hasattr(os, "pread") else None
        # finalize, not __del__: it also runs at interpreter exit, before module globals such as os are gone
        weakref.finalize(self, _close_all, self.fds or [])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.ends[-1], size=n)

    def gather(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        T = self.block_size
        shard_of = np.searchsorted(self.ends, starts, side="right")
        rows = []
        for s, k in zip(starts, shard_of):
            offset = int(s - (self.ends[k - 1] if k else 0))
            shard = self.shards[k]
            if self.fds is None:
                rows.append(shard[offset:offset + T + 1])
                continue
            size = shard.dtype.itemsize
            rows.append(np.frombuffer(os.pread(self.fds[k], (T + 1) * size, offset * size), dtype=shard.dtype))
        block = np.stack(rows).astype(np.int64)  # (B, T+1)
        return block[:, :-1], block[:, 1:]


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
