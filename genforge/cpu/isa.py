"""Whether this CPU multiplies bf16 in hardware: the one rule every precision choice on CPU follows.

Where it does (AVX512-BF16 or AMX-BF16), bf16 halves the bytes moved and oneDNN's bf16 matmuls
beat fp32. Where it does not, bf16 is emulated: on an AVX2 CPU a bf16 matmul measured 14.5x slower
than fp32, so genforge then never picks bf16 by itself (train.dtype=auto, Muon's Newton–Schulz,
the benchmarks' references). An explicit train.dtype=bfloat16 is still honoured.

GENFORGE_CPU_ISA overrides the detection, e.g. to measure an AVX2 CPU's choices on a newer one:
`avx2` or `avx512` (no native bf16), `avx512_bf16` or `amx_bf16` (native). Pair it with
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 so that torch's own kernels also stop using
AVX-512.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from genforge.errors import ConfigError

_OVERRIDES = {"avx2": False, "avx512": False, "avx512_bf16": True, "amx_bf16": True}


def native_bf16() -> bool:
    """True where this CPU has native bf16 arithmetic (or GENFORGE_CPU_ISA says so). Raises
    ConfigError for a GENFORGE_CPU_ISA other than avx2, avx512, avx512_bf16, amx_bf16."""
    isa = os.environ.get("GENFORGE_CPU_ISA", "").lower()
    if isa:
        if isa not in _OVERRIDES:
            raise ConfigError(f"GENFORGE_CPU_ISA={isa}: expected one of {', '.join(_OVERRIDES)}")
        return _OVERRIDES[isa]
    return _detected()


@functools.cache
def _detected() -> bool:
    # ATen's dispatch level first: with ATEN_CPU_CAPABILITY=avx2 (or an older CPU) torch's
    # kernels run without AVX-512, and the bf16 instructions are AVX-512 ones
    if not torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX")):
        return False
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes) or bool({"avx512_bf16", "amx_bf16"} & _cpuinfo_flags())


def _cpuinfo_flags() -> set[str]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        return set()
    return {flag for line in lines if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def describe() -> str:
    """One line for a benchmark's header: torch's CPU capability and whether bf16 is native."""
    return f"cpu {torch.backends.cpu.get_cpu_capability()}, native bf16 {'yes' if native_bf16() else 'no'}"

