"""Music metrics: the n-gram copy rate and longest copied run see copies (transposed ones too) and
nothing else; histogram distances are 0 for the data itself, and scale degrees forgive transposition."""
from __future__ import annotations

import numpy as np
import pytest
from music_files import tune_notes

from genforge.errors import ConfigError
from genforge.eval.music import evaluate, histogram_distances, novelty


def random_piece(rng, n=60):
    starts = np.cumsum(rng.choice([120, 240, 480], size=n))
    return np.stack([starts, rng.choice([120, 240, 480], size=n), rng.integers(48, 84, size=n),
                     np.full(n, 80)], axis=1).astype(np.int64)


def test_copies_are_found_and_new_music_is_not():
    rng = np.random.default_rng(0)
    train = [random_piece(rng) for _ in range(6)]
    copied = novelty([train[0], train[1] + np.array([0, 0, 5, 0])], train)  # one verbatim, one transposed
    assert copied["copy_rate_8"] == 1.0 and copied["longest_copy_max"] == 60 and copied["longest_copy_mean"] == 60
    fresh = novelty([random_piece(np.random.default_rng(9)) for _ in range(3)], train)
    assert fresh["copy_rate_8"] < 0.05 and fresh["longest_copy_max"] < 8
    half = np.concatenate([train[2][:20], random_piece(np.random.default_rng(5), 20) + np.array([20 * 480, 0, 0, 0])])
    assert novelty([half], train)["longest_copy_max"] >= 20


def test_the_hashed_index_agrees_with_sets_of_ngram_tuples():
    from genforge.eval.music import NgramIndex, ngrams, note_words

    rng = np.random.default_rng(3)

    def narrow(n):  # three pitches, two lengths: many repeats, so many matches to get right
        starts = np.cumsum(rng.choice([120, 240], size=n))
        return np.stack([starts, rng.choice([120, 240], size=n), rng.integers(60, 63, size=n), np.full(n, 80)], 1)

    train = [narrow(int(rng.integers(3, 40))) for _ in range(8)]
    index = NgramIndex(train)
    for sample in [narrow(int(rng.integers(1, 30))) for _ in range(20)]:
        words = note_words(sample)
        for n in range(1, 12):
            grams = {g for p in train for g in ngrams(note_words(p), n)}
            assert index.has(words, n).tolist() == [g in grams for g in ngrams(words, n)]
        longest = max((n for n in range(1, len(words) + 1) if index.has(words, n).any()), default=0)
        assert index.longest_copy(words) == longest


def test_histogram_distances_are_zero_for_the_data_and_scale_degrees_forgive_transposition():
    data = [tune_notes(n, 4) for n in ("c_major", "g_major", "a_minor")]
    same = histogram_distances(data, data)
    assert same["pitch_class_tv"] == same["ioi_tv"] == same["duration_tv"] == same["scale_degree_tv"] == 0.0
    moved = histogram_distances([p + np.array([0, 0, 3, 0]) for p in data], data)
    assert moved["pitch_class_tv"] > 0.2 and moved["scale_degree_tv"] == pytest.approx(0.0)
    assert moved["ioi_tv"] == 0.0


def test_an_unknown_metric_is_refused():
    with pytest.raises(ConfigError, match="--metrics fid: a music model has novelty, pitch, rhythm"):
        evaluate([], [], ["fid"])
