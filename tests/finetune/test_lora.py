"""LoRA through PEFT on genforge's modules: zero-initialised adapters change nothing, merged
equals unmerged, only adapters (and a new head) receive gradients, PEFT's save format loads back."""
from __future__ import annotations

import json

import pytest
import torch

from genforge.models import lora
from genforge.models.encoder import Encoder, EncoderConfig
from genforge.models.gpt import GPT, GPTConfig

pytest.importorskip("peft")


def models():
    torch.manual_seed(0)
    yield "gpt2", GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)), torch.randint(0, 50, (2, 12))
    yield "llama", GPT(GPTConfig(flavour="llama", vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)), \
        torch.randint(0, 50, (2, 12))
    yield "encoder", Encoder(EncoderConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, n_labels=3,
                                           dropout=0.0)), torch.randint(1, 50, (2, 12))


def out(model, idx):
    if isinstance(model.get_base_model() if hasattr(model, "get_base_model") else model, Encoder):
        return model.logits(idx)
    return model(idx)[0]


@pytest.mark.parametrize("name,model,idx", list(models()), ids=["gpt2", "llama", "encoder"])
def test_zero_init_merge_and_grads(name, model, idx):
    model.eval()
    with torch.no_grad():
        before = out(model, idx)
    wrapped = lora.wrap(model, lora.lora_settings(r=4, alpha=8, dropout=0.0, trainable=["head"] if name == "encoder" else None))
    with torch.no_grad():
        torch.testing.assert_close(out(wrapped, idx), before, atol=0, rtol=0)  # B = 0: exactly the base model
    # only the adapters (and the head copy PEFT trains) receive gradients
    wrapped.train()
    out(wrapped, idx).float().pow(2).mean().backward()
    with_grad = {n for n, p in wrapped.named_parameters() if p.grad is not None}
    assert with_grad and all(("lora_" in n) or ("head" in n) for n in with_grad), with_grad
    assert all(p.grad is None for n, p in wrapped.named_parameters() if "lora_" not in n and "head" not in n)
    assert any("lora_B" in n for n in with_grad)
    # non-zero adapters: the merged model computes what the unmerged one does
    with torch.no_grad():
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    wrapped.eval()
    with torch.no_grad():
        unmerged = out(wrapped, idx)
        assert not torch.allclose(unmerged, before)
        merged = lora.merge(wrapped)
        assert type(merged) is type(model) and not any("lora" in k for k in merged.state_dict())
        torch.testing.assert_close(out(merged, idx), unmerged, atol=1e-5, rtol=1e-5)


def test_adapter_saved_in_peft_format(tmp_path):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    base = GPT(cfg).eval()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    wrapped = lora.wrap(base, lora.lora_settings(r=4, alpha=8, dropout=0.0, targets=["c_attn"]))
    with torch.no_grad():
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    lora.save_adapter(wrapped, tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and config["target_modules"] == ["c_attn"]
    fresh = GPT(cfg)
    fresh.load_state_dict(state)
    loaded = lora.load_adapter(fresh, tmp_path / "adapter").eval()
    idx = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], wrapped(idx)[0])


def test_unknown_target_module_is_an_error():
    from genforge.errors import ConfigError

    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(ConfigError, match="q_proj"):
        lora.wrap(model, lora.lora_settings(targets=["q_proj"]))
