"""`genforge generate` on an audio_lm checkpoint: --seconds of audio per --num-samples clip as
DIR/sample-I.wav + .png, --prompt-audio continued, one seed the same files; a bad prompt is one
line on stderr naming the file, exit status 2, no traceback."""
from __future__ import annotations

import pytest
import soundfile as sf
from audio_lm_helpers import RATE, audio_lm_config, tiny_codec, tone, tones

from genforge.cli import main
from genforge.data.audio import write_audio


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from genforge.train.log import RunLog
    from genforge.train.run import run

    root = tmp_path_factory.mktemp("audio_lm_cli")
    with pytest.MonkeyPatch.context() as mp:  # no loss PNG (a matplotlib subprocess) for a fixture
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        return run(audio_lm_config(tiny_codec(root / "codec"), tones(root / "tones"), root / "run", max_iters=10),
                   progress=False)


def test_generate_writes_a_wav_and_a_spectrogram_per_clip_and_one_seed_repeats(ckpt, tmp_path, capsys):
    args = ["generate", str(ckpt), "--seconds", "0.5", "--num-samples", "2", "--seed", "4"]
    assert main([*args, "--out", f"{tmp_path / 'a'}/"]) == 0
    out = capsys.readouterr().out
    assert "sample-0.wav (+ .png): 0.50 s" in out and "sample-1.wav" in out
    assert main([*args, "--out", f"{tmp_path / 'b'}/"]) == 0
    for i in range(2):
        a, rate = sf.read(tmp_path / "a" / f"sample-{i}.wav")
        assert rate == RATE and len(a) == RATE // 2 and (tmp_path / "a" / f"sample-{i}.png").stat().st_size > 0
        assert (tmp_path / "a" / f"sample-{i}.wav").read_bytes() == (tmp_path / "b" / f"sample-{i}.wav").read_bytes()


def test_generate_continues_an_audio_prompt(ckpt, tmp_path, capsys):
    prompt = tmp_path / "p.wav"
    write_audio(prompt, tone(0.1, 300), RATE)
    assert main(["generate", str(ckpt), "--prompt-audio", str(prompt), "--seconds", "0.25", "--seed", "0",
                 "--out", f"{tmp_path / 'c'}/"]) == 0
    assert "0.35 s (the first 0.10 s: the prompt)" in capsys.readouterr().out
    assert len(sf.read(tmp_path / "c" / "sample-0.wav")[0]) == int(0.35 * RATE)


@pytest.mark.parametrize("content,message", [
    (b"", "unreadable audio"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt broken", "unreadable audio"),
    (None, "the prompt is 1.00 s but the model's context holds 0.15 s"),
])
def test_a_bad_prompt_is_one_line_naming_the_file(ckpt, tmp_path, capsys, content, message):
    prompt = tmp_path / "bad.wav"
    if content is None:
        write_audio(prompt, tone(1.0, 300), RATE)
    else:
        prompt.write_bytes(content)
    assert main(["generate", str(ckpt), "--prompt-audio", str(prompt), "--seconds", "0.2",
                 "--out", f"{tmp_path / 'd'}/"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"genforge generate: error: {prompt}: ") and message in err and "\n" not in err


def test_a_bad_setting_is_one_line(ckpt, tmp_path, capsys):
    assert main(["generate", str(ckpt), "--seconds", "0", "--out", f"{tmp_path}/"]) == 2
    assert capsys.readouterr().err.strip() == "genforge generate: error: seconds=0: must be in (0, 600]"


@pytest.mark.parametrize("option,message", [
    (["--key", "C"], "--key: for symbolic music models"),
    (["--guidance", "3"], "--guidance: for text-to-image models"),
    (["--stop", "x"], "--stop: for text models"),
])
def test_an_option_another_kind_takes_is_refused_not_ignored(ckpt, tmp_path, capsys, option, message):
    assert main(["generate", str(ckpt), *option, "--seconds", "0.2", "--out", f"{tmp_path / 'e'}/"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "is a waveform model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e").exists()
