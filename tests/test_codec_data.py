"""builtin:chorales_audio: music21's chorales rendered offline at the asked rate, cached (a second
read renders nothing), held out by a hash of the piece's name; chorale_split's fixed counts; a codec
run's bad input: a silent or corrupt WAV is a one-line error, a file at another rate is resampled
with a warning."""
import numpy as np
import pytest

from genforge.data import chorale_audio, synth
from genforge.data.audio import write_audio
from genforge.data.audio_batches import AudioDataConfig, open_audio
from genforge.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module's tests (music21 parses a chorale in ~0.3 s, the first time)."""
    root = tmp_path_factory.mktemp("codec_data") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_CACHE", str(root))
        yield root


def test_chorales_render_once_at_the_asked_rate_and_are_held_out_by_name(cache, monkeypatch):
    cfg = AudioDataConfig(source="builtin:chorales_audio", clips=5, val_fraction=0.5)
    train, val = open_audio(cfg, 8000)
    names = train.names + val.names
    assert len(set(names)) == 5 and names[0] == "bach/bwv1.6.mxl" and train.sample_rate == 8000
    assert (len(train), val.names) == (4, ["bach/bwv103.6.mxl"])
    for clip in train.clips + val.clips:
        assert clip.dtype == np.float32 and len(clip) > 8000 * 10  # chorales last tens of seconds
        assert 0.05 < float(np.abs(clip).max()) <= 1.0
    assert all(chorale_audio.held_out(n, 0.5) for n in val.names)
    assert not any(chorale_audio.held_out(n, 0.5) for n in train.names)
    assert chorale_audio.held_out("bach/bwv281.krn", 0.3) == chorale_audio.held_out("bach/bwv281.mxl", 0.3)
    assert len(list((cache / "chorales_audio").rglob("*.npz"))) == 5
    monkeypatch.setattr(synth, "render", lambda *a, **k: pytest.fail("rendered again"))
    again, _ = open_audio(cfg, 8000)
    assert all(np.array_equal(a, b) for a, b in zip(again.clips, train.clips))


def test_chorale_split_gives_fixed_counts(cache):
    train, train_names, val, val_names = chorale_audio.chorale_split(8000, 2, 1, val_fraction=0.5)
    assert train_names == ["bach/bwv1.6.mxl", "bach/bwv10.7.mxl"] and val_names == ["bach/bwv103.6.mxl"]
    assert len(train) == len(train_names) == 2 and len(val) == len(val_names) == 1
    assert chorale_audio.held_out(val_names[0], 0.5) and not set(train_names) & set(val_names)


def test_unknown_builtin_names_the_waveform_builtins():
    with pytest.raises(ConfigError, match="builtin:espeak and builtin:chorales_audio"):
        open_audio(AudioDataConfig(source="builtin:chorale_audio"), 16000)


def test_bad_files_are_one_line_errors_and_other_rates_are_resampled(tmp_path, capsys):
    folder = tmp_path / "wavs"
    t = np.arange(8000) / 8000
    write_audio(folder / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)  # 8 kHz for a 16 kHz model
    train, _ = open_audio(AudioDataConfig(source=str(folder), val_fraction=0.0), 16000)
    assert len(train.clips[0]) == 16000 and "resampled audio at [8000] Hz" in capsys.readouterr().err
    write_audio(folder / "silent.wav", np.zeros(800), 8000)
    with pytest.raises(DataError, match=r"silent.wav: silent clip \(peak -240 dBFS\)"):
        open_audio(AudioDataConfig(source=str(folder), val_fraction=0.0), 16000)
    (folder / "silent.wav").unlink()
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(DataError, match="broken.wav: unreadable audio") as e:
        open_audio(AudioDataConfig(source=str(folder), val_fraction=0.0), 16000)
    assert "\n" not in str(e.value)
