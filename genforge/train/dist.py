"""Distributed data parallel training through torch.distributed, launched by torchrun.

    torchrun --nproc_per_node=N -m genforge.cli train CONFIG.yaml ...

One process per device; gloo on CPU, NCCL on CUDA. Each rank reads its own slice of every batch
(genforge/data/batches.py), DistributedDataParallel averages the gradients, rank 0 logs and writes
checkpoints. Without torchrun's environment everything here is a no-op.
"""
from __future__ import annotations

import contextlib
import os
import sys
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


def wrap(objective, dist: Dist, device: torch.device, fsdp: bool = False) -> None:
    """Make each trainable module of the objective data parallel: replace it (the attribute named
    as in modules()) by its DistributedDataParallel wrapper, or with fsdp shard it in place with
    FSDP2's fully_shard, every block of a ModuleList its own unit. unwrap() gives the module back."""
    if not dist.enabled:
        return
    for name, module in objective.modules().items():
        if not any(p.requires_grad for p in module.parameters()):
            continue
        if fsdp:
            from torch.distributed.fsdp import fully_shard

            for blocks in [m for m in module.modules() if isinstance(m, nn.ModuleList)]:
                for block in blocks:
                    fully_shard(block)
            fully_shard(module)
        else:
            ids = [device.index] if device.type == "cuda" else None
            setattr(objective, name, DistributedDataParallel(module, device_ids=ids))


def _dtensor_type():
    """DTensor's class if FSDP (or anything) has loaded it; None otherwise. Importing it just to
    ask would cost every plain run ~25 MB of memory and time on each step's check."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def full(t):
    """The whole tensor behind an FSDP shard (a collective: every rank calls it); others as they are."""
    dtensor = _dtensor_type()
    return t.full_tensor() if dtensor is not None and isinstance(t, dtensor) else t


def shard_like(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """t (a whole tensor) laid out like parameter p: this rank's shard when p is sharded."""
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(p, dtensor):
        return t
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(t, p.device_mesh, p.placements)


def is_sharded(module: nn.Module) -> bool:
    dtensor = _dtensor_type()
    return dtensor is not None and any(isinstance(p, dtensor) for p in module.parameters())


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def no_sync(module: nn.Module):
    """Skip the gradient all-reduce (all micro-batches but the last of an accumulation)."""
    return module.no_sync() if isinstance(module, DistributedDataParallel) else contextlib.nullcontext()


def mean(values: dict[str, float], dist: Dist, device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks (every rank must call it with the same keys)."""
    if not dist.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return {k: v / dist.world for k, v in zip(keys, t.tolist())}


_flag_groups: dict = {}  # a gloo group per NCCL job: agree() on CPU, without waiting on the GPU


def agree(value: int, dist: Dist) -> int:
    """The largest of every rank's value (a collective: every rank calls it at the same point),
    reduced on the CPU so that no GPU work is waited for."""
    if not dist.enabled:
        return value
    group = None
    if torch_dist.get_backend() != "gloo":
        if "gloo" not in _flag_groups:
            _flag_groups["gloo"] = torch_dist.new_group(backend="gloo")
        group = _flag_groups["gloo"]
    t = torch.tensor([value], dtype=torch.int64)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX, group=group)
    return int(t.item())


def barrier(dist: Dist) -> None:
    if dist.enabled:
        torch_dist.barrier()


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        _flag_groups.clear()
        torch_dist.destroy_process_group()
