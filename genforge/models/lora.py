"""LoRA (Hu et al. 2021) on genforge's own modules through PEFT: LoraConfig + get_peft_model
on any nn.Module, adapters saved in PEFT's format (adapter_config.json +
adapter_model.safetensors), merge_and_unload to fold them into the weights."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from genforge.errors import ConfigError

# Linear layers by name: attention (q|k|v and out) and MLP of both model families
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")


def lora_settings(r: int = 8, alpha: float = 16.0, dropout: float = 0.05, targets: list[str] | None = None,
                  trainable: list[str] | None = None) -> dict:
    """The plain-dict LoRA settings a checkpoint's config.json records (its "lora" entry)."""
    if r < 1:
        raise ConfigError(f"--lora-r {r}: must be >= 1")
    if not 0 <= dropout < 1:
        raise ConfigError(f"--lora-dropout {dropout}: must be in [0, 1)")
    return {"r": r, "alpha": alpha, "dropout": dropout, "targets": list(targets or DEFAULT_TARGETS),
            "trainable": list(trainable or [])}


def wrap(model: nn.Module, settings: dict) -> nn.Module:
    """model with LoRA adapters on the target Linear layers (a peft.PeftModel); only adapters
    (and the modules named in settings["trainable"], e.g. a fresh classifier head) train.
    LoRA's B starts at zero, so the wrapped model computes exactly what model did."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("--method lora needs PEFT: pip install 'genforge[finetune]'") from None

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    unknown = [t for t in settings["targets"] if t not in names]
    if unknown:
        raise ConfigError(f"--target-modules: {unknown} match no Linear layer of this model (it has {sorted(names)})")
    config = LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                        target_modules=list(settings["targets"]), modules_to_save=settings["trainable"] or None)
    return get_peft_model(model, config)


def save_adapter(peft_model: nn.Module, folder: Path) -> Path:
    """PEFT's adapter directory: adapter_config.json + adapter_model.safetensors."""
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def load_adapter(model: nn.Module, folder: Path) -> nn.Module:
    """model with the PEFT adapter directory folder applied (not merged)."""
    from peft import PeftModel

    from genforge.errors import CheckpointError

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise CheckpointError(f"{folder}: not a PEFT adapter directory (no adapter_config.json)")
    try:
        return PeftModel.from_pretrained(model, str(folder))
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{folder}: adapter does not fit the model ({str(e).splitlines()[0]})") from None


def merge(peft_model: nn.Module) -> nn.Module:
    """The base model with W + (alpha/r) B A folded into each target weight."""
    return peft_model.merge_and_unload()


def trainable_fraction(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)
