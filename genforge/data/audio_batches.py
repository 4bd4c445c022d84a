"""Waveform data for training: the `data:` section of waveform families (AudioDataConfig), opening a
source into train/val clips at the model's sample rate, and AudioBatches, the batch iterator the
loop reads (exact resume, like TokenBatches and ImageBatches).

Sources: `builtin:espeak`, the embedded teacher (espeak-ng speaking sentences of the embedded
Shakespeare in several voices: data/espeak.py, data/speech.py), `builtin:chorales_audio` (music21's
Bach chorales played by a General MIDI soundfont: data/chorale_audio.py), or a folder of audio files (WAV,
FLAC, OGG, ...; searched recursively) or one file. Held-out clips are chosen by a hash of the
sentence (the teacher: the same sentences the TTS holds out) or of the file's path, not by position.

Batch n draws B segments of `segment` samples from a generator seeded by (seed, n): a clip with
probability proportional to its length (every second of audio equally likely), then an offset in
it; the data cursor is one integer. A clip shorter than a segment is padded with silence.
"""
from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from genforge.data.audio import read_audio, resample_audio
from genforge.errors import ConfigError, DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au")
SILENT_PEAK = 1e-3  # a clip whose loudest sample is below this (-60 dBFS) holds nothing to learn
DEFAULT_VOICES = ["en-us", "en", "en-us+f3", "en+m3"]  # as data/espeak.py's DEFAULT_VOICES


@dataclass
class AudioDataConfig:
    source: str = "builtin:espeak"  # builtin:espeak | builtin:chorales_audio | a folder of audio files (recursive) | one file
    segment: int = 8192  # samples per training segment (a multiple of the model's hop)
    batch_size: int = 16
    val_fraction: float = 0.05  # held out by a hash of the sentence or path
    val_seconds: float = 4.0  # each held-out clip is evaluated on at most its first this many seconds
    clips: int = 400  # builtin:espeak: sentences spoken (each in one voice, in turn); chorales, files: at most this many (0: all)
    voices: list[str] = field(default_factory=lambda: list(DEFAULT_VOICES))  # builtin:espeak: the voices
    on_bad_clip: Literal["error", "skip"] = "error"  # an unreadable or silent file

    def __post_init__(self):
        if self.batch_size < 1 or self.segment < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} and data.segment={self.segment} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")
        if self.val_seconds <= 0 or self.clips < 0:
            raise ConfigError(f"data.val_seconds={self.val_seconds} must be > 0 and data.clips={self.clips} >= 0")
        if not self.voices:
            raise ConfigError("data.voices: name at least one espeak voice (e.g. en-us)")
        if self.on_bad_clip not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_clip={self.on_bad_clip!r}: expected error or skip")


@dataclass
class AudioSet:
    """Mono float32 clips at one sample rate, with a name each (the file, or the sentence)."""
    clips: list[np.ndarray]
    names: list[str]
    sample_rate: int

    def __len__(self) -> int:
        return len(self.clips)

    def seconds(self) -> float:
        return sum(len(c) for c in self.clips) / self.sample_rate


def open_audio(cfg: AudioDataConfig, sample_rate: int) -> tuple[AudioSet, AudioSet]:
    """(train, val) clips of cfg.source at sample_rate. DataError for a missing or empty source, a
    silent or unreadable file (unless data.on_bad_clip=skip), or no training clip left."""
    if cfg.source == "builtin:espeak":
        clips, names, held = _espeak_clips(cfg, sample_rate)
    elif cfg.source == "builtin:chorales_audio":  # music21's chorales played by a GM soundfont
        from genforge.data.chorale_audio import chorale_clips

        clips, names, held = chorale_clips(sample_rate, cfg.clips, cfg.val_fraction)
    elif cfg.source.startswith("builtin:"):
        raise ConfigError(f"data.source={cfg.source!r}: unknown builtin; waveform data has builtin:espeak and "
                          "builtin:chorales_audio")
    else:
        clips, names = _file_clips(cfg, sample_rate)
        held = [_hashed(n, cfg.val_fraction) for n in names]
    train = [i for i, h in enumerate(held) if not h]
    val = [i for i, h in enumerate(held) if h]
    if not train:
        raise DataError(f"{cfg.source}: every clip is held out (data.val_fraction={cfg.val_fraction}); add clips")
    if not val:  # a tiny source: evaluate on the last training clip rather than on nothing
        val = train[-1:]
    pick = lambda idx: AudioSet([clips[i] for i in idx], [names[i] for i in idx], sample_rate)  # noqa: E731
    return pick(train), pick(val)


def _hashed(key: str, fraction: float) -> bool:
    return zlib.crc32(key.encode()) % 10_000 < fraction * 10_000


def check_clip(wav: np.ndarray, where: str) -> np.ndarray:
    """wav, or DataError naming `where` for an empty, non-finite or silent clip."""
    if wav.size == 0:
        raise DataError(f"{where}: the clip holds no samples")
    if not np.isfinite(wav).all():
        raise DataError(f"{where}: the clip holds NaN or infinite samples")
    peak = float(np.abs(wav).max())
    if peak < SILENT_PEAK:
        raise DataError(f"{where}: silent clip (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)")
    return wav


def _file_clips(cfg: AudioDataConfig, sample_rate: int) -> tuple[list[np.ndarray], list[str]]:
    root = Path(cfg.source)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DataError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in the folder")
    else:
        raise DataError(f"{root}: no such audio file or folder (data.source)")
    if cfg.clips:
        files = files[:cfg.clips]
    clips, names, resampled = [], [], set()
    for file in files:
        try:
            wav, rate = read_audio(file)
            if rate != sample_rate:
                resampled.add(rate)
                wav = resample_audio(wav, rate, sample_rate)
            clips.append(check_clip(wav, str(file)))
        except DataError as e:
            if cfg.on_bad_clip == "error":
                raise DataError(f"{e} (data.on_bad_clip=skip leaves such files out)") from None
            print(f"genforge: skipped {e}", file=sys.stderr)
            continue
        names.append(str(file.relative_to(root)) if root.is_dir() else file.name)
    if resampled:
        print(f"genforge: {root}: resampled audio at {sorted(resampled)} Hz to the model's {sample_rate} Hz", file=sys.stderr)
    if not clips:
        raise DataError(f"{root}: no usable audio clip")
    return clips, names


def _espeak_clips(cfg: AudioDataConfig, sample_rate: int) -> tuple[list[np.ndarray], list[str], list[bool]]:
    """The teacher speaking the first data.clips sentences of the plays, sentence i in voice i mod
    len(voices); held out as data/speech.py holds the TTS's sentences out."""
    from genforge.data import espeak
    from genforge.data.speech import held_out, shakespeare_sentences

    for voice in cfg.voices:
        espeak.engine().set_voice(voice)  # an unknown voice is named before any synthesis
    sentences = shakespeare_sentences()[:cfg.clips or None]
    clips = []
    for i, text in enumerate(sentences):
        said = espeak.synthesize(text, cfg.voices[i % len(cfg.voices)])
        wav = said.audio if said.sample_rate == sample_rate else resample_audio(said.audio, said.sample_rate, sample_rate)
        clips.append(check_clip(np.ascontiguousarray(wav, dtype=np.float32), f"espeak: {text!r}"))
    return clips, sentences, [held_out(t, cfg.val_fraction) for t in sentences]


class AudioBatches:
    """(segments (B, segment) float32, the batch's step number (0-d int64)) batches; the step lets
    an objective follow a schedule (a vocoder's discriminators starting late) from the batch alone."""

    def __init__(self, train: AudioSet, val: AudioSet, batch_size: int, segment: int, hop: int, seed: int = 0,
                 device: str | torch.device = "cpu", val_seconds: float = 4.0):
        if segment % hop:
            raise ConfigError(f"data.segment={segment} must be a multiple of the model's hop ({hop} samples)")
        self.train, self.val, self.batch_size, self.segment, self.hop = train, val, batch_size, segment, hop
        self.seed, self.device, self.val_seconds = seed, torch.device(device), val_seconds
        self.lengths = torch.tensor([len(c) for c in train.clips], dtype=torch.float64)
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        which = torch.multinomial(self.lengths, self.batch_size, replacement=True, generator=gen)
        where = torch.rand(self.batch_size, generator=gen, dtype=torch.float64)
        out = np.zeros((self.batch_size, self.segment), dtype=np.float32)
        for row, (i, u) in enumerate(zip(which.tolist(), where.tolist())):
            clip = self.train.clips[i]
            start = int(u * max(len(clip) - self.segment, 0) + 0.5)
            piece = clip[start:start + self.segment]
            out[row, :len(piece)] = piece
        step = torch.tensor(self.step, dtype=torch.int64)
        self.step += 1
        return torch.from_numpy(out).to(self.device), step.to(self.device)

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def eval_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first n held-out clips, one a batch, each cut to at most data.val_seconds and to a
        multiple of the hop (the vocoder gives those back whole); the same every time."""
        limit = int(self.val_seconds * self.val.sample_rate) // self.hop * self.hop
        out = []
        for clip in self.val.clips[:n]:
            length = min(len(clip), limit) // self.hop * self.hop
            if length:
                wav = torch.from_numpy(np.ascontiguousarray(clip[:length]))[None]
                out.append((wav.to(self.device), torch.tensor(1 << 40, device=self.device)))
        return out
