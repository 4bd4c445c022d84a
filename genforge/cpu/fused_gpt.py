"""The GPT-2 flavour's blocks as one C++ op pair (genforge/cpu/fused_gpt.cpp) for CPU training in
bf16 autocast: the same arithmetic as the Python modules, with fewer passes over memory and no
Python between the ops. On nanoGPT's CPU recipe a forward + backward of 6 x 64 tokens on one core
takes ~20% less time than through the Python modules, and two such shards no longer slow each
other through the GIL (cpu/shards.py); see the README's Performance section for the numbers.

The C++ file is compiled on first use with torch's extension builder (a C++ compiler is needed)
into ~/.cache/genforge/kernels (or $GENFORGE_CACHE/kernels), keyed by the source, torch's version
and the CPU, and later runs load the built library directly. Where it cannot be built the model
runs its Python modules, after one warning; GENFORGE_CPU_KERNELS=0 turns the op pair off, and
GENFORGE_CPU_MARCH picks the instruction set it is built for (default: the host's).
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from genforge.config import cache_root
from genforge.nn.attention import CausalSelfAttention
from genforge.nn.mlp import MLP

SOURCE = Path(__file__).with_name("fused_gpt.cpp")
# -march: the host's own instructions, or GENFORGE_CPU_MARCH (e.g. x86-64-v3) for a build that also
# runs on older CPUs of a cluster sharing one cache directory; -fno-split-loops: gcc would split the
# causal mask's `j <= i` loops into a vectorized and a scalar half
FLAGS = ["-O3", f"-march={os.environ.get('GENFORGE_CPU_MARCH', 'native')}", "-fopenmp-simd", "-fno-split-loops"]


def fused_params(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor] | None:
    """The parameters of `model`'s blocks in the op pair's order where they may run as the C++ op
    pair on x, else None. They may where: CPU, bf16 autocast, fp32 parameters and activations, the
    gpt2 flavour, no dropout in training, plain modules (no adapter such as LoRA in place of a
    Linear), not inside torch.compile, and the op pair built."""
    cfg = model.config
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and cfg.flavour == "gpt2"
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not (model.training and cfg.dropout > 0) and not torch.compiler.is_compiling() and available()):
        return None
    # straight through the modules' dicts: nn.Module.__getattr__ takes ~1 us a lookup, and this
    # runs on every forward
    params = []
    for block in model.transformer._modules["h"]:
        mods = block._modules
        attn, mlp = mods["attn"], mods["mlp"]
        linears = (attn._modules["c_attn"], attn._modules["c_proj"], mlp._modules["c_fc"], mlp._modules["c_proj"])
        if not (type(mods["ln_1"]) is type(mods["ln_2"]) is nn.LayerNorm and type(attn) is CausalSelfAttention
                and type(mlp) is MLP and all(type(m) is nn.Linear for m in linears) and attn.n_kv_head == attn.n_head):
            return None
        for m in (mods["ln_1"], linears[0], linears[1], mods["ln_2"], linears[2], linears[3]):
            params += (m._parameters["weight"], m._parameters["bias"]) if cfg.bias else (m._parameters["weight"],)
    # plain modules hold no other parameters; the kernels read them as dense arrays
    return params if all(p.dtype == torch.float32 and p.is_contiguous() for p in params) else None


def blocks(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """model.transformer.h applied to x (B, T, C) through the C++ op pair, or None where the op
    pair does not apply (see fused_params) and the caller runs the Python modules."""
    params = fused_params(model, x)
    if params is None:
        return None
    cfg = model.config
    return _Blocks.apply(x, (cfg.n_layer, cfg.n_head, cfg.norm_eps, cfg.bias, cfg.activation == "gelu_tanh"), *params)


class _Blocks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shape, *params):
        n_layer, n_head, eps, bias, tanh_gelu = shape
        out = torch.ops.genforge_cpu.gpt2_blocks_forward(x.contiguous(), list(params), n_layer, n_head, eps, bias, tanh_gelu)
        ctx.shape = shape
        ctx.save_for_backward(*params)  # checked: a parameter changed in place before the backward is an error
        # the activations are the op's own, made here and seen by nothing else: kept on ctx as they
        # are (autograd's checks on ~17 saved tensors a layer cost ~60 us a forward and backward)
        ctx.acts = out[1:]
        return out[0]

    @staticmethod
    def backward(ctx, dy):
        n_layer, n_head, _, bias, _ = ctx.shape
        grads = torch.ops.genforge_cpu.gpt2_blocks_backward(dy.contiguous(), ctx.acts, list(ctx.saved_tensors), n_layer,
                                                            n_head, bias)
        return grads[0], None, *grads[1:]


@functools.cache
def available() -> bool:
    """Build (once per machine and torch version) and load the op pair; False, with one warning,
    where that fails."""
    if os.environ.get("GENFORGE_CPU_KERNELS", "1") == "0":
        return False
    try:
        lib = _build()
        torch.ops.load_library(str(lib))
        return True
    except Exception as e:  # no compiler, no headers, a failed build: the Python modules still work
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = next((line for line in lines if "error:" in line), lines[-1] if lines else "")  # the compiler's first error
        warnings.warn(f"genforge: fused CPU kernels unavailable, using the Python modules ({type(e).__name__}: {reason})",
                      RuntimeWarning, stacklevel=2)
        return False


def _build() -> Path:
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + torch.__version__.encode() + sys.version.encode() + _cpu_id().encode()).hexdigest()[:16]
    root = cache_root() / "kernels" / key
    lib, done = root / "genforge_cpu.so", root / "built"  # `built` is written once the library is whole
    if done.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    print(f"genforge: compiling the fused CPU kernels once, into {root} (~15 s)", file=sys.stderr, flush=True)
    from torch.utils import cpp_extension  # imported only to build: it pulls in setuptools

    # the builder locks the directory, so concurrent first runs build once
    built = Path(cpp_extension.load("genforge_cpu", [str(SOURCE)], extra_cflags=FLAGS, build_directory=str(root),
                                    is_python_module=False, verbose=False))
    done.write_text(str(built))
    return built


def _cpu_id() -> str:
    """What -march=native compiled for: the CPU's model name and flags (Linux), else the machine."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "".join(sorted({line for line in lines if line.startswith(("model name", "flags"))})) or platform.machine()
    except OSError:
        return platform.machine() + platform.processor()
