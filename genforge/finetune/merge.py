"""`genforge merge`: fold LoRA adapters into the weights, giving a plain checkpoint that every
verb (generate, chat, export hf) reads without PEFT."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from genforge import checkpoint as ckpt_io
from genforge.data.paths import inside
from genforge.errors import CheckpointError
from genforge.hf import adapters
from genforge.version import __version__


def merge(ckpt: str | Path, out: str | Path, adapter: str | Path | None = None) -> Path:
    """Write the merged model of a LoRA checkpoint (or of ckpt + a PEFT adapter directory) at out."""
    if adapter is None:
        path = ckpt_io.resolve(ckpt)
        if not ckpt_io.read_config(path).get("lora"):
            raise CheckpointError(f"{path}: not a LoRA checkpoint (no \"lora\" in config.json); "
                                  "pass --adapter DIR to merge a PEFT adapter into it")
        loaded = ckpt_io.load(path, merged=True, trainable=True)
        model, config, path = loaded.model, loaded.config, loaded.path
    else:
        check_adapter(Path(adapter))
        loaded = ckpt_io.load(ckpt, trainable=True)
        model, config, path = loaded.model, loaded.config, loaded.path
        model = adapters.merge_adapter(model, Path(adapter))  # HF module names (PEFT on the HF model) or genforge's
    meta = {"genforge_version": __version__, "family": config["family"],
            "model": dataclasses.asdict(model.config), "tokenizer": "tokenizer.json",
            "merged_from": {"checkpoint": str(path), "adapter": str(adapter or path)},
            **{k: config[k] for k in ("finetune", "hf") if k in config}}
    tokenizer = path / "tokenizer.json"
    return ckpt_io.save_checkpoint(Path(out), meta, {"model": model}, tokenizer if tokenizer.is_file() else None)


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def check_adapter(folder: Path) -> None:
    """A PEFT adapter directory genforge will read: adapter_config.json and adapter_model.safetensors,
    both inside it. CheckpointError otherwise; an adapter saved only as a pickle (adapter_model.bin)
    is refused before PEFT would unpickle it."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such adapter directory")
    if not (folder / "adapter_config.json").is_file():
        raise CheckpointError(f"{folder}: not a PEFT adapter directory (no adapter_config.json)")
    for name in ("adapter_config.json", ADAPTER_WEIGHTS):
        if (folder / name).exists():
            inside(folder, name, f"{folder}: {name}", CheckpointError)
    if not (folder / ADAPTER_WEIGHTS).is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in ckpt_io.PICKLE_SUFFIXES)
        found = f"it holds {', '.join(pickles)}, a PyTorch pickle (unpickling can run arbitrary code); " if pickles else ""
        raise CheckpointError(f"{folder}: no {ADAPTER_WEIGHTS}; {found}genforge reads only safetensors adapters "
                              "(save it with save_pretrained(..., safe_serialization=True))")
