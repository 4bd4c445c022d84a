"""Linear layers laid out for batch-1 decoding on CPU, where every step is a chain of
matrix-vector products bound by memory bandwidth.

What is fast depends on the kernel PyTorch picks, measured on an AVX512-BF16 AMD EPYC (torch 2.13,
one thread, weights streamed from DRAM):
- fp32: `F.linear` runs MKL sgemv on W (out, in), which on AMD CPUs takes MKL's generic code path
  and streams about half the memory bandwidth; `x @ W` on W stored (in, out) streams near all of
  it, for outputs at least as wide as inputs (GPT-2's lm_head: 12 -> 6 ms per token).
- bf16: half the bytes, but bf16 matmuls go to oneDNN, slow at one row; with oneDNN switched off
  PyTorch's own bf16 matrix-vector kernel (fp32 accumulation) takes W (out, in) at 2x fp32's speed.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class DecodeLinear(nn.Module):
    """An nn.Linear's function, its weight in `dtype` and in the layout fastest for one input row.

    Inputs are rounded to `dtype` and outputs returned in the input's dtype, so the rest of the
    model (residual stream, norms, KV cache, attention) keeps its precision. Inference only.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features, self.dtype = linear.in_features, linear.out_features, dtype
        weight = linear.weight.detach().to(dtype)
        self.transposed = dtype == torch.float32 and self.out_features >= self.in_features
        self.weight = (weight.t() if self.transposed else weight).contiguous()  # (in, out) or (out, in)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            rows = x.reshape(-1, self.in_features)
            y = rows @ self.weight if self.bias is None else torch.addmm(self.bias, rows, self.weight)
            return y.view(*x.shape[:-1], self.out_features)
        if self.dtype != torch.bfloat16 or x.numel() != self.in_features:  # more rows: oneDNN's GEMM is good
            return F.linear(x.to(self.dtype), self.weight, self.bias).to(x.dtype)
        # a global switch: another thread's bf16 matmuls in these microseconds skip oneDNN too (slower, still right)
        enabled = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            return F.linear(x.to(self.dtype), self.weight, self.bias).to(x.dtype)
        finally:
            torch.backends.mkldnn.enabled = enabled

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype}"


def for_decoding(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """A copy of model, in eval mode, with every nn.Linear replaced by a DecodeLinear in dtype.

    The copy shares no tensors with model; tied weights come apart (the embedding keeps its dtype).
    It is for sampling only: its linear weights are not parameters. Raises ValueError for a dtype
    other than float32 or bfloat16.
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"for_decoding: dtype={dtype} must be torch.float32 or torch.bfloat16")
    memo = {id(m): DecodeLinear(m, dtype) for m in model.modules() if isinstance(m, nn.Linear)}
    return copy.deepcopy(model, memo).eval()  # deepcopy puts memo's DecodeLinear in place of each nn.Linear
