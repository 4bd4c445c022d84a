"""What the server serves, by the kind of its family (genforge/families.py): text models (decoder
LMs with a tokenizer), image models (a module with `sample(n, cond=None, generator=None) ->
(B, C, H, W)` in [0, 1]) and text-to-image models (genforge.api.PromptImageModel), each under an id."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from genforge.errors import CheckpointError


@dataclass
class Served:
    id: str
    kind: str                  # "text", "image" or "text_image"
    model: object              # a TextModel, an image module, or a PromptImageModel
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
    """Load `CKPT` or `NAME=CKPT`, served by what its family makes (genforge/families.py): text
    (completions and chat) or images (/v1/images/generations; from the request's prompt for text_image)."""
    name, sep, ckpt = spec.partition("=")
    if not sep:
        name, ckpt = "", spec
    from genforge import checkpoint as ckpt_io
    from genforge.api import TextModel, load_model

    path, config, fam = ckpt_io.peek(ckpt)
    kind = fam.kind
    if kind == "text":
        template = config.get("chat_template")
        tok_config = path / "tokenizer_config.json"
        if (path / "chat_template.jinja").is_file() or (
                tok_config.is_file() and "chat_template" in json.loads(tok_config.read_text())):
            from genforge.finetune.template import load_bos, load_template  # a tuned chat model's own Jinja template

            jinja, eos = load_template(path)
            template = {"jinja": jinja, "eos": eos, "bos": load_bos(path)}
        return Served(name or model_id(path), "text", TextModel.load(path, device, dtype), str(path),
                      template if isinstance(template, dict) else None)
    if kind == "text_image":  # images from a prompt (genforge.api.PromptImageModel)
        from genforge.api import PromptImageModel

        return Served(name or model_id(path), "text_image", PromptImageModel.load(path, device, dtype), str(path))
    if kind == "image":  # a GAN serves its (EMA) generator
        model = load_model(path, device, dtype).model
        if not callable(getattr(model, "sample", None)):
            raise CheckpointError(f"{path}: family {config['family']} makes images but its model has no sample()")
        return Served(name or model_id(path), "image", model, str(path))
    if kind == "speech":  # /v1/audio/speech (genforge.sample.speech.SpeechModel)
        from genforge.sample.speech import SpeechModel

        return Served(name or model_id(path), "speech", SpeechModel.load(path, device), str(path))
    if kind == "music":  # /v1/music/generations (genforge.sample.music.MusicModel)
        from genforge.sample.music import MusicModel

        return Served(name or model_id(path), "music", MusicModel.load(path, device, dtype), str(path))
    if kind == "audio":  # /v1/audio/generations (genforge.sample.audio_lm.AudioLMModel)
        from genforge.sample.audio_lm import AudioLMModel

        return Served(name or model_id(path), "audio", AudioLMModel.load(path, device, dtype), str(path))
    from genforge.families import of_kind

    raise CheckpointError(f"{path}: a {config['family']} checkpoint makes neither text nor images, so it cannot be "
                          f"served (text: {', '.join(of_kind('text'))}; images: {', '.join(of_kind('image'))})")


def index(served: list[Served]) -> dict[str, Served]:
    """Models by id; two with one id is an error naming both."""
    by_id: dict[str, Served] = {}
    for s in served:
        if s.id in by_id:
            raise CheckpointError(f"model id {s.id!r} is used by {by_id[s.id].path} and {s.path}; name them NAME=CKPT")
        by_id[s.id] = s
    return by_id
