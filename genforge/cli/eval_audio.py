"""`genforge eval` of waveform checkpoints (kinds audio and codec), and the Fréchet audio distance of
music checkpoints (their pieces rendered to WAV, as users hear them).

- codec: eval/codec.py on the held-out clips of its data (reconstruction, bits, codes, rtf);
- audio (audio_lm): `bits`, the bits per sample of its held-out clips: the codes under the LM and
  the samples given the codes (sample/audio_lm.py AudioLMModel.bits), separately and summed; and
  `fad`, the Fréchet audio distance of generated clips to the held-out clips (eval/audio_fad.py);
- music: `fad` beside the symbolic metrics (evaluate.py _eval_music draws the pieces).
"""
from __future__ import annotations

import math

import numpy as np

from genforge.errors import ConfigError, DataError

AUDIO_METRICS = ("bits", "fad")
HELD_OUT_CLIPS = 10  # bits and codec metrics: the first this many held-out clips, by default
FAD_WINDOWS = 200  # fad of an audio model: windows a side, by default
CLIP_SECONDS = 10.0  # fad of an audio model: the length of each generated clip
WHOLE = 3600.0  # seconds: held-out clips are measured whole (up to an hour each)


def chosen(text: str | None, known: tuple[str, ...], default: tuple[str, ...], what: str) -> list[str]:
    """The metrics of --metrics (default `default`); ConfigError naming those `what` has."""
    metrics = [m.strip() for m in text.split(",") if m.strip()] if text else list(default)
    for m in metrics:
        if m not in known:
            raise ConfigError(f"--metrics {m}: {what} has {', '.join(known)}")
    return metrics


def _check_inputs(a) -> None:
    if a.file:
        raise ConfigError("--file scores text; a waveform model is measured on audio (--data FOLDER of audio files)")


def eval_codec(a, parser) -> dict:
    """eval/codec.py on the first --num-samples (default 10) held-out clips of the codec's data (or of
    --data), each up to its data.val_seconds."""
    from genforge import checkpoint as ckpt_io
    from genforge.eval.codec import METRICS, evaluate_codec

    _check_inputs(a)
    metrics = chosen(a.metrics, METRICS, METRICS, "a codec")
    loaded = ckpt_io.load(a.ckpt, "cpu" if a.device == "auto" else a.device)
    n = HELD_OUT_CLIPS if a.num_samples == parser.get_default("num_samples") else a.num_samples
    seconds = float(((loaded.config.get("run") or {}).get("data") or {}).get("val_seconds") or 8.0)
    return evaluate_codec(loaded.model.eval(), loaded.config, n, seconds, a.data, metrics=tuple(metrics))


def eval_audio(a, parser) -> dict:
    """`bits` (default) and `fad` of an audio_lm checkpoint; --num-samples: the held-out clips bits
    measures (default 10), the windows a side fad compares (default 200)."""
    from genforge.sample.audio_lm import AudioLMModel

    _check_inputs(a)
    metrics = chosen(a.metrics, AUDIO_METRICS, ("bits",), "an audio_lm model")
    given = a.num_samples != parser.get_default("num_samples")
    model = AudioLMModel.load(a.ckpt, a.device)
    out: dict = {}
    if "bits" in metrics:
        out.update(audio_bits(model, heldout(model, a.num_samples if given else HELD_OUT_CLIPS, a.data)))
    if "fad" in metrics:
        out.update(audio_fad(model, a.num_samples if given else FAD_WINDOWS, a.seed, a.judge, a.data))
    return out


def heldout(model, n: int, source: str | None = None) -> list[np.ndarray]:
    """The first n held-out clips of the model's data (or of `source`), whole."""
    from genforge.eval.codec import heldout_clips

    return [c.numpy() for c in heldout_clips(model.config, model.sample_rate, model.model.hop, n, WHOLE, source)]


def audio_bits(model, clips: list[np.ndarray]) -> dict:
    """Bits per sample of clips under an AudioLMModel: of the codes under the LM, of the samples given
    the codes, and their sum, with the clips' count and length."""
    code = sample = 0.0
    samples = 0
    for wav in clips:
        found = model.bits(wav)
        code, sample, samples = code + found["code_bits"], sample + found["sample_bits"], samples + found["samples"]
    return {"bits_per_sample": (code + sample) / samples, "code_bits_per_sample": code / samples,
            "sample_bits_per_sample": sample / samples, "clips": len(clips),
            "seconds": round(samples / model.sample_rate, 2)}


def audio_fad(model, windows: int, seed: int, judge: str | None, source: str | None = None) -> dict:
    """The Fréchet audio distance of CLIP_SECONDS clips the model generates (seed, seed + 1, ... per
    batch) against its held-out clips, `windows` a side at most."""
    from genforge.eval.audio_fad import SAMPLE_RATE as JUDGE_RATE
    from genforge.eval.audio_fad import WINDOW, frechet_audio_distance
    from genforge.train.audio_judge import audio_judge

    if windows < 2:
        raise ConfigError(f"--num-samples {windows}: fad compares at least 2 windows a side")
    loaded_judge = audio_judge(judge)
    real = heldout(model, 1_000_000, source)
    per_clip = max(1, int(CLIP_SECONDS * JUDGE_RATE) // WINDOW)
    total, clips = math.ceil(windows / per_clip), []
    for k in range(0, total, 8):  # 8 clips a batch
        clips += [s.wav for s in model.generate(min(8, total - k), CLIP_SECONDS, seed=seed + k)]
    return {**frechet_audio_distance(real, clips, model.sample_rate, loaded_judge, windows, seed),
            "held_out_clips": len(real), "generated_clips": len(clips)}


def music_fad(samples: list, held: list, seed: int, judge: str | None) -> dict:
    """The Fréchet audio distance of a music model's sample pieces (MusicSample) against its held-out
    pieces (data.music_sources Piece), both rendered by data/synth.py at the judge's rate."""
    from genforge.data.music import to_score
    from genforge.data.synth import render
    from genforge.eval.audio_fad import SAMPLE_RATE, frechet_audio_distance
    from genforge.train.audio_judge import audio_judge

    if not held:
        raise DataError("--metrics fad: the model's data holds no held-out piece to compare with (data.val_fraction)")
    loaded_judge = audio_judge(judge)
    real = [render(to_score(p), SAMPLE_RATE) for p in held]
    fake = [render(s.score, SAMPLE_RATE) for s in samples if s.notes]
    return {**frechet_audio_distance(real, fake, SAMPLE_RATE, loaded_judge, seed=seed), "held_out_pieces": len(held)}
