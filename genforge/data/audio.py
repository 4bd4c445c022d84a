"""Audio files: read any format libsndfile knows (WAV, FLAC, OGG, ...) as mono float32 at the
rate a model wants, and write or encode waveforms for files and HTTP answers.

Shared by music and speech. Resampling is librosa's (soxr); a file at another rate is resampled
with a warning, or refused when the caller asks for `resample=False`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from genforge.errors import DataError

# formats `encode_audio` writes: "pcm" is raw 16-bit little-endian samples, as OpenAI's speech API
FORMATS = ("wav", "flac", "pcm")


def read_audio(path: str | Path, sample_rate: int | None = None, *, resample: bool = True) -> tuple[np.ndarray, int]:
    """(samples (N,) float32 in [-1, 1], rate). Channels are averaged to mono. With `sample_rate`,
    a file at another rate is resampled (with a warning) or, with resample=False, refused."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors name the format problem; keep the file in front
        raise DataError(f"{path}: unreadable audio ({str(e).splitlines()[0]})") from None
    wav = wav.mean(axis=1)
    if wav.size == 0:
        raise DataError(f"{path}: the audio file holds no samples")
    if sample_rate is not None and rate != sample_rate:
        if not resample:
            raise DataError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
        warnings.warn(f"{path}: resampling {rate} Hz to {sample_rate} Hz", stacklevel=2)
        wav, rate = resample_audio(wav, rate, sample_rate), sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), int(rate)


def resample_audio(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    import librosa

    return librosa.resample(np.asarray(wav, dtype=np.float32), orig_sr=rate, target_sr=target).astype(np.float32)


def _pcm16(wav) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if not np.isfinite(wav).all():
        raise ValueError("audio: the waveform holds NaN or infinite samples")
    return (np.clip(wav, -1.0, 1.0) * 32767.0).round().astype("<i2")


def encode_audio(wav, sample_rate: int, fmt: str = "wav") -> bytes:
    """The bytes of `wav` (float samples in [-1, 1], clipped) as a 16-bit `fmt` file ("wav",
    "flac") or raw little-endian PCM ("pcm")."""
    if fmt not in FORMATS:
        raise ValueError(f"audio format {fmt!r}: expected one of {', '.join(FORMATS)}")
    pcm = _pcm16(wav)
    if fmt == "pcm":
        return pcm.tobytes()
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, pcm, int(sample_rate), format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def write_audio(path: str | Path, wav, sample_rate: int) -> Path:
    """Write `wav` to `path`; the suffix (.wav, .flac) picks the format. Returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("wav", "flac"):
        raise ValueError(f"{path}: audio files are written as .wav or .flac")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_audio(wav, sample_rate, fmt))
    return path
