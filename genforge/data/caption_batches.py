"""Captioned images for training text-to-image families: the `data:` section (CaptionDataConfig),
opening a source into train/val sets of (image, caption token ids), and the batches the loop reads
(ImageBatches: (images (B, C, H, W) in [0, 1], token ids (B, T)), exact resume by one cursor).

Sources:
- builtin:scenes[:shapes|digits|all]: procedural scenes genforge draws (data/scenes.py; the
  embedded default); the validation scenes are drawn with another seed from the same training
  compositions; the held-out compositions are for evaluation only (`genforge eval`);
- captioned images users have: a folder in the Hugging Face image-folder layout (metadata.jsonl),
  a folder of images with a .txt caption beside each, an .npz with `captions`, or a `datasets`
  save_to_disk folder with an image and a text column (data/captions.py);
- labelled images with template captions ("a handwritten 7", "the letter F"): builtin:digits,
  builtin:glyphs[:CHARS], an MNIST-layout folder, a folder of class sub-folders.

Captions are tokenized once (data.tokenizer: `words`, a word vocabulary built from the training
captions, or a tokenizer.json, e.g. a pretrained text encoder's) and padded with the end-of-text
token to data.text_len tokens; a caption longer than that is an error, never cut.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from genforge.data import captions as captioned
from genforge.data import scenes
from genforge.data.image_batches import ImageDataConfig, _resize, check_image_fields, open_images
from genforge.data.images import ImageSet
from genforge.data.tokenizer import Tokenizer, train_tokenizer
from genforge.errors import ConfigError, DataError


@dataclass
class CaptionDataConfig:
    source: str = "builtin:scenes"  # see the module docstring
    batch_size: int = 64
    image_size: int = 0  # 0: as stored (scenes: 32); else resized to image_size x image_size
    channels: int = 0  # 0: as stored; 1 (grey) or 3 (RGB)
    val_fraction: float = 0.05  # held out when the source has no validation split of its own
    limit: int = 0  # use only the first `limit` training images (0: all)
    num_scenes: int = 20000  # builtin:scenes: training scenes drawn
    tokenizer: str = "words"  # words (built from the training captions) | a tokenizer.json
    text_len: int = 0  # caption tokens per example (0: the longest training caption's)
    on_bad_image: Literal["error", "skip"] = "error"  # an unreadable or uncaptioned file in a folder

    def __post_init__(self):
        check_image_fields(self)
        if self.num_scenes < 1 or self.text_len < 0:
            raise ConfigError(f"data.num_scenes={self.num_scenes} must be >= 1 and data.text_len={self.text_len} >= 0")


@dataclass
class Captioned:
    """Images (N, C, H, W) uint8 with their captions, and each scene's spec where they are scenes."""
    images: np.ndarray
    captions: list[str]
    specs: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> Captioned:
        specs = None if self.specs is None else [self.specs[i] for i in idx]
        return Captioned(self.images[idx], [self.captions[i] for i in idx], specs)


def scene_vocab(source: str) -> str | None:
    """The object vocabulary of a builtin:scenes source, None for other sources."""
    if source != "builtin:scenes" and not source.startswith("builtin:scenes:"):
        return None
    vocab = source.partition("builtin:scenes")[2].lstrip(":") or "shapes"
    if vocab not in scenes.VOCABS:
        raise ConfigError(f"data.source={source!r}: unknown scene vocabulary; expected one of {', '.join(scenes.VOCABS)}")
    return vocab


def read_scenes(vocab: str, n: int, split: str, size: int, seed: int) -> Captioned:
    images, caps, specs = scenes.make_scenes(n, split, size or 32, seed, vocab)
    return Captioned(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), caps, specs)


def open_captioned(cfg: CaptionDataConfig) -> tuple[Captioned, Captioned]:
    """(train, val) captioned images of cfg.source, at cfg.image_size. Raises DataError/ConfigError."""
    vocab = scene_vocab(cfg.source)
    if vocab is not None:
        n_val = max(cfg.batch_size, int(cfg.num_scenes * cfg.val_fraction))
        train = read_scenes(vocab, cfg.num_scenes, "train", cfg.image_size, seed=0)
        val = read_scenes(vocab, n_val, "train", cfg.image_size, seed=1)
    else:
        train, val = _split(_read_user(cfg), cfg.val_fraction)
    if cfg.limit:
        train = train.subset(np.arange(min(cfg.limit, len(train))))
    return train, val


def _read_user(cfg: CaptionDataConfig) -> Captioned:
    path = Path(cfg.source)
    if not cfg.source.startswith("builtin:") and captioned.is_captioned(path):
        images, caps = captioned.read_captioned(path, cfg.image_size, cfg.channels, cfg.on_bad_image)
        return Captioned(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), caps)
    fields = {f.name for f in dataclasses.fields(ImageDataConfig)}
    image_cfg = ImageDataConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields} | {"val_fraction": 0.0})
    labelled, _ = open_images(image_cfg)  # val_fraction 0: all of it, split below
    if labelled.num_classes < 1 or (labelled.labels < 0).any():
        raise DataError(f"{cfg.source}: images with neither captions nor class labels; a text-to-image model needs "
                        "captions (metadata.jsonl, .txt beside each image, an .npz with 'captions', a save_to_disk "
                        "dataset) or class labels to caption")
    return Captioned(labelled.images, captioned.label_captions(labelled.labels, labelled.class_names))


def _split(data: Captioned, fraction: float) -> tuple[Captioned, Captioned]:
    order = np.random.default_rng(0).permutation(len(data))
    n_val = max(1, int(len(data) * fraction)) if fraction > 0 and len(data) > 1 else 0
    if not n_val:
        return data, data
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))


def caption_tokenizer(cfg: CaptionDataConfig, captions: list[str]) -> Tokenizer:
    """data.tokenizer: a word vocabulary of the training captions, or the tokenizer.json it names."""
    if cfg.tokenizer == "words":
        return train_tokenizer("words", captions)
    path = Path(cfg.tokenizer)
    if path.is_dir():
        path = path / "tokenizer.json"
    return Tokenizer.from_file(path)


def pad_id(tokenizer: Tokenizer) -> int:
    """The token captions are padded with: the end-of-text token, else a BERT tokenizer's [PAD]."""
    pad = tokenizer.eot_id if tokenizer.eot_id is not None else tokenizer.tok.token_to_id("[PAD]")
    if pad is None:
        raise DataError("the caption tokenizer has neither an end-of-text nor a [PAD] token to pad captions with")
    return pad


def encode_captions(tokenizer: Tokenizer, captions: list[str], text_len: int, where: str = "caption") -> np.ndarray:
    """Token ids (N, text_len) of captions, padded with the end-of-text token. DataError naming the
    caption when one has a word the tokenizer does not know, is empty, or is longer than text_len."""
    out = np.full((len(captions), text_len), pad_id(tokenizer), np.int64)
    for i, text in enumerate(captions):
        ids = encode_prompt(tokenizer, text, text_len, f"{where} {i}")
        out[i, :len(ids)] = ids
    return out


def encode_prompt(tokenizer: Tokenizer, text: str, text_len: int, where: str = "prompt") -> list[int]:
    """Token ids of one caption or prompt; DataError when it is empty, has an unknown word or is too long."""
    if not text.strip():
        raise DataError(f"{where}: empty text (a text-to-image model needs a description; use guidance for none)")
    try:
        ids = tokenizer.encode(text)
    except DataError as e:
        raise DataError(f"{where} {text[:60]!r}: {e}") from None
    if len(ids) > text_len:
        raise DataError(f"{where} {text[:60]!r}: {len(ids)} tokens, more than the model's {text_len}")
    return ids


def longest(tokenizer: Tokenizer, captions: list[str]) -> int:
    """Tokens in the longest caption (DataError naming the first caption the tokenizer cannot encode)."""
    n = 0
    for i, text in enumerate(captions):
        n = max(n, len(encode_prompt(tokenizer, text, 1 << 30, f"caption {i}")))
    return n


def as_image_set(data: Captioned, tokens: np.ndarray, size: int) -> ImageSet:
    """The ImageSet ImageBatches reads: images, and caption token ids (N, T) where class ids go."""
    return _resize(ImageSet(data.images, tokens, []), size)
