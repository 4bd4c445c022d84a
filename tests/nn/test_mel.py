"""Log-mel features against librosa, the length rule, differentiability, Griffin–Lim, bad input."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from genforge.errors import ConfigError, DataError
from genforge.nn.mel import MEL_PRESETS, LogMel, MelConfig, check_mel, griffin_lim, mel_config_for, mel_filterbank


def _clip(rate: int, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    chirp = np.sin(2 * np.pi * (150 * t + 900 * t**2))
    return (0.3 * chirp + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _librosa_mel(wav: np.ndarray, cfg: MelConfig) -> np.ndarray:
    return librosa.feature.melspectrogram(
        y=wav, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.f_max, power=cfg.power, htk=cfg.mel_scale == "htk",
        norm="slaney" if cfg.norm == "slaney" else None, center=cfg.center, pad_mode=cfg.pad_mode)


CONFIGS = [MelConfig(), MelConfig(mel_scale="htk", norm="none"), MelConfig(power=2.0, pad_mode="reflect"),
           MEL_PRESETS[16000], MEL_PRESETS[24000], MelConfig(fmin=80.0, fmax=None, n_mels=64)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.sample_rate}-{c.mel_scale}-{c.norm}-p{c.power:g}-{c.n_mels}")
def test_mel_matches_librosa(cfg):
    basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.f_max,
                                htk=cfg.mel_scale == "htk", norm="slaney" if cfg.norm == "slaney" else None)
    assert np.abs(mel_filterbank(cfg).numpy() - basis).max() <= 1e-7 * max(1.0, basis.max())
    wav = _clip(cfg.sample_rate)
    ref = _librosa_mel(wav, cfg)
    ours = LogMel(cfg).mel(torch.from_numpy(wav)).numpy()
    assert ours.shape == ref.shape == (cfg.n_mels, 1 + len(wav) // cfg.hop_length)
    # measured: relative error <= 3e-7 of the largest value; log-mel within 1e-5 nats
    assert np.abs(ours - ref).max() <= 1e-6 * ref.max()
    log_ref = np.log(np.maximum(ref, cfg.log_clamp))
    log_ours = LogMel(cfg)(torch.from_numpy(wav)).numpy()
    assert np.abs(log_ours - log_ref).max() < 5e-5


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000, 22050])
def test_frames_follow_one_plus_len_over_hop(n):
    cfg = MelConfig()
    wav = torch.randn(2, n) * 0.1
    out = LogMel(cfg)(wav)
    assert out.shape == (2, 80, 1 + n // 256) and cfg.num_frames(n) == 1 + n // 256
    assert cfg.num_samples(out.shape[-1]) == (out.shape[-1] - 1) * 256
    assert cfg.num_frames(cfg.num_samples(out.shape[-1])) == out.shape[-1]  # a round trip


def test_batched_equals_one_by_one_and_is_differentiable():
    feats = LogMel()
    wav = torch.from_numpy(np.stack([_clip(22050, seed=s) for s in range(3)])).requires_grad_(True)
    out = feats(wav)
    for i in range(3):
        assert torch.allclose(out[i], feats(wav[i].detach()), atol=1e-5)
    out.mean().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0
    assert not feats.state_dict()  # window and filterbank stay out of checkpoints


def test_silence_is_the_clamp_floor():
    out = LogMel()(torch.zeros(4096))
    assert torch.allclose(out, torch.full_like(out, float(np.log(1e-5))))


def test_griffin_lim_inverts_to_the_frame_rule_and_resembles_the_input():
    cfg = MelConfig()
    wav = torch.from_numpy(_clip(22050, seconds=0.6))
    feats = LogMel(cfg)
    log_mel = feats(wav)
    out = griffin_lim(log_mel, cfg, n_iter=32)
    assert out.shape == (cfg.num_samples(log_mel.shape[-1]),)
    assert torch.equal(out, griffin_lim(log_mel, cfg, n_iter=32))  # a fixed seed reproduces it
    rebuilt = feats(torch.nn.functional.pad(out, (0, wav.numel() - out.numel())))
    # the magnitudes come back close (phase is what Griffin–Lim guesses): mean log-mel error in nats
    err = (rebuilt - log_mel).abs().mean().item()
    noise = (feats(torch.randn_like(wav) * wav.std()) - log_mel).abs().mean().item()
    assert err < 0.5 < noise
    batch = griffin_lim(torch.stack([log_mel, log_mel]), cfg, n_iter=4)
    assert batch.shape == (2, out.numel())
    assert griffin_lim(log_mel[:, :1], cfg).shape == (0,)  # one frame spans no samples


def test_presets_and_bad_settings():
    assert mel_config_for(16000).fmax == 8000 and mel_config_for(24000).sample_rate == 24000
    with pytest.raises(ConfigError, match="sample_rate=44100"):
        mel_config_for(44100)
    with pytest.raises(ConfigError, match="fmax"):
        MelConfig(sample_rate=16000, fmax=11025)
    with pytest.raises(ConfigError, match="win_length"):
        MelConfig(win_length=2048)
    with pytest.raises(ConfigError, match="unknown keys"):
        MelConfig.from_dict({"n_mel": 80})
    assert MelConfig.from_dict(MelConfig().to_dict()) == MelConfig()


def test_bad_input_one_line_errors():
    cfg = MelConfig()
    with pytest.raises(DataError, match=r"expected \(n_mels=80, frames\).*got shape \(1, 64, 10\)"):
        check_mel(torch.zeros(64, 10), cfg)
    with pytest.raises(DataError, match="no frames"):
        check_mel(torch.zeros(80, 0), cfg)
    with pytest.raises(DataError, match="no samples"):
        LogMel(cfg)(torch.zeros(0))
    with pytest.raises(DataError, match="NaN"):
        LogMel(cfg)(torch.full((100,), float("nan")))
    with pytest.raises(DataError, match="n_mels=80"):
        griffin_lim(torch.zeros(40, 5), cfg)
