"""Small MIDI files for the music tests: short pieces on REMI's grid, written with symusic."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# C major, then A minor, then G major: quarter and eighth notes over a held bass, 4/4
TUNES = {
    "c_major": ([60, 62, 64, 65, 67, 69, 71, 72], 48),
    "a_minor": ([57, 59, 60, 62, 64, 65, 68, 69], 45),
    "g_major": ([67, 69, 71, 72, 74, 76, 78, 79], 43),
}


def tune_notes(name: str, bars: int = 2) -> np.ndarray:
    """(N, 4) notes: a rising scale of quarters and eighths over one bass note per bar."""
    scale, bass = TUNES[name]
    rows, t = [], 0
    for bar in range(bars):
        rows.append((bar * 1920, 1920, bass, 64))
        for i, pitch in enumerate(scale[:5]):  # 480 + 480 + 240 + 240 + 480 = one bar
            dur = 480 if i < 2 else 240 if i < 4 else 480
            rows.append((t, dur, pitch + (bar % 2) * 2, 80))
            t += dur
        t = (bar + 1) * 1920
    notes = np.array(rows, dtype=np.int64)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def write_midi(path: Path, notes: np.ndarray, tempo: float = 120.0, meter: tuple[int, int] = (4, 4), program: int = 0) -> Path:
    import symusic

    score = symusic.Score(480)
    track = symusic.Track("t", program, False)
    for start, dur, pitch, vel in notes.tolist():
        track.notes.append(symusic.Note(start, dur, pitch, vel))
    score.tracks.append(track)
    score.time_signatures.append(symusic.TimeSignature(0, *meter))
    score.tempos.append(symusic.Tempo(0, tempo))
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def write_folder(root: Path, bars: int = 2) -> Path:
    """root/NAME.mid for each tune; root."""
    for name in TUNES:
        write_midi(root / f"{name}.mid", tune_notes(name, bars))
    return root
