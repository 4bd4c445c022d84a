"""`genforge vocode`: a vocoder checkpoint turns log-mel frames (a .npy file, e.g. an acoustic
model's output) or a recording (reconstructed through the vocoder's own mel features) into a
waveform file."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from genforge import checkpoint as ckpt_io
from genforge.data.audio import read_audio, write_audio
from genforge.errors import CheckpointError, DataError


def load_vocoder(ckpt: str | Path, device: str | torch.device = "cpu"):
    """The generator of a vocoder checkpoint (eval mode): .vocode(mel) -> waveform, .mel_config
    (its sample rate and mel settings). CheckpointError for a checkpoint of another kind."""
    path, config, fam = ckpt_io.peek(ckpt)
    if fam.kind != "vocode":
        raise CheckpointError(f"{path}: a {config.get('family')} checkpoint; `genforge vocode` needs a vocoder "
                              "(train one: genforge train vocoder/espeak)")
    return ckpt_io.load(path, device).model


def read_mel(file: str | Path, n_mels: int) -> torch.Tensor:
    """A log-mel .npy file as (n_mels, T) float32: stored (n_mels, T), (1, n_mels, T) or (T, n_mels).
    DataError naming the file for another shape or a file that is not a NumPy array."""
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: no such mel file")
    try:
        mel = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{file}: not a NumPy .npy array ({str(e).splitlines()[0]})") from None
    mel = np.squeeze(mel, axis=0) if mel.ndim == 3 and mel.shape[0] == 1 else mel
    if mel.ndim == 2 and mel.shape[0] != n_mels and mel.shape[1] == n_mels:
        mel = mel.T  # frames first, as an acoustic model writes them
    if mel.ndim != 2 or mel.shape[0] != n_mels:
        raise DataError(f"{file}: mel of shape {mel.shape}; this vocoder reads (n_mels={n_mels}, frames)")
    return torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))


def vocode_file(ckpt: str | Path, out: str | Path, mel: str | Path | None = None, wav: str | Path | None = None,
                device: str = "cpu") -> dict:
    """Write the vocoder's waveform of `mel` (a .npy file) or of `wav` (reconstruction) to `out`
    (.wav or .flac); returns {"path", "seconds", "sample_rate", "rtf"} (generation seconds per
    audio second)."""
    if (mel is None) == (wav is None):
        raise DataError("vocode: give one of --mel FILE.npy or --wav FILE")
    if Path(out).suffix.lower() not in (".wav", ".flac"):
        raise DataError(f"--out {out}: audio is written as .wav or .flac")
    g = load_vocoder(ckpt, device)
    cfg = g.mel_config
    if mel is not None:
        frames = read_mel(mel, cfg.n_mels)
    else:
        audio, _ = read_audio(wav, cfg.sample_rate)  # another rate is resampled, with a warning
        with torch.no_grad():
            frames = g.feats(torch.from_numpy(audio))
    t0 = time.perf_counter()
    samples = g.vocode(frames).cpu().numpy()
    spent = time.perf_counter() - t0
    write_audio(out, samples, cfg.sample_rate)
    seconds = len(samples) / cfg.sample_rate
    return {"path": Path(out), "seconds": seconds, "sample_rate": cfg.sample_rate, "rtf": spent / max(seconds, 1e-9)}
