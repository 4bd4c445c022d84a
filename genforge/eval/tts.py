"""Offline evaluation of a speech model against the embedded teacher on held-out sentences (the
teacher's sentences whose hash puts them in the held-out split: never trained on, in any voice).

  mcd:      mel-cepstral distortion with DTW (genforge/eval/audio_metrics.py) of the spoken
            waveform against espeak-ng's audio of the same sentence in the same voice, per vocoder
  duration: mean absolute error of the predicted phoneme durations against the teacher's (ms),
            and of the utterance length (relative)
  discrim:  for sentences A_1..A_n in one voice, the fraction whose output is nearer, by DTW on
            log-mel (the mean frame distance along the path), to A_i's reference than to any A_j's
            (needs no speech recogniser: a model that mumbles the same thing for every text fails)
  rtf:      seconds of computing per second of audio of the whole path (text -> normalised ->
            phonemes -> frames -> waveform), median of 3, at the caller's torch thread count

Naturalness cannot be measured offline; these measure what can be.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from genforge.data import espeak
from genforge.data.audio import resample_audio
from genforge.data.speech import held_out, shakespeare_sentences, teach
from genforge.data.text_norm import normalize
from genforge.errors import ConfigError, DataError
from genforge.eval.audio_metrics import mcd_dtw, real_time_factor
from genforge.nn.mel import LogMel, mel_config_for

METRICS = ("mcd", "duration", "discrim", "rtf")
Vocoder = Callable[[torch.Tensor], torch.Tensor]


def heldout_sentences(n: int, val_fraction: float = 0.05, skip: Sequence[str] = ()) -> list[str]:
    """n sentences of the plays in the held-out split (none of `skip`)."""
    skip = set(skip)
    found = [s for s in shakespeare_sentences() if held_out(s, val_fraction) and s not in skip]
    if len(found) < n:
        raise DataError(f"only {len(found)} held-out sentences (asked for {n})")
    return found[:n]


def teacher_voices(config) -> list[int]:
    """The model's voices that the teacher speaks (an espeak voice read in its own accent)."""
    return [i for i, (v, a) in enumerate(zip(config.voices, config.accents or config.voices)) if v == a]


def _ids(config, phonemes: list[str]) -> list[int]:
    """Inventory ids of the teacher's phonemes, unstressed where the model lacks the stressed one;
    0 (padding: no frames) for one it never saw at all, which the result counts as `oov`."""
    inventory = {p: i + 1 for i, p in enumerate(config.phonemes)}
    bare = {p.replace("'", "").replace(",", ""): i for p, i in reversed(inventory.items())}
    return [inventory.get(p) or bare.get(p.replace("'", "").replace(",", ""), 0) for p in phonemes]


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance along the DTW path between log-mels (T1, n_mels), (T2, n_mels)."""
    import librosa

    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    _, path = librosa.sequence.dtw(C=cost, backtrack=True)
    return float(cost[path[:, 0], path[:, 1]].mean())


@torch.no_grad()
def evaluate_speech(model, vocoders: dict[str, Vocoder], metrics: Sequence[str] = METRICS, n: int = 20,
                    val_fraction: float = 0.05, skip: Sequence[str] = (),
                    voices: Sequence[str] | None = None) -> dict[str, float]:
    """Metrics (METRICS) of acoustic `model` on n held-out sentences, spoken in turn by each of its
    teacher voices; MCD and discrimination for each of `vocoders` (the first's are `mcd_db` and
    `discrim`, the others' mcd_NAME_db and discrim_NAME); rtf times the first vocoder's whole path
    (normalisation, phonemes, frames, waveform) on 4 of the sentences. ConfigError for an unknown
    metric or a model with no teacher voice. `voices`: only these of the model's teacher voices."""
    for m in metrics:
        if m not in METRICS:
            raise ConfigError(f"--metrics {m}: a speech model has {', '.join(METRICS)}")
    c = model.config
    voices = [v for v in teacher_voices(c) if voices is None or c.voices[v] in voices]
    if not voices:
        raise ConfigError(f"the model's voices ({', '.join(c.voices)}) are not espeak voices; the teacher cannot "
                          "give references")
    mel_cfg = mel_config_for(c.sample_rate)
    feats = LogMel(mel_cfg)
    sentences = heldout_sentences(n, val_fraction, skip)
    device = next(model.parameters()).device
    ms_per_frame = 1000 * c.hop_length / c.sample_rate
    rows, oov, phones = [], 0, 0
    for k, text in enumerate(sentences):
        v = voices[k % len(voices)]
        said = espeak.synthesize(text, c.voices[v])
        ref = said.audio if said.sample_rate == c.sample_rate else resample_audio(said.audio, said.sample_rate, c.sample_rate)
        names, d_ref, mel_ref = teach(text, c.voices[v], feats)
        row = _ids(c, names)
        oov += row.count(0)
        phones += len(row)
        ids = torch.tensor([row], device=device)
        mels, d_pred = model.synthesize(ids, torch.tensor([v], device=device))
        wavs = {name: vocode(mels[0][None])[0].float().cpu().numpy() for name, vocode in vocoders.items()}
        rows.append((text, v, ref, mel_ref, d_ref, d_pred[0].cpu().numpy(), wavs, c.voices[v], row))
    out: dict[str, float] = {"n": len(rows), "oov": oov / max(phones, 1)}  # phonemes the model never learnt
    names = list(vocoders)
    if "mcd" in metrics:
        for i, name in enumerate(names):
            value = float(np.mean([mcd_dtw(r[2], r[6][name], mel_cfg) for r in rows]))
            out["mcd_db" if i == 0 else f"mcd_{name}_db"] = value
            if i == 0 and len(names) > 1:
                out[f"mcd_{name}_db"] = value
    if "duration" in metrics:
        out["dur_err_ms"] = float(np.mean(np.concatenate([np.abs(r[5] - r[4]) for r in rows]))) * ms_per_frame
        out["len_err"] = float(np.mean([abs(r[5].sum() - r[4].sum()) / r[4].sum() for r in rows]))
    if "discrim" in metrics:
        for i, name in enumerate(names):
            out["discrim" if i == 0 else f"discrim_{name}"] = discrimination(rows, name, feats)
    if "rtf" in metrics:
        first = vocoders[names[0]]
        timed = [(r[0], r[7], torch.tensor([r[8]], device=device), torch.tensor([r[1]], device=device)) for r in rows[:4]]

        def say_all():  # what speak() does: normalise and phonemise the text, frames, waveform
            for text, voice, ids, v in timed:
                espeak.synthesize(normalize(text), voice)
                first(model.synthesize(ids, v)[0][0][None])

        seconds = sum(len(r[6][names[0]]) for r in rows[:4]) / c.sample_rate
        out["rtf"] = real_time_factor(say_all, seconds)
    return out


def discrimination(rows, vocoder: str, feats: LogMel) -> float:
    """Fraction of outputs nearer (DTW on log-mel) to their own sentence's reference than to the
    references of every other sentence spoken in the same voice."""
    if len(rows) < 2:
        raise DataError("discrim: needs at least two sentences (raise n)")
    refs: dict[tuple[int, int], np.ndarray] = {}
    hits = 0
    for i, (_, v, _, mel_ref, *_rest) in enumerate(rows):
        refs[i, v] = mel_ref
    for i, r in enumerate(rows):
        v = r[1]
        out = feats(torch.from_numpy(np.ascontiguousarray(r[6][vocoder]))).T.numpy()
        d = []
        for j, other in enumerate(rows):
            if (j, v) not in refs:
                refs[j, v] = teach(other[0], model_voice(rows, v), feats)[2]
            d.append(dtw_distance(out, refs[j, v]))
        hits += int(np.argmin(d) == i)
    return hits / len(rows)


def model_voice(rows, v: int) -> str:
    """The espeak voice name of voice id v among the rows."""
    return next(r[7] for r in rows if r[1] == v)
