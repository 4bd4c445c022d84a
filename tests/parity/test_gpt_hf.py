"""Our GPT, converted to `transformers`' GPT2LMHeadModel / LlamaForCausalLM, gives the same logits
and the same greedy tokens. Tiny random configs; nothing is downloaded."""
import pytest
import torch

from genforge.models.gpt import GPT, GPTConfig
from genforge.models.gpt_hf import from_hf, to_hf
from genforge.sample.text import generate_ids

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "gpt2": dict(flavour="gpt2", vocab_size=71, block_size=48, n_layer=2, n_head=4, n_embd=64),
    "llama": dict(flavour="llama", vocab_size=71, block_size=48, n_layer=2, n_head=4, n_embd=64),
    "llama-gqa": dict(flavour="llama", vocab_size=71, block_size=48, n_layer=2, n_head=4, n_kv_head=2, n_embd=64),
}


def hf_model(model: GPT):
    config, state = to_hf(model)
    cls = {"gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel),
           "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM)}[config["model_type"]]
    hf = cls[1](cls[0](**{k: v for k, v in config.items() if k not in ("architectures", "model_type")}))
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected
    assert all(k == "lm_head.weight" or k.endswith("attn.bias") for k in missing), missing
    return hf.eval()


def randomized(cfg: dict) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():  # norms and biases away from their 1/0 init, so a wrong mapping shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_and_greedy_tokens_match_transformers(name):
    ours = randomized(CONFIGS[name])
    hf = hf_model(ours)
    idx = torch.randint(0, 71, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-4, rtol=1e-4)
        prompt = idx[:1, :5]
        ref = hf.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0,
                          attention_mask=torch.ones_like(prompt))
    got = generate_ids(ours, prompt, max_new_tokens=30, temperature=0.0)
    assert got.tolist() == ref[:, 5:].tolist()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hf_round_trip(name):
    ours = randomized(CONFIGS[name])
    config, state = to_hf(ours)
    back = from_hf(config, state)
    assert back.config == ours.config
    for (k, a), b in zip(ours.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
