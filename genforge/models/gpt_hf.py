"""Conversion between genforge's GPT and the Hugging Face `transformers` layouts
(GPT2LMHeadModel, LlamaForCausalLM): config dicts and state dicts, no `transformers` import."""
from __future__ import annotations

import torch

from genforge.errors import CheckpointError, ConfigError
from genforge.models.gpt import GPT, GPTConfig
from genforge.nn.rope_scaling import check_scaling as check_rope_scaling


def to_hf(model: GPT) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return (HF config.json dict, HF state dict) for a genforge GPT."""
    cfg = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    return (_gpt2_to_hf(cfg, sd) if cfg.flavour == "gpt2" else _llama_to_hf(cfg, sd))


def from_hf(hf_config: dict, hf_state: dict[str, torch.Tensor], n_labels: int = 0) -> GPT:
    """Build a genforge GPT from an HF config dict and state dict (GPT-2 or Llama architecture)."""
    if n_labels:
        raise CheckpointError("n_labels: a decoder checkpoint has no classification head to add")
    kind = hf_config.get("model_type")
    if kind == "gpt2":
        cfg, sd = _gpt2_from_hf(hf_config, hf_state)
    elif kind == "llama":
        cfg, sd = _llama_from_hf(hf_config, hf_state)
    else:
        raise CheckpointError(f"config.json: model_type={kind!r} is not supported (expected gpt2 or llama)")
    model = GPT(cfg)
    if cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise CheckpointError(f"HF weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def _gpt2_to_hf(cfg: GPTConfig, sd: dict) -> tuple[dict, dict]:
    if not cfg.bias:
        raise CheckpointError("GPT-2 export needs model.bias=true (GPT2LMHeadModel always has biases)")
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    out = {k: (v.t().contiguous() if k.endswith(conv1d) else v) for k, v in sd.items()}
    config = dict(
        architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size, n_ctx=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.mlp_hidden,
        activation_function="gelu_new" if cfg.activation == "gelu_tanh" else "gelu",
        layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
    )
    return config, out


def _gpt2_from_hf(c: dict, sd: dict) -> tuple[GPTConfig, dict]:
    act = c.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise CheckpointError(f"config.json: activation_function={act!r} is not supported")
    cfg = GPTConfig(
        flavour="gpt2", vocab_size=c["vocab_size"], block_size=c["n_positions"], n_layer=c["n_layer"],
        n_head=c["n_head"], n_embd=c["n_embd"], mlp_hidden=c.get("n_inner") or 4 * c["n_embd"], bias=True,
        tie_embeddings=c.get("tie_word_embeddings", True), norm_eps=c.get("layer_norm_epsilon", 1e-5),
        activation="gelu" if act == "gelu" else "gelu_tanh",
    )
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    out = {}
    for k, v in sd.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers of old checkpoints
            continue
        k = k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k
        out[k] = v.t().contiguous() if k.endswith(conv1d) else v
    return cfg, out


# (ours within a block, HF within model.layers.N) for weights that map one to one
_LLAMA_SAME = [("ln_1.weight", "input_layernorm.weight"), ("ln_2.weight", "post_attention_layernorm.weight"),
               ("attn.c_proj.weight", "self_attn.o_proj.weight"), ("mlp.c_proj.weight", "mlp.down_proj.weight")]


def _llama_to_hf(cfg: GPTConfig, sd: dict) -> tuple[dict, dict]:
    if cfg.bias:
        raise CheckpointError("Llama export needs model.bias=false")
    hs = cfg.n_embd // cfg.n_head
    out = {"model.embed_tokens.weight": sd["transformer.wte.weight"], "model.norm.weight": sd["transformer.ln_f.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(cfg.n_layer):
        ours, hf = f"transformer.h.{i}.", f"model.layers.{i}."
        for a, b in _LLAMA_SAME:
            out[hf + b] = sd[ours + a]
        q, k, v = sd[ours + "attn.c_attn.weight"].split([cfg.n_head * hs, cfg.n_kv_head * hs, cfg.n_kv_head * hs])
        out[hf + "self_attn.q_proj.weight"], out[hf + "self_attn.k_proj.weight"], out[hf + "self_attn.v_proj.weight"] = q, k, v
        gate, up = sd[ours + "mlp.c_fc.weight"].chunk(2)
        out[hf + "mlp.gate_proj.weight"], out[hf + "mlp.up_proj.weight"] = gate, up
    config = dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd, intermediate_size=cfg.mlp_hidden, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head, head_dim=hs,
        max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings, hidden_act="silu", attention_bias=False, mlp_bias=False,
        **_rope_to_hf(cfg),
    )
    return config, {k: v.contiguous() for k, v in out.items()}


def _rope_to_hf(cfg: GPTConfig) -> dict:
    """transformers 5's rope_parameters, plus transformers 4's rope_theta (and rope_scaling)."""
    scaling = dict(cfg.rope_scaling or {"rope_type": "default"})
    if scaling["rope_type"] == "dynamic":  # transformers scales past max_position_embeddings (= block_size)
        scaling.pop("original_max_position_embeddings", None)
    out = {"rope_theta": cfg.rope_theta, "rope_parameters": {"rope_theta": cfg.rope_theta, **scaling}}
    if cfg.rope_scaling:
        out["rope_scaling"] = scaling
    return out


def _rope_from_hf(c: dict) -> tuple[float, dict | None]:
    """(rope_theta, GPTConfig.rope_scaling) of a Llama config.json in either layout: transformers
    5's rope_parameters {rope_theta, rope_type, ...} or transformers 4's top-level rope_theta and
    rope_scaling {rope_type (or type), ...}. CheckpointError for what genforge does not compute."""
    params, legacy = c.get("rope_parameters") or {}, c.get("rope_scaling") or {}
    for name, value in (("rope_parameters", params), ("rope_scaling", legacy)):
        if not isinstance(value, dict) or any(isinstance(v, dict) for v in value.values()):
            raise CheckpointError(f"config.json: {name}={value!r}: one rope setting for every layer is supported, "
                                  "not one per layer type")
    scaling = {**legacy, **params}
    theta = float(scaling.pop("rope_theta", None) or c.get("rope_theta") or 10000.0)
    kind = scaling.pop("rope_type", None) or scaling.get("type") or "default"
    scaling.pop("type", None)
    partial = scaling.pop("partial_rotary_factor", None) or c.get("partial_rotary_factor") or 1.0
    if partial != 1.0:
        raise CheckpointError(f"config.json: partial_rotary_factor={partial} is not supported (rotary on every dim only)")
    if kind == "default":
        return theta, None
    if kind in ("llama3", "yarn"):  # transformers: the pretraining length, else max_position_embeddings
        original = c.get("original_max_position_embeddings") or scaling.get("original_max_position_embeddings")
        scaling["original_max_position_embeddings"] = original or c["max_position_embeddings"]
    if kind == "yarn" and scaling.get("factor") is None:
        scaling["factor"] = c["max_position_embeddings"] / scaling["original_max_position_embeddings"]
    if kind == "dynamic":  # transformers rescales only past max_position_embeddings, which becomes block_size
        scaling["original_max_position_embeddings"] = c["max_position_embeddings"]
    scaling = {"rope_type": kind, **scaling}
    try:
        check_rope_scaling(scaling, c["max_position_embeddings"])
    except ConfigError as e:
        raise CheckpointError(f"config.json: rope_parameters: {str(e).removeprefix('model.rope_scaling: ')}") from None
    return theta, scaling


def _llama_from_hf(c: dict, sd: dict) -> tuple[GPTConfig, dict]:
    theta, scaling = _rope_from_hf(c)
    if c.get("attention_bias") or c.get("mlp_bias"):
        raise CheckpointError("config.json: Llama with attention_bias/mlp_bias is not supported")
    if c.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"config.json: hidden_act={c['hidden_act']!r} is not supported (Llama's silu only)")
    head_dim = c.get("head_dim")
    if head_dim and head_dim * c["num_attention_heads"] != c["hidden_size"]:
        raise CheckpointError(f"config.json: head_dim={head_dim} is not hidden_size/num_attention_heads="
                              f"{c['hidden_size'] // c['num_attention_heads']}, which genforge's attention needs")
    cfg = GPTConfig(
        flavour="llama", vocab_size=c["vocab_size"], block_size=c["max_position_embeddings"],
        n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"],
        n_kv_head=c.get("num_key_value_heads") or c["num_attention_heads"], n_embd=c["hidden_size"],
        mlp_hidden=c["intermediate_size"], bias=False, tie_embeddings=c.get("tie_word_embeddings", False),
        norm_eps=c.get("rms_norm_eps", 1e-6), rope_theta=theta, rope_scaling=scaling,
    )
    out = {"transformer.wte.weight": sd["model.embed_tokens.weight"], "transformer.ln_f.weight": sd["model.norm.weight"]}
    if "lm_head.weight" in sd:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(cfg.n_layer):
        ours, hf = f"transformer.h.{i}.", f"model.layers.{i}."
        for a, b in _LLAMA_SAME:
            out[ours + a] = sd[hf + b]
        out[ours + "attn.c_attn.weight"] = torch.cat([sd[hf + f"self_attn.{p}_proj.weight"] for p in "qkv"])
        out[ours + "mlp.c_fc.weight"] = torch.cat([sd[hf + "mlp.gate_proj.weight"], sd[hf + "mlp.up_proj.weight"]])
    return cfg, out
