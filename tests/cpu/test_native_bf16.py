"""genforge.cpu.isa.native_bf16, the one rule for bf16 on CPU, and the choices that follow it: on a
CPU without native bf16, train.dtype=auto is fp32 and Muon's Newton–Schulz runs in fp32; with it,
both stay bf16 (torch's own iteration, bitwise)."""
from __future__ import annotations

import pytest
import torch
from torch.optim import _muon
from torch.utils._python_dispatch import TorchDispatchMode

from genforge.config import TrainConfig
from genforge.cpu import isa
from genforge.device import resolve_dtype
from genforge.errors import ConfigError
from genforge.models.gpt import GPT, GPTConfig
from genforge.train.optim import build_optimizer, hidden_matrices, newton_schulz

CPU = torch.device("cpu")
TORCH_NEWTON_SCHULZ = _muon._zeropower_via_newtonschulz


@pytest.mark.parametrize(("name", "native"), [("avx2", False), ("AVX512", False), ("avx512_bf16", True), ("amx_bf16", True)])
def test_the_environment_overrides_the_detection(monkeypatch, name, native):
    monkeypatch.setenv("GENFORGE_CPU_ISA", name)
    assert isa.native_bf16() is native
    assert isa.describe().endswith(f"native bf16 {'yes' if native else 'no'}")


def test_an_unknown_override_is_an_error(monkeypatch):
    monkeypatch.setenv("GENFORGE_CPU_ISA", "sse2")
    with pytest.raises(ConfigError, match="GENFORGE_CPU_ISA=sse2: expected one of avx2, avx512"):
        isa.native_bf16()


def test_torch_kernels_without_avx512_mean_no_native_bf16(monkeypatch):
    monkeypatch.delenv("GENFORGE_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # as under ATEN_CPU_CAPABILITY=avx2
    isa._detected.cache_clear()
    try:
        assert not isa.native_bf16()
    finally:
        isa._detected.cache_clear()


@pytest.mark.parametrize("native", [False, True])
def test_dtype_auto_is_bf16_on_cpu_only_where_native(monkeypatch, native):
    monkeypatch.setattr(isa, "native_bf16", lambda: native)
    assert resolve_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("bfloat16", CPU) == torch.bfloat16  # asked for: honoured


class _MatmulDtypes(TorchDispatchMode):
    """The dtypes of every matrix product run meanwhile."""

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm):
            self.dtypes.add(args[-1].dtype)
        return func(*args, **(kwargs or {}))


def _muon_step(monkeypatch, native: bool):
    monkeypatch.setattr(isa, "native_bf16", lambda: native)
    torch.manual_seed(0)
    model = GPT(GPTConfig(flavour="llama", vocab_size=50, n_layer=1, n_head=2, n_embd=32, block_size=16))
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="muon"), CPU, hidden_matrices([model]))
    model(torch.randint(0, 50, (2, 8)))[0].square().mean().backward()
    with _MatmulDtypes() as seen:
        opt.step()
    return opt, seen.dtypes


def test_muon_orthogonalises_in_fp32_without_native_bf16(monkeypatch):
    opt, dtypes = _muon_step(monkeypatch, native=False)
    assert opt.ns_dtype == torch.float32
    assert dtypes == {torch.float32}
    assert _muon._zeropower_via_newtonschulz is TORCH_NEWTON_SCHULZ  # torch's own is back


def test_muon_orthogonalises_in_bf16_where_native(monkeypatch):
    opt, dtypes = _muon_step(monkeypatch, native=True)
    assert opt.ns_dtype == torch.bfloat16
    assert dtypes == {torch.bfloat16}


@pytest.mark.parametrize("shape", [(48, 32), (32, 48)])
def test_newton_schulz_is_torch_own_in_bf16_and_closer_in_fp32(shape):
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    args = ((_muon.DEFAULT_A, _muon.DEFAULT_B, _muon.DEFAULT_C), _muon.DEFAULT_NS_STEPS, _muon.EPS)
    assert torch.equal(newton_schulz(grad, *args), _muon._zeropower_via_newtonschulz(grad, *args))
    exact = newton_schulz(grad.double(), *args, dtype=torch.float64)
    fp32, bf16 = newton_schulz(grad, *args, dtype=torch.float32), newton_schulz(grad, *args)
    assert (fp32.double() - exact).abs().max() < 1e-4 < (bf16.double() - exact).abs().max()
    before = grad.clone()
    newton_schulz(grad, *args, dtype=torch.float32)
    assert torch.equal(grad, before)  # the update (maybe Muon's momentum buffer) is left as it was
