"""MCD-DTW: zero for identical clips, growing with distortion, blind to a time shift, bad input."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from audio_clips import vowels

from genforge.errors import DataError
from genforge.eval.audio_metrics import dtw_path, mcd_cepstra, mcd_dtw, mel_cepstra, real_time_factor
from genforge.nn.mel import LogMel, MelConfig, griffin_lim


def test_identical_is_zero_and_distortion_grows():
    ref = vowels()
    assert mcd_dtw(ref, ref) == 0.0
    rng = np.random.default_rng(1)
    values = [mcd_dtw(ref, ref + s * rng.standard_normal(ref.size).astype(np.float32)) for s in (0.003, 0.01, 0.03, 0.1)]
    assert values[0] > 0 and all(a < b for a, b in itertools.pairwise(values)), values
    other = vowels(seed=0)[::-1].copy()  # same spectra class, different sequence
    assert mcd_dtw(ref, other) > values[0]


def test_dtw_absorbs_a_delay_that_frame_by_frame_cannot():
    ref = vowels()
    delayed = np.concatenate([np.zeros(2000, np.float32) + 0.3 * ref[:2000], ref])[: ref.size]
    a, b = mel_cepstra(ref, trim_db=None), mel_cepstra(delayed, trim_db=None)
    assert mcd_cepstra(a, b) < 0.5 * mcd_cepstra(a, b, dtw=False)


def test_griffin_lim_distortion_is_moderate():
    cfg = MelConfig()
    ref = vowels()
    gl = griffin_lim(LogMel(cfg)(torch.from_numpy(ref)), cfg).numpy()
    value = mcd_dtw(ref, gl[: ref.size], cfg)
    assert 0.1 < value < 8.0, value


def test_cepstra_shape_and_trim():
    cfg = MelConfig()
    ref = vowels(seconds=0.5)
    padded = np.concatenate([np.zeros(8000, np.float32), ref, np.zeros(8000, np.float32)])
    assert mel_cepstra(ref, cfg).shape[1] == 25
    assert mcd_dtw(ref, padded, cfg) < 0.5  # leading and trailing silence is trimmed
    assert mel_cepstra(padded, cfg, trim_db=None).shape[0] == cfg.num_frames(padded.size)


def test_bad_input():
    ref = vowels(seconds=0.3)
    with pytest.raises(DataError, match="generated audio: the clip is silent"):
        mcd_dtw(ref, np.zeros_like(ref))
    with pytest.raises(DataError, match="reference audio: the waveform holds no samples"):
        mcd_dtw(np.zeros(0, np.float32), ref)
    with pytest.raises(DataError, match="NaN"):
        mcd_dtw(ref, np.full_like(ref, np.nan))
    with pytest.raises(DataError, match="frames; use dtw=True"):
        mcd_cepstra(np.zeros((5, 25)), np.zeros((6, 25)), dtw=False)


def test_real_time_factor():
    calls = []
    assert real_time_factor(lambda: calls.append(1), audio_seconds=2.0, repeats=3) >= 0 and len(calls) == 3
    with pytest.raises(ValueError):
        real_time_factor(lambda: None, audio_seconds=0)


@pytest.mark.parametrize("shape", [(1, 9), (5, 7), (60, 45), (120, 130)])
def test_dtw_path_matches_librosa(shape):
    import librosa

    cost = np.random.default_rng(shape[0]).random(shape)
    _, ref = librosa.sequence.dtw(C=cost, backtrack=True)
    path = dtw_path(cost)
    assert np.array_equal(path, ref[::-1])
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (shape[0] - 1, shape[1] - 1)
