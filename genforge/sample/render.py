"""Hearing and seeing symbolic music offline: a score rendered to a waveform through
tinysoundfont with the General MIDI soundfont pretty-midi ships (TimGM6mb.sf2), and a piano-roll
PNG. WAV files are written by genforge/data/audio.py; the synthesis itself is data/synth.py (data
preparation renders scores too)."""
from __future__ import annotations

from pathlib import Path

from genforge.data.audio import write_audio
from genforge.data.synth import SAMPLE_RATE, TAIL_SECONDS, render, soundfont  # noqa: F401  (sample.render's names)
from genforge.errors import DataError


def write_wav(score, path: str | Path, sample_rate: int = SAMPLE_RATE) -> Path:
    wav = render(score, sample_rate)
    write_audio(path, wav, sample_rate)
    return Path(path)


def piano_roll(score, path: str | Path, cell: int = 4, max_width: int = 2400) -> Path:
    """A piano-roll PNG of a symusic Score: one row per pitch (high on top) between the lowest and
    highest note, one column per sixteenth note, bar lines in grey, each track in its own colour."""
    from PIL import Image, ImageDraw

    tpq = score.ticks_per_quarter
    step = max(1, tpq // 4)
    notes = [(t, n.time, n.duration, n.pitch) for t, track in enumerate(score.tracks) for n in track.notes]
    if not notes:
        raise DataError(f"{path}: the score holds no notes to draw")
    lo, hi = min(n[3] for n in notes) - 2, max(n[3] for n in notes) + 2
    cols = max(n[1] + n[2] for n in notes) // step + 1
    cw = max(1, min(cell, max_width // max(cols, 1)))
    img = Image.new("RGB", (cols * cw, (hi - lo + 1) * cell), "white")
    draw = ImageDraw.Draw(img)
    for p in range(lo, hi + 1):  # black keys shaded
        if p % 12 in (1, 3, 6, 8, 10):
            y = (hi - p) * cell
            draw.rectangle([0, y, img.width, y + cell - 1], fill=(244, 244, 248))
    num, den = (score.time_signatures[0].numerator, score.time_signatures[0].denominator) if len(score.time_signatures) else (4, 4)
    bar = max(1, num * tpq * 4 // den // step)
    for c in range(0, cols, bar):
        draw.line([c * cw, 0, c * cw, img.height], fill=(200, 200, 200))
    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
    for t, start, dur, pitch in notes:
        x0, y0 = start // step * cw, (hi - pitch) * cell
        x1 = max(x0 + 1, (start + dur) // step * cw - 1)
        draw.rectangle([x0, y0, x1, y0 + cell - 1], fill=colours[t % len(colours)])
    img.save(path)
    return Path(path)
