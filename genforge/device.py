"""Device and precision choices shared by training, generation and evaluation."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

import torch

from genforge.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine")
    return device


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 pays off."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((probe and probe()) or (amx and amx()))


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `name` (auto | float32 | bfloat16 | float16) on device."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@functools.cache
def keep_freed_host_memory() -> bool:
    """Ask glibc's malloc to keep the memory a process frees for its next allocations. By default
    it hands large freed blocks back to the kernel (munmap, or trimming the heap), so a training
    step that allocates and frees the same activations over and over takes fresh zeroed pages
    each time: ~600k page faults in 280 steps of the 4-layer CPU recipe, against 55k with this,
    and 20% more time per step on 2 threads (bench notes in README). Peak memory is unchanged;
    the process just does not shrink between steps. True where it took effect (Linux glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    big = 1 << 30  # setting both also turns off glibc's own sliding thresholds
    return bool(mallopt(M_MMAP_THRESHOLD, big)) and bool(mallopt(M_TRIM_THRESHOLD, big))
