"""`genforge merge`: fold LoRA adapters into the weights, giving a plain checkpoint that every
verb (generate, chat, export hf) reads without PEFT."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from genforge import checkpoint as ckpt_io
from genforge.errors import CheckpointError
from genforge.models import lora
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
        loaded = ckpt_io.load(ckpt, trainable=True)
        model, config, path = loaded.model, loaded.config, loaded.path
        model = lora.merge(lora.load_adapter(model, Path(adapter)))
    meta = {"genforge_version": __version__, "family": config["family"],
            "model": dataclasses.asdict(model.config), "tokenizer": "tokenizer.json",
            "merged_from": {"checkpoint": str(path), "adapter": str(adapter or path)},
            **{k: config[k] for k in ("finetune", "hf") if k in config}}
    tokenizer = path / "tokenizer.json"
    return ckpt_io.save_checkpoint(Path(out), meta, {"model": model}, tokenizer if tokenizer.is_file() else None)
