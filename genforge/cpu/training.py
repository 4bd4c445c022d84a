"""What a training run on CPU sets up before its first step: glibc's malloc keeping freed memory
(memory.py), and with train.cpu_parallel=batch the shard pool and data drawn ahead (shards.py)."""
from __future__ import annotations

import torch

from genforge.config import TrainConfig
from genforge.cpu.memory import keep_freed_host_memory
from genforge.cpu.shards import Prefetch, ShardPool
from genforge.errors import ConfigError


def for_training(objective, data, cfg: TrainConfig, device: torch.device, distributed: bool,
                 dtype: torch.dtype) -> tuple[ShardPool | None, object]:
    """(the shard pool or None, the data to draw batches from: a Prefetch over `data` where there is
    a pool). Under torchrun train.cpu_parallel=batch falls back to ops (the ranks already split each
    batch), saying so once. Raises ConfigError where train.cpu_parallel=batch cannot split the
    objective's loss, or under float16 loss scaling. GPU runs get (None, data) and no CPU setting."""
    if device.type != "cpu":
        return None, data
    keep_freed_host_memory()  # activations live in host memory: reuse them instead of faulting pages in
    pool = _shard_pool(objective, cfg, distributed, dtype)
    return pool, data if pool is None else Prefetch(data, pool, cfg.grad_accum)


def _shard_pool(objective, cfg: TrainConfig, distributed: bool, dtype: torch.dtype) -> ShardPool | None:
    if cfg.cpu_parallel != "batch":
        return None
    if not getattr(objective, "example_mean", False):
        raise ConfigError(f"train.cpu_parallel=batch: the {type(objective).__name__}'s loss is not a mean over "
                          "examples that shards can split; use train.cpu_parallel=ops")
    if dtype == torch.float16:
        raise ConfigError("train.cpu_parallel=batch needs no float16 loss scaling; use train.cpu_parallel=ops")
    if distributed:  # each rank is already one shard of the batch; the recipes' setting must still run
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            print("train.cpu_parallel=batch: under torchrun each rank trains its own slice of the batch; "
                  "running with train.cpu_parallel=ops", flush=True)
        return None
    threads = cfg.threads or torch.get_num_threads()
    return ShardPool(threads) if threads > 1 else None
