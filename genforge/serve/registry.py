"""What the server serves: text models (decoder LMs with a tokenizer) and image models (any module
with `sample(n, cond=None, generator=None) -> (B, C, H, W)` in [0, 1]), each under an id."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from genforge.errors import CheckpointError


@dataclass
class Served:
    id: str
    kind: str                  # "text" or "image"
    model: object              # a TextModel, or an image module
    path: str = ""
    chat_template: dict | None = None   # config.json's `chat_template`, else chat.py's default
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context(self) -> int | None:
        return self.model.model.config.block_size if self.kind == "text" else None


def model_id(path: Path) -> str:
    """A checkpoint's id: its run directory and step (runs/tiny/step-0000020 -> tiny/step-0000020)."""
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.name.startswith("step-") else path.name


def load_served(spec: str, device: str = "auto", dtype: str = "auto") -> Served:
    """Load `CKPT` or `NAME=CKPT`: a text model when the checkpoint has a tokenizer, else an image model."""
    name, sep, ckpt = spec.partition("=")
    if not sep:
        name, ckpt = "", spec
    from genforge.api import TextModel, load_model
    from genforge.train import checkpoint as ckpt_io

    path = ckpt_io.resolve(ckpt)
    if (path / "tokenizer.json").is_file():
        template = ckpt_io.read_config(path).get("chat_template")
        tok_config = path / "tokenizer_config.json"
        if (path / "chat_template.jinja").is_file() or (
                tok_config.is_file() and "chat_template" in json.loads(tok_config.read_text())):
            from genforge.finetune.template import load_bos, load_template  # a tuned chat model's own Jinja template

            jinja, eos = load_template(path)
            template = {"jinja": jinja, "eos": eos, "bos": load_bos(path)}
        served = Served(name or model_id(path), "text", TextModel.load(path, device, dtype), str(path),
                        template if isinstance(template, dict) else None)
    else:
        from genforge.sample.images import IMAGE_FAMILIES, load_image_model

        if ckpt_io.read_config(path).get("family") in IMAGE_FAMILIES:  # a GAN serves its (EMA) generator
            from genforge.train.device import resolve_device

            model = load_image_model(path, str(resolve_device(device)))[0]
        else:
            model = load_model(path, device, dtype)[0]
        if not callable(getattr(model, "sample", None)):
            raise CheckpointError(f"{path}: neither a text model (no tokenizer.json) nor an image model (no sample())")
        served = Served(name or model_id(path), "image", model, str(path))
    return served


def index(served: list[Served]) -> dict[str, Served]:
    """Models by id; two with one id is an error naming both."""
    by_id: dict[str, Served] = {}
    for s in served:
        if s.id in by_id:
            raise CheckpointError(f"model id {s.id!r} is used by {by_id[s.id].path} and {s.path}; name them NAME=CKPT")
        by_id[s.id] = s
    return by_id
