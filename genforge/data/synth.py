"""Rendering symbolic scores to waveforms offline: tinysoundfont playing a symusic Score with the
General MIDI soundfont pretty-midi ships (TimGM6mb.sf2). Data preparation (the rendered chorales
a codec trains on, data/chorale_audio.py) and the music sampler (sample/render.py) both use it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genforge.errors import DataError

SAMPLE_RATE = 22050
TAIL_SECONDS = 1.0  # the release after the last note-off


def soundfont() -> Path:
    """pretty-midi's General MIDI soundfont."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise DataError(f"{path}: pretty-midi's soundfont is missing (reinstall pretty-midi)")
    return path


def render(score, sample_rate: int = SAMPLE_RATE, gain: float = -3.0) -> np.ndarray:
    """The mono float32 waveform of a symusic Score: its notes played by each track's General
    MIDI program (tracks on channels 0..15, drums on 9), peak-limited to 0.99."""
    import tinysoundfont

    seconds = score.to("second")
    synth = tinysoundfont.Synth(gain=gain, samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont()))
    events = []  # (sample, 0 off / 1 on, channel, pitch, velocity): offs first at equal times
    melodic = [c for c in range(16) if c != 9]
    for i, track in enumerate(seconds.tracks):
        channel = 9 if track.is_drum else melodic[i % len(melodic)]
        synth.program_select(channel, sfid, 128 if track.is_drum else 0, 0 if track.is_drum else int(track.program),
                             is_drums=track.is_drum)
        for n in track.notes:
            events.append((round(n.time * sample_rate), 1, channel, n.pitch, n.velocity))
            events.append((round((n.time + n.duration) * sample_rate), 0, channel, n.pitch, 0))
    events.sort()
    end = (events[-1][0] if events else 0) + round(TAIL_SECONDS * sample_rate)
    out = np.zeros(end, dtype=np.float32)
    at = 0
    for when, on, channel, pitch, velocity in events:
        if when > at:
            out[at:when] = _mono(synth.generate(when - at))
            at = when
        if on:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    if end > at:
        out[at:end] = _mono(synth.generate(end - at))
    peak = float(np.abs(out).max()) if out.size else 0.0
    return out * (0.99 / peak) if peak > 0.99 else out


def _mono(buffer) -> np.ndarray:
    return np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2).mean(axis=1)
