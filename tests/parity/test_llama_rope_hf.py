"""Llama checkpoints as transformers 5 writes them (config.json's `rope_parameters`, not a
top-level rope_theta) import with the same logits, for every rope_type genforge computes, on
tiny Llama-3-, SmolLM- and TinyLlama-shaped models; what it does not compute is refused in one
line. Tiny random models built and saved by transformers itself; nothing is downloaded."""
import json

import pytest
import torch

from genforge.errors import CheckpointError
from genforge.hf.io import read_weights
from genforge.models.gpt_hf import from_hf, to_hf

transformers = pytest.importorskip("transformers")

VOCAB, CONTEXT = 97, 64
SHAPES = {  # the published models' proportions, shrunk
    # Llama 3.2: grouped-query attention 4:1, tied embeddings, theta 500000, rms eps 1e-5
    "llama3": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=1, tie_word_embeddings=True, rms_norm_eps=1e-5),
    # SmolLM2: 3:1 grouping, 9 x 64-wide heads (here 3 x 16), tied embeddings, theta 100000
    "smollm": dict(hidden_size=48, intermediate_size=128, num_hidden_layers=3, num_attention_heads=3,
                   num_key_value_heads=1, tie_word_embeddings=True, rms_norm_eps=1e-5),
    # TinyLlama 1.1B: 8:1 grouping, untied output layer, theta 10000
    "tinyllama": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=8,
                      num_key_value_heads=1, tie_word_embeddings=False, rms_norm_eps=1e-5),
}
ROPES = {
    "llama3-default": ("llama3", dict(rope_theta=500000.0, rope_type="default")),
    "llama3-llama3": ("llama3", dict(rope_theta=500000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                     high_freq_factor=4.0, original_max_position_embeddings=48)),
    "llama3-yarn": ("llama3", dict(rope_theta=500000.0, rope_type="yarn", factor=4.0,
                                   original_max_position_embeddings=16)),
    "smollm-default": ("smollm", dict(rope_theta=100000.0, rope_type="default")),
    "tinyllama-default": ("tinyllama", dict(rope_theta=10000.0, rope_type="default")),
    "tinyllama-linear": ("tinyllama", dict(rope_theta=10000.0, rope_type="linear", factor=4.0)),
    "tinyllama-dynamic": ("tinyllama", dict(rope_theta=10000.0, rope_type="dynamic", factor=2.0)),
}


def saved_llama(tmp_path, shape: str, rope: dict) -> tuple:
    """(HF model, config.json as transformers 5 wrote it, weights) of a tiny random Llama."""
    config = transformers.LlamaConfig(vocab_size=VOCAB, max_position_embeddings=CONTEXT, rope_parameters=dict(rope),
                                      **SHAPES[shape])
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from their init of ones, so a wrong mapping shows
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    return hf, json.loads((tmp_path / "config.json").read_text()), read_weights(tmp_path)


def logits_diff(ours, hf, idx) -> tuple[float, float]:
    with torch.no_grad():
        a, b = ours(idx)[0], hf(idx).logits
    return (a - b).abs().max().item(), (a.argmax(-1) == b.argmax(-1)).float().mean().item()


@pytest.mark.parametrize("name", list(ROPES))
def test_transformers5_llama_imports_with_the_same_logits(tmp_path, name):
    shape, rope = ROPES[name]
    hf, config, state = saved_llama(tmp_path, shape, rope)
    assert "rope_parameters" in config and "rope_theta" not in config  # the layout under test
    ours = from_hf(config, state).eval()
    assert ours.config.rope_theta == rope["rope_theta"]
    assert (ours.config.rope_scaling or {}).get("rope_type", "default") == rope["rope_type"]
    idx = torch.randint(0, VOCAB, (2, CONTEXT), generator=torch.Generator().manual_seed(1))
    diff, agree = logits_diff(ours, hf, idx)
    assert diff < 1e-4 and agree == 1.0, (diff, agree)

    # ... and back: the exported config.json gives transformers the same model again
    back_config, back_state = to_hf(ours)
    back = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **{k: v for k, v in back_config.items() if k not in ("architectures", "model_type")})).eval()
    back.load_state_dict(back_state, strict=False)
    if back.config.tie_word_embeddings:
        back.tie_weights()
    diff, agree = logits_diff(ours, back, idx)
    assert diff < 1e-4 and agree == 1.0, (diff, agree)


def test_greedy_tokens_match_with_llama3_rope(tmp_path):
    hf, config, state = saved_llama(tmp_path, *ROPES["llama3-llama3"])
    ours = from_hf(config, state).eval()
    from genforge.sample.text import generate_ids

    prompt = torch.tensor([[5, 17, 33, 2, 60]])
    with torch.no_grad():
        ref = hf.generate(prompt, max_new_tokens=40, do_sample=False, pad_token_id=0,
                          attention_mask=torch.ones_like(prompt))
    assert generate_ids(ours, prompt, max_new_tokens=40, temperature=0.0).tolist() == ref[:, 5:].tolist()


def test_transformers4_layout_reads_the_same(tmp_path):
    """transformers 4 wrote rope_theta at the top and rope_scaling {"type": ...} beside it."""
    _, config, state = saved_llama(tmp_path, *ROPES["tinyllama-linear"])
    v5 = from_hf(config, state).config
    params = config.pop("rope_parameters")
    config.update(rope_theta=params["rope_theta"], rope_scaling={"type": "linear", "factor": params["factor"]})
    assert from_hf(config, state).config == v5


@pytest.mark.parametrize("rope, message", [
    (dict(rope_type="longrope", short_factor=[1.0] * 4, long_factor=[2.0] * 4, original_max_position_embeddings=32),
     r"rope_type='longrope' is not supported \(supported: default, linear, dynamic, llama3, yarn\)"),
    (dict(rope_type="su", factor=2.0), "rope_type='su' is not supported"),
    (dict(rope_type="linear"), "rope_type=linear needs \\['factor'\\]"),
    (dict(rope_type="dynamic", factor=2.0, original_max_position_embeddings=64), None),  # read as given: fine
    (dict(rope_type="default", partial_rotary_factor=0.5), "partial_rotary_factor=0.5 is not supported"),
    ({"full_attention": dict(rope_type="default")}, "one rope setting for every layer"),
])
def test_rope_genforge_does_not_compute_is_refused_in_one_line(tmp_path, rope, message):
    _, config, state = saved_llama(tmp_path, "tinyllama", dict(rope_theta=10000.0, rope_type="default"))
    config["rope_parameters"] = {"rope_theta": 10000.0, **rope}
    if message is None:
        assert from_hf(config, state).config.rope_scaling["rope_type"] == "dynamic"
        return
    with pytest.raises(CheckpointError, match=message) as e:
        from_hf(config, state)
    assert "\n" not in str(e.value)


def test_dynamic_rope_past_its_original_length_is_refused():
    from genforge.errors import ConfigError
    from genforge.models.gpt import GPTConfig

    with pytest.raises(ConfigError, match="dynamic rope past original_max_position_embeddings=64"):
        GPTConfig(flavour="llama", block_size=128, rope_scaling=dict(rope_type="dynamic", factor=2.0,
                                                                     original_max_position_embeddings=64))
