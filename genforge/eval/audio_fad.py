"""A Fréchet audio distance (Kilgour et al. 2019, "Fréchet Audio Distance: A Reference-Free Metric
for Evaluating Music Enhancement Algorithms") on a genforge-trained audio judge instead of VGGish,
whose weights need a download.

The judge: models/classifier.py's small CNN over a log-mel picture of a window of WINDOW samples
(1.008 s) at 16 kHz: 64 Slaney mel bands of a 2048-point STFT, hop 256, 64 frames, natural log
mapped from [ln 1e-5, ln 1e-5 + 16] to [0, 1] and stored as uint8. train/audio_judge.py trains it
on first use (a few CPU minutes) on music21's chorales and O'Neill's folk tunes rendered by the
General MIDI soundfont, with free labels: the pitch classes sounding (from the score), the program
played and the style (objectives/audio_judge.py); it is cached under $GENFORGE_CACHE (default
~/.cache/genforge)/judges/JUDGE_VERSION with its accuracies on held-out pieces (judge.json).

The distance: each clip is cut into whole, non-overlapping windows; a window's embedding is the
judge's penultimate features (pooled over the picture by the CNN); the Fréchet distance between
two sets of embeddings is image_metrics.fid's (the same code as FID). `fad` compares the generated
windows with one half of the real held-out windows, `fad_halves` that half with the other (the
real data's own floor, as FID reports are read), the halves split by clip (piece), each side the
same number of windows (`fad_windows`), since the estimate is biased by the count.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genforge.config import cache_root
from genforge.data.audio import resample_audio
from genforge.errors import CheckpointError, DataError
from genforge.nn.mel import LogMel, MelConfig

JUDGE_VERSION = "audio-judge-v1"  # the cache key of the trained judge; bump when the input or training changes
SAMPLE_RATE = 16000
MEL = MelConfig(sample_rate=SAMPLE_RATE, n_fft=2048, win_length=2048, hop_length=256, n_mels=64, fmin=30.0,
                fmax=8000.0)
FRAMES = 64
WINDOW = MEL.num_samples(FRAMES)  # 16128 samples: 1.008 s, 64 centred frames
LOG_FLOOR, LOG_SPAN = math.log(MEL.log_clamp), 16.0  # natural-log mel range mapped to [0, 1]
VALIDATION_FILE = "judge.json"


def windows(wav: np.ndarray, rate: int) -> np.ndarray:
    """(N, WINDOW) float32: the whole, non-overlapping windows of a mono clip, resampled to 16 kHz."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if rate != SAMPLE_RATE:
        wav = resample_audio(wav, rate, SAMPLE_RATE)
    n = len(wav) // WINDOW
    return wav[:n * WINDOW].reshape(n, WINDOW)


@torch.no_grad()
def mel_pictures(wins: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N, 1, MEL.n_mels, FRAMES) uint8: the judge's input for windows (N, WINDOW)."""
    logmel = LogMel(MEL)
    out = np.zeros((len(wins), 1, MEL.n_mels, FRAMES), dtype=np.uint8)
    for i in range(0, len(wins), batch):
        x = (logmel(torch.from_numpy(np.ascontiguousarray(wins[i:i + batch]))) - LOG_FLOOR) / LOG_SPAN
        out[i:i + batch, 0] = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return out


def to_float(pictures: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pictures).float().div_(255)


@dataclass
class AudioJudge:
    """A trained judge: its classifier, what its heads name, and its accuracies on held-out pieces
    (chroma_f1, program_acc, style_acc, windows; empty when unknown)."""
    classifier: nn.Module
    programs: list[str]
    styles: list[str]
    validation: dict = field(default_factory=dict)


def judge_dir() -> Path:
    """Where the trained judge is cached: $GENFORGE_CACHE (or ~/.cache/genforge)/judges/JUDGE_VERSION."""
    return cache_root() / "judges" / JUDGE_VERSION


def load_audio_judge(ckpt: str | Path | None = None, device: str | torch.device = "cpu") -> AudioJudge:
    """The judge of a checkpoint train/audio_judge.py wrote (by default the cached one). CheckpointError
    when there is none, or when the checkpoint is not an audio judge."""
    from genforge import checkpoint as ckpt_io

    path = Path(ckpt) if ckpt is not None else judge_dir()
    if ckpt is None and not path.exists():
        raise CheckpointError(f"{path}: no trained audio judge; genforge.train.audio_judge.audio_judge() trains one")
    loaded = ckpt_io.load(path, device)
    meta = (loaded.config.get("data") or {}).get("audio_judge")
    if loaded.family.kind != "label" or not meta or meta.get("mel") != MEL.to_dict():
        raise CheckpointError(f"{loaded.path}: not an audio judge (a classifier of {MEL.n_mels}x{FRAMES} log-mel "
                              f"windows at {SAMPLE_RATE} Hz, {JUDGE_VERSION})")
    found = loaded.path / VALIDATION_FILE
    validation = json.loads(found.read_text()) if found.is_file() else {}
    return AudioJudge(loaded.model.eval(), meta["programs"], meta["styles"], validation)


def halves(clips: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The clips in two halves by a fixed shuffle (one clip: its first and second half)."""
    if len(clips) == 1:
        mid = len(clips[0]) // 2
        return [clips[0][:mid]], [clips[0][mid:]]
    order = np.random.default_rng(0).permutation(len(clips))
    half = len(clips) // 2
    return [clips[i] for i in order[:half]], [clips[i] for i in order[half:]]


def frechet(real: np.ndarray, fake: np.ndarray, judge: AudioJudge) -> float:
    """The Fréchet distance between the judge's features of two sets of mel pictures (N, 1, 64, 64) uint8."""
    from genforge.eval.image_metrics import fid

    return fid(to_float(real), to_float(fake), judge.classifier)


def frechet_audio_distance(real: list[np.ndarray], fake: list[np.ndarray], rate: int, judge: AudioJudge,
                           max_windows: int | None = None, seed: int = 0) -> dict:
    """{"fad", "fad_halves", "fad_windows", and the judge's held-out accuracies as judge_*} of generated
    clips `fake` against real clips (mono, at `rate`): see the module docstring. Each side keeps
    fad_windows windows drawn at random (seed): the fewest of the generated and of either real half,
    at most max_windows. DataError when fewer than 2 windows are left."""
    first, second = halves(real)
    sides = [[windows(c, rate) for c in side] for side in (first, second, fake)]  # per clip (K, WINDOW)
    counts = [sum(len(w) for w in side) for side in sides]
    n = min(counts) if max_windows is None else min(*counts, max_windows)
    if n < 2:
        found = ", ".join(f"{w} {c}" for w, c in zip(("real half 1", "real half 2", "generated"), counts))
        raise DataError(f"fad: needs at least 2 windows of {WINDOW / SAMPLE_RATE:.3f} s on each side ({found})")
    rng = np.random.default_rng(seed)
    a, b, g = (mel_pictures(_gather(side, np.sort(rng.choice(c, n, replace=False)))) for side, c in zip(sides, counts))
    out = {"fad": frechet(a, g, judge), "fad_halves": frechet(a, b, judge), "fad_windows": n}
    out.update({f"judge_{k}": v for k, v in judge.validation.items()})
    return out


def _gather(side: list[np.ndarray], picked: np.ndarray) -> np.ndarray:
    """(len(picked), WINDOW): the windows at positions `picked` of the clips' windows laid end to end."""
    starts = np.cumsum([0] + [len(w) for w in side])
    clip = np.searchsorted(starts, picked, side="right") - 1
    return np.stack([side[c][i - starts[c]] for c, i in zip(clip, picked)])
