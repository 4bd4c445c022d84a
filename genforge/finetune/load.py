"""A checkpoint's model for training or export: built from config.json, weights loaded, LoRA
adapters of a LoRA run folded in (or kept, for resuming)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from genforge.config import from_dict
from genforge.errors import CheckpointError
from genforge.models import FAMILIES
from genforge.train import checkpoint as ckpt_io


def build_model(config: dict, path: Path) -> nn.Module:
    """The (un-loaded) model config.json describes; a PEFT-wrapped one for LoRA checkpoints."""
    family = FAMILIES.get(config.get("family"))
    if family is None:
        raise CheckpointError(f"{path / 'config.json'}: unknown family {config.get('family')!r}")
    model = family.build(from_dict(family.config, config.get("model") or {}, "model"))
    if config.get("lora"):
        from genforge.finetune.lora import wrap

        model = wrap(model, config["lora"])
    return model


def load_checkpoint_model(ckpt: str | Path, merged: bool = True) -> tuple[nn.Module, dict, Path]:
    """(model with the checkpoint's weights, config.json dict, checkpoint dir). A LoRA checkpoint
    gives its merged model unless merged=False."""
    path = ckpt_io.resolve(ckpt)
    config = ckpt_io.read_config(path)
    model = build_model(config, path)
    ckpt_io.load_module(model, path / "model.safetensors")
    if config.get("lora") and merged:
        from genforge.finetune.lora import merge

        model = merge(model)
    return model, config, path
