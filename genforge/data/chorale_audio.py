"""`builtin:chorales_audio`: music21's Bach chorales (data/music_sources.py) played offline by
tinysoundfont with pretty-midi's General MIDI soundfont (data/synth.py) at the model's sample rate,
mono: a waveform corpus that needs no download.

Pieces are taken in corpus order (bwv1.6, bwv10.7, ...), once each (the corpus has three chorales in
two formats), a malformed one (bwv277's repeats) skipped with its name printed; each is held out by
a hash of its name without the format (as files are by their path), so a piece never changes sides
when more are read. Rendered pieces are cached as 16-bit samples under
$GENFORGE_CACHE/chorales_audio (default ~/.cache/genforge): rendering takes ~0.1 s a piece, music21's
first parse ~0.3 s (itself cached as JSON), and the cached 16-bit copy is what every run reads, the
first included, so runs see the same samples.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from genforge.config import cache_root
from genforge.errors import DataError

SOURCE = "builtin:chorales_audio"
CACHE_VERSION = "1"


def cache_dir(sample_rate: int) -> Path:
    return cache_root() / "chorales_audio" / f"{CACHE_VERSION}-{sample_rate}"


def held_out(name: str, fraction: float) -> bool:
    """Whether the piece `name` (bach/bwv1.6.mxl) is in the held-out split: a crc32 of its name
    without the format suffix (bach/bwv1.6), as data/audio_batches.py hashes paths."""
    key = re.sub(r"\.(mxl|xml|musicxml|krn)(?=#|$)", "", name)
    return zlib.crc32(key.encode()) % 10_000 < fraction * 10_000


def pieces(sample_rate: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, mono float32 waveform at sample_rate) of each readable chorale, in corpus order."""
    from genforge.data.music_sources import corpus_files, read_file

    seen = set()
    for file in corpus_files(("bach",)):
        if file.stem in seen:
            continue
        cached = cache_dir(sample_rate) / (re.sub(r"[^\w.-]", "_", file.name) + ".npz")
        if not cached.is_file():
            try:
                read = read_file(file, "chorale")
            except DataError as e:
                print(f"genforge: {SOURCE}: skipped {e}", file=sys.stderr)
                continue
            for bad in read.bad:
                print(f"genforge: {SOURCE}: skipped {bad}", file=sys.stderr)
            found = read.pieces
            _write(cached, [p.name for p in found], [_render(p, sample_rate) for p in found])
        seen.add(file.stem)
        with np.load(cached) as data:
            for i, name in enumerate(data["names"].tolist()):
                yield name, data[f"wav{i}"].astype(np.float32) / 32767.0


def _render(piece, sample_rate: int) -> np.ndarray:
    from genforge.data.music import to_score
    from genforge.data.synth import render

    wav = render(to_score(piece), sample_rate)
    return (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def _write(file: Path, names: list[str], wavs: list[np.ndarray]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, names=np.array(names), **{f"wav{i}": w for i, w in enumerate(wavs)})
    os.replace(tmp, file)  # two runs filling the cache write the same bytes; the last one wins


def chorale_clips(sample_rate: int, limit: int, val_fraction: float) -> tuple[list[np.ndarray], list[str], list[bool]]:
    """(waveforms, names, held out?) of the first `limit` chorales (0: all)."""
    clips, names = [], []
    for name, wav in pieces(sample_rate):
        clips.append(wav)
        names.append(name)
        if limit and len(clips) == limit:
            break
    return clips, names, [held_out(n, val_fraction) for n in names]


def chorale_split(sample_rate: int, train: int, val: int, val_fraction: float = 0.2
                  ) -> tuple[list[np.ndarray], list[str], list[np.ndarray], list[str]]:
    """(train waveforms, names, held-out waveforms, names): the first `train` training and first
    `val` held-out chorales in corpus order (a benchmark's fixed counts, e.g. 40 and 10)."""
    out: tuple[list, list, list, list] = ([], [], [], [])
    for name, wav in pieces(sample_rate):
        side = 2 if held_out(name, val_fraction) else 0
        if len(out[side]) < (val if side else train):
            out[side].append(wav)
            out[side + 1].append(name)
        if len(out[0]) == train and len(out[2]) == val:
            return out
    raise DataError(f"{SOURCE}: the corpus holds only {len(out[0])} training and {len(out[2])} held-out chorales "
                    f"at val_fraction={val_fraction} (asked for {train} and {val})")
