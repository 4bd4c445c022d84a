"""The training runner of text-to-image families (the table's kind "text_image"): open the
captioned images, tokenize the captions, fill the model config from the data (image size,
channels, the text vocabulary, length and padding token), copy in pretrained parts the config
names, and train the family's objective in the loop. The tokenizer is saved in the checkpoint.

Pretrained parts: a model config field in PRETRAINED names a genforge checkpoint (say
`text_encoder: runs/minilm`, an encoder imported with `genforge import hf`, or a genforge CLIP,
whose text tower learnt word order against images); its model config is stored in the field's
`_config` twin and its weights are loaded into the submodule, so the checkpoint holds everything
and loads without the part's own.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from genforge import checkpoint
from genforge.config import RunConfig
from genforge.data import caption_batches as captions
from genforge.data.image_batches import ImageBatches
from genforge.device import resolve_device
from genforge.errors import CheckpointError, ConfigError
from genforge.families import family, resolve
from genforge.train.loop import train

# model config field -> (the submodule it fills, {family its checkpoint may be: the submodule of that
# checkpoint's model it takes ("" the whole model)}, how to get one)
PRETRAINED = {"text_encoder": ("text.encoder", {"encoder": "", "clip": "text"},
                               "import one (genforge import hf DIR --out CKPT) or train a CLIP (genforge train clip/scenes)"),
              "vqvae": ("vqvae", {"vqvae": ""}, "train the image tokenizer first, e.g. genforge train vqvae/scenes")}


def run_t2i(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train cfg.family on the captioned images of cfg.data; return the final checkpoint directory."""
    fam = family(cfg.family)
    parts = load_parts(cfg.model)
    if "text_encoder" in parts:  # a pretrained tower reads its own tokenizer
        cfg.data = dataclasses.replace(cfg.data, tokenizer=str(parts["text_encoder"].path / "tokenizer.json"))
    train_set, val_set = captions.open_captioned(cfg.data)
    tokenizer = captions.caption_tokenizer(cfg.data, train_set.captions + val_set.captions)
    text_len = cfg.data.text_len or captions.longest(tokenizer, train_set.captions + val_set.captions)
    train_ids = captions.encode_captions(tokenizer, train_set.captions, text_len, "training caption")
    val_ids = captions.encode_captions(tokenizer, val_set.captions, text_len, "validation caption")
    C, H, W = train_set.images.shape[1:]
    size = cfg.data.image_size or H
    if size != W and not cfg.data.image_size:
        raise ConfigError(f"data: images are {H}x{W}; text-to-image models need square images (set data.image_size)")
    found = dict(image_size=size, channels=C, text_vocab=tokenizer.vocab_size, text_len=text_len,
                 text_pad=captions.pad_id(tokenizer))
    found.update({f"{name}_config": dataclasses.asdict(module_of(name, loaded).config) for name, loaded in parts.items()})
    cfg.model = fill(cfg.model, found)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = fam.build(cfg.model)
    for name, loaded in parts.items():
        model.get_submodule(PRETRAINED[name][0]).load_state_dict(module_of(name, loaded).state_dict())
    objective = resolve(fam.objective)(model)
    if hasattr(objective, "use_tokenizer"):  # an objective that reads the captions' words (clip's swapped negatives)
        objective.use_tokenizer(tokenizer)
    batches = ImageBatches(captions.as_image_set(train_set, train_ids, size), captions.as_image_set(val_set, val_ids, size),
                           cfg.data.batch_size, cfg.train.seed, resolve_device(cfg.train.device), draw=objective.draw)
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": "tokenizer.json",
              "data": {"source": cfg.data.source, "train_images": len(train_set), "val_images": len(val_set),
                       "text_len": text_len},
              "run": cfg.to_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(Path(tmp) / "tokenizer.json")
        return train(objective, batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config,
                     tokenizer=Path(tmp) / "tokenizer.json", progress=progress)


def load_parts(model_cfg) -> dict:
    """{field: Loaded} of the pretrained checkpoints the model config names (PRETRAINED fields)."""
    parts = {}
    for name, (_, wants, how) in PRETRAINED.items():
        path = getattr(model_cfg, name, "")
        if not path:
            continue
        try:
            loaded = checkpoint.load(path, "cpu")
        except CheckpointError as e:
            raise ConfigError(f"model.{name}={path}: {e}; {how}") from None
        fam = loaded.config.get("family")
        if fam not in wants:
            raise ConfigError(f"model.{name}={path}: a {fam} checkpoint; expected {' or '.join(wants)}")
        parts[name] = loaded
    return parts


def module_of(name: str, loaded) -> torch.nn.Module:
    """The module of a loaded checkpoint that fills PRETRAINED field `name` (a CLIP's text tower)."""
    return loaded.model.get_submodule(PRETRAINED[name][1][loaded.config["family"]])


def fill(model_cfg, found: dict):
    """model_cfg with the data's values where left at 0 (or empty); ConfigError where a value set
    in the config contradicts the data."""
    changes = {}
    for key, value in found.items():
        have = getattr(model_cfg, key)
        if not have:
            changes[key] = value
        elif have != value:
            hint = "data.image_size" if key == "image_size" else f"model.{key}=0 (the data's)"
            raise ConfigError(f"model.{key}={have} but the data gives {value}; set {hint}")
    return dataclasses.replace(model_cfg, **changes)
