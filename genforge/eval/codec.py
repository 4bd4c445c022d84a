"""Offline evaluation of an audio codec on the held-out clips of the data it trained on (or on
another audio source): reconstruction (log-mel L1, SNR), lossless bits per 8-bit mu-law sample
(the per-sample head given the codes, plus the codes' bound log2(codebook_size) * n_q / hop until a
language model over the codes measures them), codebook use per level, and speed: the real-time
factor of the parallel decoding and of exact sampling from the per-sample head (seconds of
computing per second of audio, at the caller's torch thread count).

METRICS names the groups `genforge eval --metrics` selects: reconstruction (mel_l1, snr_db), bits
(head_bits, code_bits, bits_per_sample), codes (used_i, perplexity_i per level), rtf (decode_rtf,
sample_rtf)."""
from __future__ import annotations

import dataclasses

import torch

from genforge.config import from_dict
from genforge.data.audio_batches import AudioDataConfig, open_audio
from genforge.errors import ConfigError, DataError
from genforge.eval.audio_metrics import real_time_factor
from genforge.objectives.codec import measure

METRICS = ("reconstruction", "bits", "codes", "rtf")
_KEYS = {"reconstruction": ("mel_l1", "snr_db"), "bits": ("head_bits", "code_bits", "bits_per_sample"),
         "codes": ("used_", "perplexity_")}


def heldout_clips(config: dict, sample_rate: int, hop: int, n: int, seconds: float,
                  source: str | None = None) -> list[torch.Tensor]:
    """The first n held-out clips of the run's data (config.json's run.data; or of `source`), each
    cut to at most `seconds` and to a multiple of the hop."""
    data = dict((config.get("run") or {}).get("data") or {})
    data = {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(AudioDataConfig)}}
    if source is not None:
        data["source"] = source
    cfg = from_dict(AudioDataConfig, data, "data")
    _, val = open_audio(cfg, sample_rate)
    limit = int(seconds * sample_rate) // hop * hop
    clips = [torch.from_numpy(c[:min(len(c), limit) // hop * hop].copy()) for c in val.clips[:n]]
    clips = [c for c in clips if len(c)]
    if not clips:
        raise DataError(f"{cfg.source}: no held-out clip of at least one frame ({hop} samples)")
    return clips


@torch.no_grad()
def evaluate_codec(model, config: dict, n: int = 4, seconds: float = 8.0, source: str | None = None,
                   sample_seconds: float = 0.25, metrics: tuple[str, ...] = METRICS) -> dict:
    """The metrics of the module docstring (those of the groups named in `metrics`) on n held-out
    clips of up to `seconds` each; the exact sampler's speed on `sample_seconds` of the first clip's
    codes. ConfigError for an unknown group; DataError when the data holds no held-out clip."""
    for m in metrics:
        if m not in METRICS:
            raise ConfigError(f"--metrics {m}: a codec has {', '.join(METRICS)}")
    clips = heldout_clips(config, model.sample_rate, model.hop, n, seconds, source)
    values = {"clips": len(clips), "seconds": round(sum(len(c) for c in clips) / model.sample_rate, 2)}
    keys = tuple(k for m in metrics if m != "rtf" for k in _KEYS[m])
    if keys:
        values.update({k: v for k, v in measure(model, clips).items() if k.startswith(keys)})
    if "rtf" in metrics:
        codes = model.encode(clips[0][None])
        values["decode_rtf"] = real_time_factor(lambda: model.decode(codes),
                                                codes.shape[2] * model.hop / model.sample_rate)
        frames = max(1, round(sample_seconds * model.frame_rate))
        short = codes[:, :, :frames]
        values["sample_rtf"] = real_time_factor(lambda: model.sample(short, generator=torch.Generator().manual_seed(0)),
                                                frames * model.hop / model.sample_rate, repeats=1)
    return values
