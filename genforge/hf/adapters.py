"""LoRA adapters in the Hugging Face module names of the exported model, both ways, in PEFT's
adapter format (adapter_config.json + adapter_model.safetensors), so PEFT loads genforge's
adapters onto `genforge export hf`'s model and `genforge merge --adapter` reads PEFT adapters
trained on GPT2LMHeadModel or LlamaForCausalLM.

GPT-2 keeps genforge's names (transformer.h.N.attn.c_attn...), HF's Conv1D layers included
(fan_in_fan_out). Llama's are fused in genforge: attn.c_attn is q_proj, k_proj and v_proj stacked
by rows, mlp.c_fc is gate_proj over up_proj. A LoRA update s B A of a fused weight is, row block
by row block, the update s B_rows A of each HF projection: export splits B's rows and copies A,
exactly, at the same rank. The other way, q, k and v each with their own A need not fit one
rank-r update of c_attn, so merging folds them into the weights in the HF layout instead
(gpt_hf.to_hf, W += s B A per module, gpt_hf.from_hf back): exact for any PEFT LoRA.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genforge.errors import CheckpointError
from genforge.models import lora
from genforge.models.gpt import GPT, GPTConfig
from genforge.models.gpt_hf import from_hf, to_hf

PREFIX = "base_model.model."  # what PEFT puts before a module's name in adapter_model.safetensors
WEIGHTS = "adapter_model.safetensors"
_LAYER = re.compile(r"transformer\.h\.(\d+)\.(attn|mlp)\.(c_attn|c_proj|c_fc)$")


def save_adapter(peft_model: nn.Module, folder: Path, settings: dict) -> Path:
    """PEFT's adapter directory for a LoRA-wrapped model: a GPT's in the module names of its
    exported HF model (GPT2LMHeadModel / LlamaForCausalLM), other families' in genforge's own."""
    base = peft_model.get_base_model()
    if not isinstance(base, GPT):
        return lora.save_adapter(peft_model, folder)
    from peft import LoraConfig, get_peft_model_state_dict

    cfg = base.config
    state = get_peft_model_state_dict(peft_model)
    odd = sorted({k.removeprefix(PREFIX).rpartition(".lora_")[0] or k for k in state
                  if ".lora_" not in k or not _LAYER.fullmatch(k.removeprefix(PREFIX).rpartition(".lora_")[0])})
    if odd:  # e.g. --target-modules lm_head: no HF counterpart genforge maps; PEFT still reads genforge's names
        print(f"adapter: {odd[0]} has no Hugging Face module genforge maps; {folder} keeps genforge's module names",
              flush=True)
        return lora.save_adapter(peft_model, folder)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, part = key.removeprefix(PREFIX).rpartition(".lora_")
        for hf_module, rows in hf_modules(cfg, module):
            piece = value if part.startswith("A") or rows is None else value[rows]
            tensors[f"{PREFIX}{hf_module}.lora_{part}"] = piece.detach().cpu().contiguous().clone()
    targets = sorted({k.removeprefix(PREFIX).rpartition(".lora_")[0].rsplit(".", 1)[-1] for k in tensors})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                        target_modules=targets, fan_in_fan_out=cfg.flavour == "gpt2", task_type="CAUSAL_LM")
    config.save_pretrained(str(folder))
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    return folder


def hf_modules(cfg: GPTConfig, module: str) -> list[tuple[str, slice | None]]:
    """The HF modules (name, rows of the fused weight or None for all) of genforge module `module`."""
    found = _LAYER.fullmatch(module)
    if not found:
        raise CheckpointError(f"LoRA adapter on {module}: no Hugging Face module to export it to "
                              "(adapters on the attention and MLP projections export)")
    if cfg.flavour == "gpt2":
        return [(module, None)]
    i, part, name = found.groups()
    layer = f"model.layers.{i}."
    if name == "c_proj":
        return [(layer + ("self_attn.o_proj" if part == "attn" else "mlp.down_proj"), None)]
    if name == "c_fc":
        h = cfg.mlp_hidden
        return [(layer + "mlp.gate_proj", slice(0, h)), (layer + "mlp.up_proj", slice(h, 2 * h))]
    q, kv = cfg.n_embd, cfg.n_kv_head * (cfg.n_embd // cfg.n_head)
    return [(layer + "self_attn.q_proj", slice(0, q)), (layer + "self_attn.k_proj", slice(q, q + kv)),
            (layer + "self_attn.v_proj", slice(q + kv, q + 2 * kv))]


def merge_adapter(model: nn.Module, folder: Path) -> nn.Module:
    """model with the PEFT LoRA adapter in folder folded into its weights. A GPT reads adapters
    in its HF model's module names (any PEFT LoRA on GPT2LMHeadModel / LlamaForCausalLM, and what
    genforge writes); other adapters go through PEFT on genforge's own modules. CheckpointError
    naming the file for what does not fit."""
    folder = Path(folder)
    config = _read_config(folder)
    if not isinstance(model, GPT):
        return lora.merge(lora.load_adapter(model, folder))
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS} (genforge reads only safetensors adapters)")
    tensors = {k.removeprefix(PREFIX): v for k, v in load_file(str(folder / WEIGHTS)).items()}
    if model.config.flavour == "llama" and any(k.startswith("transformer.h.") for k in tensors):
        return lora.merge(lora.load_adapter(model, folder))  # genforge's own fused names (older runs)
    _check_config(config, folder)
    hf_config, state = to_hf(model)
    conv1d = model.config.flavour == "gpt2"  # GPT2LMHeadModel's Conv1D weights are (in, out)
    targets = {k.rpartition(".lora_")[0] for k in tensors if ".lora_" in k}
    for name in sorted(targets):
        A, B = tensors.get(f"{name}.lora_A.weight"), tensors.get(f"{name}.lora_B.weight")
        weight = f"{name}.weight"
        if A is None or B is None or weight not in state:
            raise CheckpointError(f"{folder / WEIGHTS}: {name} is not a module of the {hf_config['architectures'][0]} "
                                  f"this checkpoint exports to (or lacks lora_A/lora_B)")
        r = A.shape[0]
        alpha = config.get("alpha_pattern", {}).get(_pattern(config.get("alpha_pattern", {}), name), config["lora_alpha"])
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        delta = (B.float() @ A.float()) * scale  # (out, in)
        W = state[weight]
        delta = delta.t() if conv1d else delta
        if tuple(delta.shape) != tuple(W.shape):
            raise CheckpointError(f"{folder / WEIGHTS}: {name}'s update is {tuple(delta.shape)} but the weight is "
                                  f"{tuple(W.shape)}: the adapter was trained on another model size")
        state[weight] = (W.float() + delta).to(W.dtype)
    for key in tensors.keys() - {f"{n}.lora_{p}.weight" for n in targets for p in "AB"}:
        if key not in state:  # modules_to_save: whole replacement weights, by their HF names
            raise CheckpointError(f"{folder / WEIGHTS}: {key} is neither a LoRA weight nor a weight of the model")
        if key == "lm_head.weight" and model.config.tie_embeddings:
            raise CheckpointError(f"{folder / WEIGHTS}: replaces lm_head, which this model ties to its input "
                                  "embedding; such an adapter needs a model with tie_embeddings=false")
        state[key] = tensors[key].to(state[key].dtype)
    merged = GPT(model.config)  # the checkpoint's own config (dropout and all), the merged weights
    merged.load_state_dict(from_hf(hf_config, state).state_dict())
    return merged.train(model.training)


def _read_config(folder: Path) -> dict:
    file = folder / "adapter_config.json"
    if not file.is_file():
        raise CheckpointError(f"{folder}: not a PEFT adapter directory (no adapter_config.json)")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return config


def _check_config(config: dict, folder: Path) -> None:
    """Refuse the PEFT options a merge of W + s B A would get wrong, naming them."""
    file = folder / "adapter_config.json"
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"{file}: peft_type={config['peft_type']!r}; genforge merges LoRA adapters only")
    for key in ("use_dora", "lora_bias", "target_parameters", "trainable_token_indices", "layer_replication"):
        if config.get(key):
            raise CheckpointError(f"{file}: {key}={config[key]!r} is not supported (plain LoRA on weights only)")
    if config.get("bias", "none") != "none":
        raise CheckpointError(f"{file}: bias={config['bias']!r} is not supported (genforge's models have no such biases)")


def _pattern(patterns: dict, name: str) -> str:
    """PEFT's match of a module name to an alpha_pattern key (peft.utils.other.get_pattern_key)."""
    return next((p for p in patterns if re.match(rf"(.*\.)?({p})$", name)), name)
