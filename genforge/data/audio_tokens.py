"""Codec token shards: the `data:` section of the audio_lm family (AudioTokenDataConfig) and the
writer of its token directory, a prepared directory in the layout of data/shards.py, so the one
token loop (TokenBatches, exact resume included) trains on it.

The runner (train/run_audio_lm.py) encodes each clip of the audio source with the frozen codec
once; the flattened tokens of each clip, each clip after an EOT, go to the train or val split
(held out as data/audio_batches.py holds clips out). The directory is a cache keyed by what made
it (the codec's weights, the source, the clip limit, the split): a second run with the same key
opens it, and a directory made by another key is rebuilt, never trained on by mistake.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from genforge.config import cache_root
from genforge.data.audio_batches import AudioDataConfig
from genforge.data.shards import FORMAT, ShardWriter, token_dtype, write_manifest
from genforge.errors import ConfigError

SHARD_TOKENS = 1 << 24


@dataclass
class AudioTokenDataConfig:
    source: str = "builtin:chorales_audio"  # as the codec's data.source: a builtin, a folder of audio files, one file
    path: str = ""  # the token directory (a cache); "": $GENFORGE_CACHE (or ~/.cache/genforge)/audio_tokens/KEY
    batch_size: int = 16
    val_fraction: float = 0.2  # held out by a hash of the piece (or file) name
    clips: int = 0  # at most this many pieces or files (0: all)
    on_bad_clip: Literal["error", "skip"] = "error"  # an unreadable or silent file
    verify: bool = False  # hash every shard against the manifest when opening

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        if self.clips < 0:
            raise ConfigError(f"data.clips={self.clips} must be >= 0 (0: all)")
        if self.on_bad_clip not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_clip={self.on_bad_clip!r}: expected error or skip")

    def audio(self) -> AudioDataConfig:
        """The waveform data section that reads this source's clips."""
        return AudioDataConfig(source=self.source, val_fraction=self.val_fraction, clips=self.clips,
                               on_bad_clip=self.on_bad_clip)


def cache_key(codec_sha256: str, cfg: AudioTokenDataConfig, codec_config: dict) -> str:
    """The hash of what the token directory is made from."""
    what = {"codec": codec_sha256, "codec_config": codec_config, "source": cfg.source, "clips": cfg.clips,
            "val_fraction": cfg.val_fraction, "on_bad_clip": cfg.on_bad_clip, "format": FORMAT}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def token_dir(cfg: AudioTokenDataConfig, key: str) -> Path:
    if cfg.path:
        return Path(cfg.path)
    return cache_root() / "audio_tokens" / key


def is_current(path: Path, key: str) -> bool:
    """Whether path holds a token directory made with this key."""
    try:
        return json.loads((path / "manifest.json").read_text()).get("audio_tokens", {}).get("key") == key
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def write_tokens(out: Path, splits: dict[str, list[tuple[str, np.ndarray]]], vocab_size: int, eot: int,
                 meta: dict) -> None:
    """Write the (name, tokens) clips of each split to out as token shards (each clip after an EOT)
    with a manifest carrying meta (the key, the codec settings, the clip names); the directory is
    built beside out and moved into place whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        dtype = token_dtype(vocab_size)
        shards = {}
        for split, clips in splits.items():
            writer = ShardWriter(tmp, split, dtype, SHARD_TOKENS)
            for name, tokens in clips:
                writer.write(np.concatenate([[eot], tokens]).astype(dtype), source=name)
            shards[split] = writer.finish()
        write_manifest(tmp, {"format": FORMAT, "vocab_size": vocab_size, "dtype": dtype.name, "eot_id": eot,
                             "tokenizer": None, "tokenizer_kind": "audio_codec", "splits": shards,
                             "audio_tokens": meta})
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
