"""Music data: miditok round trips, conditioning tokens, transposition that keeps intervals and
keys, sources (MIDI folders, music21's corpus), and the one-line errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest
from music_files import tune_notes, write_folder, write_midi

from genforge.config import from_dict
from genforge.data.music import (
    MusicBatches,
    MusicDataConfig,
    MusicVocab,
    encode_set,
    first_bars,
    key_of,
    miditok_tokenizer,
    open_music,
    parse_key,
)
from genforge.data.music_sources import Piece, from_score, read_file, read_midi, read_source
from genforge.errors import ConfigError, DataError


def vocab(kind="remi"):
    return MusicVocab(miditok_tokenizer(kind), kind, ["key", "meter", "tempo", "instrument", "style"], ["test"])


def piece(name="c_major", bars=2):
    return Piece(name, tune_notes(name, bars), "4/4", 120.0, 0, "test")


@pytest.mark.parametrize("kind", ["remi", "tsd", "structured"])
def test_midi_tokens_midi_round_trip_is_exact_on_the_grid(kind, tmp_path):
    v = vocab(kind)
    original = read_midi(write_midi(tmp_path / "a.mid", tune_notes("a_minor", 3)), "test")
    ids = v.encode(original)
    assert ids[0] == v.bos and ids[-1] == v.eos and all(i >= v.base for i in ids[1:6])
    score, found = v.decode(ids.tolist())
    assert found == {"key": key_of(original.notes), "meter": "4/4", "tempo": "120", "instrument": "0", "style": "test"}
    back = from_score(score, "back", "")
    np.testing.assert_array_equal(back.notes[:, :3], original.notes[:, :3])  # onsets, durations, pitches


def test_round_trip_quantises_off_grid_onsets_to_the_nearest_step():
    v = vocab()
    notes = np.array([[0, 480, 60, 80], [487, 473, 64, 80], [1003, 480, 67, 80]], dtype=np.int64)
    back = from_score(v.decode(v.encode(Piece("q", notes, "4/4", 120.0, 0, "test")).tolist())[0], "b", "")
    assert np.abs(back.notes[:, 0] - notes[:, 0]).max() <= 30  # REMI: 8 steps a beat = 60 ticks
    np.testing.assert_array_equal(back.notes[:, 2], notes[:, 2])


def test_transposition_shifts_pitches_and_key_and_keeps_intervals_and_rhythm():
    v = vocab()
    ids = v.encode(piece("c_major"))
    for shift in (-5, 3, 7):
        moved = v.transpose_table(shift)[ids]
        score, found = v.decode(moved.tolist())
        a, b = from_score(v.decode(ids.tolist())[0], "a", "").notes, from_score(score, "b", "").notes
        np.testing.assert_array_equal(b[:, 2] - a[:, 2], shift)
        np.testing.assert_array_equal(np.diff(b[:, 2]), np.diff(a[:, 2]))  # intervals
        np.testing.assert_array_equal(b[:, :2], a[:, :2])  # onsets and durations
        assert found["key"] == ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][shift % 12]


def test_training_windows_stay_in_range_and_resume_at_the_same_draw(tmp_path):
    cfg = MusicDataConfig(source=str(write_folder(tmp_path / "m")), transpose=6, batch_size=4, val_fraction=0.0)
    v, train, val, _ = open_music(cfg, log=lambda _: None)
    a = MusicBatches(v, train, val, 4, 32, 6, seed=3)
    first = [next(a) for _ in range(3)]
    b = MusicBatches(v, train, val, 4, 32, 6, seed=3)
    b.load_state_dict({"step": 2})
    x, y = next(b)
    assert np.array_equal(x, first[2][0]) and np.array_equal(y, first[2][1])
    for x, y in first:
        assert x[:, 0].eq(v.bos).all()  # every window starts with the piece's conditions
        real = y[y >= 0]
        assert real.max() < len(v)
    lo, hi = train.shifts[0]
    assert lo <= 0 <= hi


def test_keys_are_found_and_parsed():
    assert key_of(tune_notes("c_major")) == "C"
    assert key_of(tune_notes("g_major")) == "G"
    assert [parse_key(k) for k in ("C", "c", "F#m", "Bb major", "a minor", "Eb")] == ["C", "Cm", "F#m", "A#", "Am", "D#"]
    with pytest.raises(ConfigError, match=r"--key='H': unknown key"):
        parse_key("H")
    with pytest.raises(ConfigError, match=r"--meter='7/4': unknown meter"):
        vocab().prefix(meter="7/4")
    with pytest.raises(ConfigError, match=r"--style='jazz': unknown style; this model knows test"):
        vocab().prefix(style="jazz")


def test_first_bars_cuts_a_piece():
    cut = first_bars(piece(bars=4), 1)
    assert cut.notes[:, 0].max() < 1920 and len(cut.notes) == 6


def test_a_corrupt_midi_is_named_and_skipped_only_with_the_flag(tmp_path):
    root = write_folder(tmp_path / "m")
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(DataError, match=r"broken\.mid: unreadable MIDI .*; pass data.skip_bad=true"):
        read_source(str(root))
    read = read_source(str(root), skip_bad=True)
    assert len(read.pieces) == 3 and len(read.bad) == 1 and "broken.mid" in read.bad[0]


def test_empty_folder_and_missing_source_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the folder holds no MIDI"):
        read_source(str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"nowhere: no such file or folder"):
        read_source(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"unknown builtin music source; expected one of builtin:chorales, builtin:folk"):
        read_source("builtin:essen")


def test_the_corpus_chorale_with_broken_repeats_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path))
    from pathlib import Path

    import music21

    path = Path(music21.__file__).parent / "corpus" / "bach" / "bwv277.krn"
    for _ in range(2):  # parsed, then read back from the cache with the same message
        with pytest.raises(DataError, match=r"^bach/bwv277.krn: malformed score \(cannot expand its repeats"):
            read_file(path, "chorale")


def test_chorales_read_with_bwv_ids_excluded(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path))
    read = read_source("builtin:chorales", limit=3)
    names = [p.name for p in read.pieces]
    assert names[0] == "bach/bwv1.6.mxl" and read.pieces[0].style == "chorale"
    assert key_of(read.pieces[0].notes) == "F"  # BWV 1.6 is in F major
    kept = read_source("builtin:chorales", limit=3, exclude=("bwv1.6",))
    assert "bach/bwv1.6.mxl" not in [p.name for p in kept.pieces] and len(kept.pieces) == 3


def test_music_config_fields_are_checked():
    with pytest.raises(ConfigError, match=r"data.conditions: 'mood' is not a condition"):
        from_dict(MusicDataConfig, {"conditions": ["key", "mood"]}, "data")
    with pytest.raises(ConfigError, match=r"data.tokenizer='abc'"):
        from_dict(MusicDataConfig, {"tokenizer": "abc"}, "data")
    with pytest.raises(ConfigError, match=r"data.transpose=13"):
        from_dict(MusicDataConfig, {"transpose": 13}, "data")


def test_a_prefix_longer_than_the_block_is_refused():
    v = vocab()
    s = encode_set(v, [piece()])
    with pytest.raises(ConfigError, match=r"model.block_size=4 leaves no room for the music"):
        MusicBatches(v, s, s, 2, 4)


ABC = """X:1
T:Up the hill
M:6/8
L:1/8
K:D
DFA dfa|gfe dcB|AFD EFG|A3 D3|]

X:2
T:Down again
M:3/4
L:1/4
K:G
G A B|c B A|G2 D|G3|]
"""


def test_a_book_of_abc_tunes_gives_one_piece_per_tune_with_its_meter_and_key(tmp_path):
    (tmp_path / "book.abc").write_text(ABC)
    read = read_source(str(tmp_path / "book.abc"))
    assert [p.name.rsplit("/", 1)[-1] for p in read.pieces] == ["book.abc#1", "book.abc#2"]
    assert [p.meter for p in read.pieces] == ["6/8", "3/4"]
    assert [key_of(p.notes) for p in read.pieces] == ["D", "G"]
    assert read.pieces[0].notes[:3, 2].tolist() == [62, 66, 69] and read.pieces[0].notes[1, 0] == 240  # eighths
    (tmp_path / "bad.abc").write_text("X:1\nK:Q\n|||:::(((")
    with pytest.raises(DataError, match=r"bad.abc: malformed score .*; pass data.skip_bad=true"):
        read_source(str(tmp_path / "bad.abc"))


def test_one_bad_tune_in_a_book_is_named_and_only_the_flag_keeps_the_others(tmp_path):
    book = tmp_path / "book.abc"
    book.write_text(ABC + "\nX:3\nT:Silence\nM:4/4\nL:1/4\nK:C\nz4|z4|]\n")
    with pytest.raises(DataError, match=r"book.abc#3: malformed score .*; pass data.skip_bad=true to skip such tunes"):
        read_source(str(book))
    read = read_source(str(book), skip_bad=True)
    assert [p.name.rsplit("/", 1)[-1] for p in read.pieces] == ["book.abc#1", "book.abc#2"]
    assert len(read.bad) == 1 and "book.abc#3: malformed score" in read.bad[0]


def test_an_exact_copy_of_a_piece_is_dropped_and_named(tmp_path):
    root = write_folder(tmp_path / "m")
    first = sorted(root.glob("*.mid"))[0]
    (root / "zz_copy.mid").write_bytes(first.read_bytes())
    read = read_source(str(root))
    assert len(read.pieces) == 3 and not any("zz_copy" in p.name for p in read.pieces)
    assert read.duplicates == [f"{root / 'zz_copy.mid'} = {first}"]
