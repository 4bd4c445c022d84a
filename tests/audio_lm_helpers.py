"""A tiny codec checkpoint and a folder of tones for the audio_lm tests: 4 kHz audio, hop 20 (200
frames a second), 2 levels of 16 codes, so a second is 400 tokens."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from genforge.checkpoint import save_checkpoint
from genforge.data.audio import write_audio
from genforge.models.codec import Codec, CodecConfig
from genforge.run_config import load_config

RATE = 4000


def tiny_codec(path: Path) -> Path:
    """A randomly initialised codec saved as a checkpoint (its codes are a fixed function of the audio)."""
    torch.manual_seed(0)
    cfg = CodecConfig(sample_rate=RATE, channels=4, strides=[4, 5], dilations=[1], code_dim=8, n_q=2,
                      codebook_size=16, context=2, head_hidden=16)
    return save_checkpoint(path, {"family": "codec", "model": dataclasses.asdict(cfg)}, {"model": Codec(cfg)})


def tone(seconds: float, freq: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tones(folder: Path, n: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_audio(folder / f"tone{i}.wav", tone(1.0, 200 + 50 * i), RATE)
    return folder


def audio_lm_config(codec: Path, source: Path, out: Path, *extra: str, max_iters: int = 20):
    return load_config(None, [
        "family=audio_lm", f"model.codec={codec}", f"data.source={source}", f"data.path={out.parent / 'tokens'}",
        "data.batch_size=4", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=64",
        f"train.max_iters={max_iters}", "train.warmup_iters=5", "train.lr=3e-3", "train.eval_interval=10",
        "train.eval_iters=1", "train.log_interval=5", "train.device=cpu", "train.dtype=float32",
        f"train.out_dir={out}", *extra])
