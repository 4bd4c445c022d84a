"""The GPT decoder in both flavours: causal masking, and the KV cache giving the same logits as
one full forward however the sequence is cut into chunks."""
import pytest
import torch

from genforge.errors import ConfigError
from genforge.models.gpt import GPT, GPTConfig

CONFIGS = {
    "gpt2": dict(flavour="gpt2"),
    "llama": dict(flavour="llama"),
    "llama-gqa": dict(flavour="llama", n_kv_head=2),
}
V, T = 37, 24


def tiny_gpt(name: str, seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_embd=32, **{**CONFIGS[name], **kw})
    return GPT(cfg).eval()


def tokens(shape, seed=1):
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_future_tokens_do_not_change_past_logits(name):
    model = tiny_gpt(name)
    idx = tokens((2, T))
    t = 10
    changed = idx.clone()
    changed[:, t:] = (idx[:, t:] + 1 + tokens((2, T - t), seed=2) % (V - 1)) % V  # every future token differs
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :t], b[:, :t], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, t:], b[:, t:], atol=1e-4)  # the model does read its input


@pytest.mark.parametrize("name", list(CONFIGS))
def test_past_tokens_change_later_logits(name):
    model = tiny_gpt(name)
    idx = tokens((1, T))
    changed = idx.clone()
    changed[0, 0] = (idx[0, 0] + 1) % V
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    assert (a[0, 1:] - b[0, 1:]).abs().amax(dim=-1).min() > 1e-6  # every later position sees token 0


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("cuts", [(7,), (1,), (5, 6, 7, 15), tuple(range(1, T))])
def test_chunked_prefill_with_cache_equals_full_forward(name, cuts):
    model = tiny_gpt(name)
    idx = tokens((2, T))
    with torch.no_grad():
        full = model(idx)[0]
        cache = model.new_cache(2)
        pieces = []
        for start, end in zip((0, *cuts), (*cuts, T)):
            logits, returned = model(idx[:, start:end], cache, start)
            assert returned is cache
            pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_training_mode_dropout_only_in_training():
    model = tiny_gpt("gpt2", dropout=0.5)
    idx = tokens((2, T))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], model(idx)[0])
        model.train()
        assert not torch.equal(model(idx)[0], model(idx)[0])


def test_tied_embeddings_by_flavour():
    gpt2, llama = tiny_gpt("gpt2"), tiny_gpt("llama")
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert llama.lm_head.weight is not llama.transformer.wte.weight
    assert "wpe" in gpt2.transformer and "wpe" not in llama.transformer


def test_sequence_longer_than_block_size_is_refused():
    model = tiny_gpt("gpt2")
    with pytest.raises(ValueError, match="block_size=32"):
        model(tokens((1, 33)))
    with pytest.raises(ValueError, match="block_size=32"):
        model(tokens((1, 2)), model.new_cache(1), 31)


@pytest.mark.parametrize("kw, key", [
    (dict(n_embd=30, n_head=4), "n_embd=30"),
    (dict(n_head=4, n_kv_head=3), "n_kv_head=3"),
    (dict(flavour="gpt2", n_head=4, n_kv_head=2), "n_kv_head"),
    (dict(flavour="llama", n_embd=12, n_head=4), "head size"),
    (dict(block_size=0), "block_size=0"),
])
def test_invalid_configs(kw, key):
    with pytest.raises(ConfigError, match=key):
        GPTConfig(**{"n_embd": 32, "n_head": 4, **kw})


def test_vocab_size_required():
    with pytest.raises(ConfigError, match="vocab_size"):
        GPT(GPTConfig(n_embd=32, n_head=4))
