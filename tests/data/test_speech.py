"""The speech front end and data: text normalisation and espeak-ng's phonemes on fixed sentences,
the teacher's durations summing to its frames, recorded speech (LJSpeech layout, wav + txt pairs)
aligned to the phonemes, and every bad input as a one-line DataError."""
from __future__ import annotations

import numpy as np
import pytest
from audio_clips import vowels

from genforge.data import espeak
from genforge.data.audio import write_audio
from genforge.data.speech import SpeechDataConfig, held_out, open_speech, recorded_pairs, teach
from genforge.data.text_norm import cardinal, normalize, ordinal, year
from genforge.errors import DataError
from genforge.nn.mel import LogMel, mel_config_for


@pytest.mark.parametrize("text, said", [
    ("Dr. Smith paid $3.50 on the 21st.", "Doctor Smith paid three dollars and fifty cents on the twenty-first."),
    ("In 1984, 45% of 1,250 people", "In nineteen eighty-four, forty-five percent of one thousand two hundred fifty people"),
    ("It is 7:05 at No. 10 & St. Paul's", "It is seven oh five at Number ten and Saint Paul's"),
    ("$1 and £0.01 and 3.14", "one dollar and one penny and three point one four"),
    ("the 2nd, 3rd, 12th and 100th", "the second, third, twelfth and one hundredth"),
    ("  Mr.   Jones  ", "Mister Jones"),
])
def test_normalize_says_numbers_money_and_abbreviations(text, said):
    assert normalize(text) == said


def test_number_words():
    assert cardinal(0) == "zero" and cardinal(1_000_001) == "one million one"
    assert cardinal(999) == "nine hundred ninety-nine"
    assert [ordinal(n) for n in (1, 5, 9, 20, 21, 40)] == ["first", "fifth", "ninth", "twentieth", "twenty-first", "fortieth"]
    assert (year(1905), year(2000), year(2005), year(1800)) == ("nineteen oh five", "two thousand", "two thousand five",
                                                                 "eighteen hundred")


def test_phonemes_of_fixed_sentences():
    assert espeak.phonemize("Hello world.") == "həlˈoʊ wˈɜːld"
    assert espeak.phonemes("Hello world.") == ["h", "@", "l", "'oU", "w", "'3:", "l", "d", "_:"]
    us, gb = espeak.phonemes("Now is the winter", "en-us"), espeak.phonemes("Now is the winter", "en")
    assert us[:2] == ["n", "'aU"] and us != gb  # two accents read the same text differently


def test_teacher_durations_sum_to_its_frames():
    feats = LogMel(mel_config_for(22050))
    for voice in espeak.DEFAULT_VOICES:
        names, durations, mel = teach("Now is the winter of our discontent.", voice, feats)
        said = espeak.synthesize("Now is the winter of our discontent.", voice)
        assert len(names) == len(durations) and durations.sum() == len(mel) == 1 + len(said.audio) // 256
        assert (durations >= 0).all() and mel.shape[1] == 80
    _, d16, mel16 = teach("Now is the winter.", "en-us", LogMel(mel_config_for(16000)))
    assert d16.sum() == len(mel16)  # resampled to another rate, the frames still add up


def test_teacher_dataset_is_cached_and_holds_sentences_out(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("Speak the speech, I pray you.\nThe 3 witches met at 7:30.\n")
    cfg = SpeechDataConfig(sentences=12, text=str(text), cache=str(tmp_path / "cache"), val_fraction=0.25,
                           voices=["en-us", "en+m3"])
    train, val = open_speech(cfg, 22050)
    assert "The three witches met at seven thirty." in train.texts + val.texts
    assert not set(train.texts) & set(val.texts) and all(held_out(t, 0.25) for t in val.texts)
    assert set(train.voices) == {"en-us", "en+m3"}
    assert len(list((tmp_path / "cache").glob("teacher-*.npz"))) == 1
    again, _ = open_speech(cfg, 22050)  # from the cache
    assert again.texts == train.texts and np.array_equal(again.mel, train.mel)
    for i in range(len(train)):
        _, d, mel, _ = train.item(i)
        assert d.sum() == len(mel)


def _pairs(root, n=3, clip=None):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_audio(root / f"u{i}.wav", vowels(22050, 1.2, seed=i) if clip is None else clip, 22050)
        (root / f"u{i}.txt").write_text(f"Hello there number {i}.")
    return root


def test_recorded_pairs_and_ljspeech_are_aligned_to_phonemes(tmp_path):
    cfg = SpeechDataConfig(source=str(_pairs(tmp_path / "me")), val_fraction=0.0)
    train, _ = open_speech(cfg, 22050)
    assert train.voices == ["me"] and len(train) == 3 and train.texts[1] == "Hello there number one."
    for i in range(3):
        names, d, mel, _ = train.item(i)
        assert d.sum() == len(mel) and len(names) == len(d)
    lj = tmp_path / "LJ"
    (lj / "wavs").mkdir(parents=True)
    write_audio(lj / "wavs" / "LJ001-0001.wav", vowels(22050, 1.0), 22050)
    (lj / "metadata.csv").write_text("LJ001-0001|Printing, in the 1st sense|Printing, in the first sense\n")
    assert recorded_pairs(lj)[0][2] == "Printing, in the first sense"


def test_bad_speech_data_is_one_line_error(tmp_path):
    cases = []
    lonely = tmp_path / "a"
    lonely.mkdir()
    (lonely / "x.txt").write_text("words without audio")
    cases.append((lonely, "transcript without audio"))
    mute = tmp_path / "b"
    mute.mkdir()
    write_audio(mute / "y.wav", vowels(), 22050)
    cases.append((mute, "audio without a transcript"))
    lj = tmp_path / "lj"
    (lj / "wavs").mkdir(parents=True)
    (lj / "metadata.csv").write_text("LJ9|said|said\n")
    cases.append((lj, "transcript 'LJ9' has no audio"))
    cases.append((_pairs(tmp_path / "silent", 1, np.zeros(22050, np.float32)), "silent clip"))
    cases.append((_pairs(tmp_path / "loud", 1, np.clip(vowels() * 8, -1, 1)), "clipped"))
    for root, words in cases:
        with pytest.raises(DataError) as e:
            open_speech(SpeechDataConfig(source=str(root)), 22050)
        assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text, words", [("你好", "cannot read '你'"), ("hi 🙂", "cannot read '🙂'"), ("...", "nothing to say")])
def test_text_the_phonemiser_cannot_read(text, words):
    with pytest.raises(DataError, match=words):
        espeak.synthesize(text)


def test_unknown_espeak_voice():
    with pytest.raises(DataError, match="espeak voice 'xx-nope': unknown"):
        espeak.synthesize("hello", "xx-nope")
