"""for_decoding: a copy whose linear layers are laid out for batch-1 CPU decoding computes what the
model computes (fp32: the same greedy tokens; bf16: close logits), leaves the model untouched and
restores the global oneDNN switch it flips."""
import pytest
import torch
from torch import nn

from genforge.cpu.decode import DecodeLinear, for_decoding
from genforge.models.gpt import GPT, GPTConfig
from genforge.sample.text import generate_ids

V = 37


def tiny_gpt(flavour: str) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(flavour=flavour, vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32))
    with torch.no_grad():  # large random weights: greedy choices far from ties
        for p in model.parameters():
            p.normal_(0.0, 0.5) if p.dim() >= 2 else p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def prompt(batch: int = 1, length: int = 5) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_fp32_copy_generates_the_same_tokens_across_the_sliding_window(flavour):
    model = tiny_gpt(flavour)
    fast = for_decoding(model, torch.float32)
    assert not any(isinstance(m, nn.Linear) for m in fast.modules())
    assert all(isinstance(m, nn.Linear) for m in (model.lm_head, model.transformer.h[0].attn.c_attn))
    idx = prompt()
    assert torch.equal(generate_ids(fast, idx, 40, temperature=0.0), generate_ids(model, idx, 40, temperature=0.0))


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
@pytest.mark.parametrize("batch", [1, 2])
def test_bf16_copy_logits_are_close_in_prefill_and_decoding(flavour, batch):
    model = tiny_gpt(flavour)
    fast = for_decoding(model, torch.bfloat16)
    idx = prompt(batch, 12)
    with torch.no_grad():
        full = model(idx)[0]
        cache = fast.new_cache(batch)
        assert cache.k.dtype == torch.float32  # the residual stream's dtype, not the weights'
        prefill = fast(idx[:, :11], cache, 0)[0]
        step = fast(idx[:, 11:], cache, 11)[0]  # one row per sequence
    got = torch.cat([prefill, step], dim=1)
    assert got.dtype == torch.float32
    error = ((got - full).norm() / full.norm()).item()
    assert 0 < error < 0.03  # bf16 rounding (about 1.5% here), not a wrong layout; and really bf16


def test_one_row_bf16_product_restores_the_onednn_switch():
    layer = DecodeLinear(nn.Linear(8, 4), torch.bfloat16)
    before = torch.backends.mkldnn.enabled
    try:
        for enabled in (True, False):
            torch.backends.mkldnn.enabled = enabled
            layer(torch.randn(1, 1, 8))
            assert torch.backends.mkldnn.enabled is enabled
    finally:
        torch.backends.mkldnn.enabled = before


def test_other_dtypes_are_refused():
    with pytest.raises(ValueError, match="float16"):
        for_decoding(tiny_gpt("gpt2"), torch.float16)
