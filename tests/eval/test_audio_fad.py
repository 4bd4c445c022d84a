"""The Fréchet audio distance (eval/audio_fad.py) and its judge (train/audio_judge.py): the Fréchet
distance is 0 for identical feature sets and the squared length of a mean shift; the judge's labels
of a rendered hand-made score are the pitch classes that sound (in the score and in the audio);
both sides keep the same number of windows; the judge trains once on first use into the cache."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from fad_helpers import tiny_judge
from torch import nn

from genforge.data.music_sources import Piece
from genforge.errors import CheckpointError, DataError
from genforge.eval.audio_fad import (
    SAMPLE_RATE,
    WINDOW,
    AudioJudge,
    frechet,
    frechet_audio_distance,
    load_audio_judge,
    mel_pictures,
    windows,
)
from genforge.train.audio_judge import judge_windows, segment, window_chroma


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    return load_audio_judge(tiny_judge(tmp_path_factory.mktemp("audio_judge") / "run"))


def test_frechet_is_zero_for_identical_features_and_the_squared_shift_of_the_mean():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (400, 1, 4, 4)).astype(np.uint8)  # features: the 16 pixels / 255
    identity = AudioJudge(nn.Flatten(), [], [])
    assert frechet(x, x, identity) == pytest.approx(0.0, abs=1e-4)
    for shift in (20, 40):  # the same covariance, the mean moved by shift / 255 in each of 16 dimensions
        assert frechet(x, x + shift, identity) == pytest.approx(16 * (shift / 255) ** 2, rel=1e-3)


def _score() -> Piece:
    """At 60 quarters a minute (a quarter a second): C E G, then D F# A entering at 1.0 s (8 ms into
    window 0: too short to count there), then B3 at 2.0 s and a 29 ms A#4 (below MIN_SOUNDING)."""
    notes = [(0, 480, 60, 90), (0, 480, 64, 90), (0, 480, 67, 90), (480, 480, 62, 90), (480, 480, 66, 90),
             (480, 480, 69, 90), (960, 480, 59, 90), (1200, 14, 70, 90)]
    return Piece("hand/made.mid", np.array(notes, dtype=np.int64), "4/4", 60.0, 0, "chorale")


EXPECTED = [{0, 4, 7}, {2, 6, 9}, {11}]


def test_the_labels_of_a_rendered_hand_made_score_are_the_pitch_classes_sounding():
    piece = _score()
    chroma = window_chroma(piece.notes, piece.tempo, 3)
    assert [set(np.flatnonzero(row)) for row in chroma] == EXPECTED
    found = judge_windows([piece])  # two renders (programs 0 and 1), windows 3..5 of each hold no note
    assert found.images.shape == (6, 1, 64, 64) and found.images.dtype == np.uint8
    assert [set(np.flatnonzero(row[:12])) for row in found.labels] == EXPECTED * 2
    assert found.labels[:, 12].tolist() == [0, 0, 0, 1, 1, 1] and (found.labels[:, 13] == 0).all()


def test_the_labelled_pitch_classes_are_the_loudest_in_the_rendered_audio():
    import librosa

    from genforge.data.music import to_score
    from genforge.data.synth import render

    wav = render(to_score(segment(_score(), 0, 3000, 0)), SAMPLE_RATE)
    for k, want in enumerate(EXPECTED):
        chroma = librosa.feature.chroma_stft(y=wav[k * WINDOW:(k + 1) * WINDOW], sr=SAMPLE_RATE, n_fft=4096)
        assert set(np.argsort(chroma.mean(1))[-len(want):].tolist()) == want


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-(t % 0.5) * 4)).astype(np.float32)


def test_both_sides_keep_the_same_number_of_windows_and_noise_is_farther_than_the_real_halves(judge):
    real = [_tone(f, 3.1) for f in (220, 262, 330, 392, 440, 523)]  # 3 windows each: halves of 9
    noise = [np.random.default_rng(i).normal(0, 0.3, 4 * WINDOW).astype(np.float32) for i in range(3)]
    out = frechet_audio_distance(real, noise, SAMPLE_RATE, judge)
    assert out["fad_windows"] == 9 and out["fad"] > 2 * out["fad_halves"] >= 0
    assert set(out) >= {"judge_chroma_f1", "judge_program_acc", "judge_style_acc", "judge_windows"}
    assert frechet_audio_distance(real, noise, SAMPLE_RATE, judge, max_windows=4)["fad_windows"] == 4
    assert windows(_tone(220, 3.1), SAMPLE_RATE // 2).shape == (6, WINDOW)  # resampled to 16 kHz first
    assert mel_pictures(windows(real[0], SAMPLE_RATE)).shape == (3, 1, 64, 64)


def test_too_few_windows_is_a_one_line_error(judge):
    with pytest.raises(DataError, match=r"^fad: needs at least 2 windows of 1.008 s on each side \(real half 1 3, "
                                        r"real half 2 3, generated 1\)$"):
        frechet_audio_distance([_tone(220, 3.1), _tone(330, 3.1)], [_tone(440, 1.1)], SAMPLE_RATE, judge)


def test_music_fad_renders_the_pieces_and_refuses_a_model_without_held_out_pieces(judge, tmp_path, monkeypatch):
    from genforge.cli.eval_audio import music_fad
    from genforge.data.music import to_score

    monkeypatch.setattr("genforge.train.audio_judge.load_audio_judge", lambda ckpt, device="cpu": judge)
    pieces = [Piece(f"p{i}", np.array([(j * 480, 480, 60 + (i + j) % 12, 80) for j in range(8)]), "4/4", 60.0)
              for i in range(4)]
    samples = [SimpleNamespace(score=to_score(p), notes=len(p.notes)) for p in pieces[:2]]
    out = music_fad(samples, pieces, 0, "given")
    assert out["held_out_pieces"] == 4 and out["fad_windows"] >= 2 and out["fad"] >= 0
    with pytest.raises(DataError, match="no held-out piece"):
        music_fad(samples, [], 0, "given")


def test_the_judge_trains_once_on_first_use_into_the_cache(tmp_path, monkeypatch):
    import genforge.train.audio_judge as trainer
    from genforge.checkpoint import save_checkpoint
    from genforge.models.classifier import Classifier, ClassifierConfig

    cache = tmp_path / "judges" / "audio-judge-v1"  # the music parse cache stays the user's (as GENFORGE_CACHE would not)
    monkeypatch.setattr(trainer, "judge_dir", lambda: cache)
    monkeypatch.setattr("genforge.eval.audio_fad.judge_dir", lambda: cache)
    calls = []

    def tiny(out):
        calls.append(out)
        return tiny_judge(out)

    monkeypatch.setattr(trainer, "train_audio_judge", tiny)
    first = trainer.audio_judge()
    second = trainer.audio_judge()
    assert len(calls) == 1 and first.validation == second.validation and first.validation["windows"] > 0
    assert (cache / "step-0000004" / "judge.json").is_file()
    cfg = ClassifierConfig(image_size=8, channels=1, num_classes=2, width=4, feature_dim=8)
    other = save_checkpoint(tmp_path / "mnist", {"family": "classifier", "model": cfg.__dict__}, {"model": Classifier(cfg)})
    with pytest.raises(CheckpointError, match="not an audio judge"):
        load_audio_judge(other)
