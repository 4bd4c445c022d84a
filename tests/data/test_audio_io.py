import numpy as np
import pytest

from genforge.data.audio import encode_audio, read_audio, write_audio
from genforge.errors import DataError


def _tone(rate=16000, seconds=0.5, hz=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_written_audio_reads_back_within_16_bit_quantisation(tmp_path, suffix):
    wav = _tone()
    path = write_audio(tmp_path / f"a{suffix}", wav, 16000)
    back, rate = read_audio(path)
    assert rate == 16000 and back.shape == wav.shape
    assert np.abs(back - wav).max() < 1 / 32767 + 1e-6


def test_another_rate_is_resampled_with_a_warning_or_refused(tmp_path):
    path = write_audio(tmp_path / "a.wav", _tone(rate=22050, seconds=1.0), 22050)
    with pytest.warns(UserWarning, match="resampling 22050 Hz to 16000 Hz"):
        back, rate = read_audio(path, 16000)
    assert rate == 16000 and abs(back.size - 16000) <= 1
    with pytest.raises(DataError, match=r"a\.wav: sample rate 22050 Hz, expected 16000 Hz"):
        read_audio(path, 16000, resample=False)


def test_a_corrupt_or_missing_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DataError, match=r"bad\.wav: unreadable audio"):
        read_audio(bad)
    with pytest.raises(DataError, match=r"nope\.wav: no such audio file"):
        read_audio(tmp_path / "nope.wav")


def test_pcm_is_raw_16_bit_samples_and_unknown_formats_are_named():
    wav = _tone(seconds=0.01)
    assert len(encode_audio(wav, 16000, "pcm")) == 2 * wav.size
    assert encode_audio(wav, 16000, "wav")[:4] == b"RIFF"
    with pytest.raises(ValueError, match="expected one of wav, flac, pcm"):
        encode_audio(wav, 16000, "mp3")
