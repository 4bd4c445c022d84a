"""The GPT-2 blocks' C++ op pair (genforge/cpu/fused_gpt.{py,cpp}): when the model takes it, that
its outputs and gradients are as close to fp32 as the Python modules' under the same bf16
autocast, its kernels against float64 references, exact resume through it, and the fallback."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genforge.cpu import fused_gpt
from genforge.models.gpt import GPT, GPTConfig
from genforge.train.run import run
from tests.train.test_resume import assert_same_runs

needs_build = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                 reason="no C++ compiler here to build the fused CPU kernels")


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(flavour="gpt2", n_layer=2, n_head=3, n_embd=24, block_size=32, vocab_size=29, bias=False, activation="gelu")
    model = GPT(GPTConfig(**{**cfg, **kw}))
    with torch.no_grad():  # away from the init's zero biases and unit norms, so that every path is exercised
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture
def ops():
    """The kernels' ops, built and loaded (any test may run first)."""
    assert fused_gpt.available()
    return torch.ops.genforge_cpu


def _loss_and_grads(model, x, y, fused: bool, monkeypatch, dtype=torch.bfloat16):
    with monkeypatch.context() as mp:
        if not fused:
            mp.setattr(fused_gpt, "fused_params", lambda *a: None)
        with torch.autocast("cpu", dtype, enabled=dtype != torch.float32):
            logits, _ = model(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        grads = torch.autograd.grad(loss, list(model.parameters()))
    return logits.float(), loss, grads


def _rel(a, b) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@needs_build
def test_the_kernels_build_and_load():
    assert fused_gpt.available()


@needs_build
@pytest.mark.parametrize("kw", [dict(), dict(bias=True, activation="gelu_tanh"), dict(n_layer=3, n_head=2, n_embd=16)],
                         ids=["nanogpt-like", "bias-tanh", "three-layers"])
@pytest.mark.parametrize("T", [32, 13])
def test_as_close_to_fp32_as_the_python_modules(kw, T, monkeypatch):
    model = _model(**kw)
    x, y = torch.randint(0, 29, (3, T)), torch.randint(0, 29, (3, T))
    calls = []
    monkeypatch.setattr(fused_gpt._Blocks, "apply", lambda *a, f=fused_gpt._Blocks.apply: calls.append(1) or f(*a))
    fused = _loss_and_grads(model, x, y, True, monkeypatch)
    assert calls, "the model did not take the fused blocks"
    python = _loss_and_grads(model, x, y, False, monkeypatch)
    exact = _loss_and_grads(model, x, y, False, monkeypatch, torch.float32)
    assert abs(fused[1].item() - exact[1].item()) < 2e-3
    assert _rel(fused[0], exact[0]) <= 1.5 * _rel(python[0], exact[0]) + 1e-3
    names = [n for n, _ in model.named_parameters()]
    for name, gf, gp, ge in zip(names, fused[2], python[2], exact[2]):
        assert _rel(gf, ge) <= 1.5 * _rel(gp, ge) + 2e-3, name


@needs_build
def test_same_inputs_give_bitwise_the_same_gradients(monkeypatch):
    model = _model()
    x, y = torch.randint(0, 29, (2, 32)), torch.randint(0, 29, (2, 32))
    a = _loss_and_grads(model, x, y, True, monkeypatch)
    b = _loss_and_grads(model, x, y, True, monkeypatch)
    assert all(torch.equal(g, h) for g, h in zip(a[2], b[2]))


@needs_build
def test_a_retained_graph_gives_the_same_gradients_twice():
    model = _model()
    with torch.autocast("cpu", torch.bfloat16):
        logits, _ = model(torch.randint(0, 29, (2, 32)))
    loss, params = logits.float().square().mean(), list(model.parameters())
    first = torch.autograd.grad(loss, params, retain_graph=True)
    assert all(torch.equal(g, h) for g, h in zip(first, torch.autograd.grad(loss, params)))


@needs_build
def test_gelu_kernel_against_float64(ops):
    h = torch.linspace(-9, 9, 4001).bfloat16()
    g, dg = ops.gelu_fwd(h, False)
    x = h.double()
    cdf = 0.5 * torch.special.erfc(-x / 2**0.5)  # Phi(x) without 1 + erf's cancellation in the left tail
    ref, dref = x * cdf, cdf + x * torch.exp(-x * x / 2) / (2 * torch.pi) ** 0.5
    # the table holds the exact values rounded to bf16: within one bf16 ulp (2^-7 relative) everywhere,
    # the left tail too (torch's fp32 erf gives 0 for x < -5.5)
    assert ((g.double() - ref).abs() <= ref.abs() * 2**-7).all()
    assert ((dg.double() - dref).abs() <= dref.abs() * 2**-7).all()
    g, dg = ops.gelu_fwd(h, True)
    u = (2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)
    sg = torch.sigmoid(2 * u)  # 0.5 (1 + tanh u), accurate in the left tail too
    ref, dref = x * sg, sg + 2 * x * sg * (1 - sg) * (2 / torch.pi) ** 0.5 * (1 + 3 * 0.044715 * x * x)
    assert ((g.double() - ref).abs() <= ref.abs() * 2**-7).all()
    assert ((dg.double() - dref).abs() <= dref.abs() * 2**-7).all()
    mid = x.abs() < 5  # where torch's own double formula has no cancellation
    torch.testing.assert_close(ref[mid], F.gelu(x[mid], approximate="tanh"), rtol=1e-12, atol=1e-15)
    nan = torch.tensor([float("nan"), float("inf"), float("-inf")]).bfloat16()
    g, dg = ops.gelu_fwd(nan, False)
    assert g[0].isnan() and g[1] == float("inf") and g[2] == 0 and dg[1] == 1 and dg[2] == 0


@needs_build
@pytest.mark.parametrize("B,T,n_head,hs", [(2, 64, 4, 32), (3, 13, 2, 8), (1, 70, 3, 20), (2, 1, 1, 16)])
def test_causal_attention_kernels_against_float64(B, T, n_head, hs, ops):
    """attention_fwd/bwd take c_attn's output (B*T, 3C) as it is and give y (B*T, C), the heads side
    by side, the probabilities P and qkv's gradient: against causal attention in float64 on the
    same bf16 inputs (odd sizes: the padding to 16 columns must not leak into the results)."""
    torch.manual_seed(0)
    C = n_head * hs
    qkv = (torch.randn(B * T, 3 * C) * 2).bfloat16()
    dy = torch.randn(B * T, C).bfloat16()
    x = qkv.double().requires_grad_()
    q, k, v = x.view(B, T, 3, n_head, hs).permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
    s = (q @ k.transpose(-1, -2)) / hs ** 0.5
    p = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    ref = (p @ v).transpose(1, 2).reshape(B * T, C)
    ref.backward(dy.double())
    y, P = ops.attention_fwd(qkv, B, n_head)
    torch.testing.assert_close(P.double(), p.detach().reshape(B * n_head, T, T), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y.double(), ref.detach(), atol=1e-2, rtol=1e-2)  # y is bf16
    assert _rel(y, ref.detach()) < 4e-3
    dqkv = ops.attention_bwd(qkv, P, dy, n_head)
    assert dqkv.shape == qkv.shape and dqkv.dtype == torch.bfloat16
    torch.testing.assert_close(dqkv.double(), x.grad, atol=2e-2, rtol=1e-2)
    assert _rel(dqkv, x.grad) < 4e-3


@needs_build
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64-v3 is an x86 target")
def test_the_kernels_built_without_avx512_pass_the_same_checks(tmp_path):
    """The portable paths (vector extensions on AVX2, the bf16 stores and lane sums without
    AVX-512), which a CPU with AVX-512 never runs: the numerical tests again, on an AVX2 build."""
    env = {**os.environ, "GENFORGE_CPU_MARCH": "x86-64-v3", "GENFORGE_CACHE": str(tmp_path)}
    checks = "close_to_fp32 or attention_kernels or gelu_kernel or bitwise or resume"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", checks],
                         env=env, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert list(tmp_path.glob("kernels/*/built")), "the AVX2 build was not made"


@needs_build
def test_the_python_modules_run_where_the_blocks_do_not_apply():
    x = torch.zeros(2, 8, 24)
    model = _model()
    fused = lambda m, x: fused_gpt.fused_params(m, x) is not None  # noqa: E731
    with torch.autocast("cpu", torch.bfloat16):
        assert list(map(id, fused_gpt.fused_params(model, x))) == list(map(id, model.transformer.h.parameters()))  # in order
        assert not fused(_model(flavour="llama", n_head=3, n_embd=24), x)
        assert not fused(_model(dropout=0.1), x)  # training with dropout
        assert fused(_model(dropout=0.1).eval(), x)
        assert not fused(model, x.bfloat16())
        assert not fused(_model().to(torch.float64), x)
    assert not fused(model, x)  # no autocast: fp32 is the Python modules'
    with torch.autocast("cpu", torch.bfloat16):
        wrapped = _model()
        wrapped.transformer.h[1].attn.c_proj = _Wrapped(wrapped.transformer.h[1].attn.c_proj)
        assert not fused(wrapped, x)  # an adapter in place of a Linear (LoRA's way)


class _Wrapped(torch.nn.Linear):
    def __init__(self, base):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)


def test_a_failed_build_warns_once_and_the_model_still_runs(monkeypatch):
    def broken():
        raise RuntimeError("Error building extension 'genforge_cpu'\nc++: not found")

    fused_gpt.available.cache_clear()
    monkeypatch.setattr(fused_gpt, "_build", broken)
    try:
        with pytest.warns(RuntimeWarning, match="fused CPU kernels unavailable.*c\\+\\+: not found"):
            assert not fused_gpt.available()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not fused_gpt.available()  # cached: no second warning
            model = _model()
            with torch.autocast("cpu", torch.bfloat16):
                logits, _ = model(torch.zeros(1, 8, dtype=torch.long))
        assert logits.shape == (1, 8, 29)
    finally:
        fused_gpt.available.cache_clear()


def test_the_environment_turns_the_kernels_off(monkeypatch):
    monkeypatch.setenv("GENFORGE_CPU_KERNELS", "0")
    fused_gpt.available.cache_clear()
    try:
        assert not fused_gpt.available()
    finally:
        fused_gpt.available.cache_clear()


@needs_build
@pytest.mark.parametrize("parallel", ["ops", "batch"])
def test_resume_through_the_fused_blocks_equals_uninterrupted(tmp_path, tiny_config, parallel, monkeypatch):
    calls = []
    monkeypatch.setattr(fused_gpt._Blocks, "apply", lambda *a, f=fused_gpt._Blocks.apply: calls.append(1) or f(*a))
    extra = ("train.dtype=bfloat16", "model.dropout=0.0", "train.lr_decay_iters=20", f"train.cpu_parallel={parallel}",
             "train.threads=2")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(tiny_config(straight, *extra, max_iters=20), progress=False)
    assert calls
    run(tiny_config(resumed, *extra, max_iters=10), progress=False)
    run(tiny_config(resumed, *extra, max_iters=20), resume=True, progress=False)
    assert_same_runs(straight, resumed)
