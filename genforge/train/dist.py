"""Distributed data parallel training through torch.distributed, launched by torchrun.

    torchrun --nproc_per_node=N -m genforge.cli train CONFIG.yaml ...

One process per device; gloo on CPU, NCCL on CUDA. Each rank reads its own slice of every batch
(genforge/data/batches.py), DistributedDataParallel averages the gradients, rank 0 logs and writes
checkpoints. Without torchrun's environment everything here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any); return it and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist, device


def wrap(objective, dist: Dist, device: torch.device) -> None:
    """Replace each trainable module of the objective (attribute named as in modules()) by its
    DistributedDataParallel wrapper; unwrap() gives the plain module back."""
    if not dist.enabled:
        return
    for name, module in objective.modules().items():
        if any(p.requires_grad for p in module.parameters()):
            ids = [device.index] if device.type == "cuda" else None
            setattr(objective, name, DistributedDataParallel(module, device_ids=ids))


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def no_sync(module: nn.Module):
    """Skip the gradient all-reduce (all micro-batches but the last of an accumulation)."""
    import contextlib

    return module.no_sync() if isinstance(module, DistributedDataParallel) else contextlib.nullcontext()


def mean(values: dict[str, float], dist: Dist, device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks (every rank must call it with the same keys)."""
    if not dist.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return {k: v / dist.world for k, v in zip(keys, t.tolist())}


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
