"""Music sampling: a tiny GPT overfits a few bars and plays them back; a fixed seed gives the
same pieces; conditions are written as asked; prompts are continued; the outputs (.mid, a
non-silent .wav of the expected length, a piano roll) are written; training resumes exactly;
bad prompts and conditions are one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from music_files import tune_notes, write_folder, write_midi
from safetensors.torch import load_file

from genforge.cli import main
from genforge.data.music_sources import from_score, read_midi
from genforge.errors import ConfigError, DataError
from genforge.run_config import load_config
from genforge.sample import render
from genforge.sample.music import MusicModel, save_samples
from genforge.train.log import read_metrics
from genforge.train.run import run


def music_config(source, out, *extra, max_iters=150):
    return load_config(None, [
        "family=music", f"data.source={source}", "data.batch_size=8", "data.val_fraction=0.0",
        "model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.block_size=96", "model.dropout=0.0",
        "model.bias=false", f"train.max_iters={max_iters}", "train.warmup_iters=10", "train.lr=3e-3",
        "train.eval_interval=50", "train.eval_iters=1", "train.log_interval=10", "train.device=cpu",
        "train.dtype=float32", f"train.out_dir={out}", *extra])


@pytest.fixture(scope="module", autouse=True)
def no_loss_plots():
    """The loss PNG is drawn in a subprocess that imports matplotlib; these tests do not look at it."""
    from genforge.train.log import RunLog

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        yield


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, no_loss_plots):
    """A tiny music GPT trained on one two-bar tune until it knows it by heart."""
    root = tmp_path_factory.mktemp("music")
    write_midi(root / "tune" / "c_major.mid", tune_notes("c_major", 2))
    ckpt = run(music_config(root / "tune", root / "run"), progress=False)
    return MusicModel.load(ckpt, "cpu"), read_midi(root / "tune" / "c_major.mid", "tune")


def test_a_tiny_model_overfits_a_few_bars_and_plays_them_back(overfit):
    model, tune = overfit
    [sample] = model.generate(1, 200, temperature=0.0, key="C", meter="4/4", tempo=120, instrument=0, style="tune")
    assert sample.ids[-1] == model.vocab.eos
    notes = from_score(sample.score, "s", "").notes
    np.testing.assert_array_equal(notes[:, :3], tune.notes[:, :3])
    assert sample.conditions == {"key": "C", "meter": "4/4", "tempo": "120", "instrument": "0", "style": "tune"}


def test_a_fixed_seed_reproduces_the_samples_and_conditions_are_drawn_from_their_own_tokens(overfit):
    model, _ = overfit
    a = model.generate(3, 40, seed=7)
    b = model.generate(3, 40, seed=7)
    assert [s.ids for s in a] == [s.ids for s in b]
    for s in a:
        assert set(s.conditions) == {"key", "meter", "tempo", "instrument", "style"}


def test_a_prompt_is_continued_and_its_bars_kept(overfit, tmp_path):
    model, tune = overfit
    prompt = write_midi(tmp_path / "p.mid", tune_notes("c_major", 2))
    [sample] = model.generate(1, 200, temperature=0.0, prompt_midi=prompt, bars=1, style="tune")
    notes = from_score(sample.score, "s", "").notes
    np.testing.assert_array_equal(notes[:, :3], tune.notes[:, :3])  # bar 1 given, bar 2 recalled
    assert sample.conditions["key"] == "C" and sample.conditions["tempo"] == "120"


def test_outputs_are_midi_a_non_silent_wav_of_the_expected_length_and_a_piano_roll(overfit, tmp_path):
    model, tune = overfit
    [sample] = model.generate(1, 200, temperature=0.0, key="C", meter="4/4", tempo=120, instrument=0, style="tune")
    [paths] = save_samples([sample], tmp_path)
    assert {p.name for p in paths.values()} == {"sample-0.mid", "sample-0.wav", "sample-0.png"}
    from genforge.data.audio import read_audio

    wav, rate = read_audio(paths["wav"])
    # two bars of 4/4 at 120 quarter notes a minute = 4 s, then the release tail
    assert rate == render.SAMPLE_RATE and len(wav) == pytest.approx((4.0 + render.TAIL_SECONDS) * rate, abs=rate * 0.01)
    assert np.sqrt(np.mean(wav[: 4 * rate] ** 2)) > 0.01
    np.testing.assert_array_equal(read_midi(paths["mid"], "").notes[:, :3], tune.notes[:, :3])
    from PIL import Image

    assert Image.open(paths["png"]).size[1] > 20


def test_bad_prompts_and_conditions_are_one_line_errors(overfit, tmp_path):
    model, _ = overfit
    long_prompt = write_midi(tmp_path / "long.mid", tune_notes("c_major", 8))
    with pytest.raises(DataError, match=r"long.mid: the prompt is \d+ tokens but the model's context is 96; pass --bars"):
        model.generate(1, 10, prompt_midi=long_prompt)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(DataError, match=r"bad.mid: unreadable MIDI"):
        model.generate(1, 10, prompt_midi=bad)
    with pytest.raises(ConfigError, match=r"--key='X#m'"):
        model.generate(1, 10, key="X#m")
    with pytest.raises(ConfigError, match=r"--meter='7/4': unknown meter"):
        model.generate(1, 10, meter="7/4")
    with pytest.raises(ConfigError, match=r"--bars: needs --prompt-midi"):
        model.generate(1, 10, bars=2)


def test_generate_cli_writes_mid_wav_png_per_sample_and_errors_in_one_line(overfit, tmp_path, capsys):
    model, _ = overfit
    out = tmp_path / "out"
    assert main(["generate", str(model.path), "--num-samples", "2", "--max-new-tokens", "30", "--seed", "1",
                 "--key", "G", "--out", f"{out}/"]) in (0, None)
    names = {p.name for p in out.iterdir()}
    assert {"sample-0.mid", "sample-0.wav", "sample-1.mid", "sample-1.wav"} <= names  # + .png where notes were drawn
    assert "key G" in capsys.readouterr().out
    assert main(["generate", str(model.path), "--key", "H", "--out", f"{out}/"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--key='H': unknown key" in err and len(err.splitlines()) == 1


def test_music_training_resumes_exactly(tmp_path):
    source = write_folder(tmp_path / "m")
    extra = ("data.transpose=3", "model.dropout=0.1", "train.eval_interval=3", "train.log_interval=1")
    full = run(music_config(source, tmp_path / "full", *extra, max_iters=6), progress=False)
    run(music_config(source, tmp_path / "cut", *extra, max_iters=3), progress=False)
    resumed = run(music_config(source, tmp_path / "cut", *extra, max_iters=6), resume=True, progress=False)
    a, b = (load_file(str(p / "model.safetensors")) for p in (full, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def rows(r):
        return [(s, v) for s, name, v in read_metrics(tmp_path / r / "metrics.csv") if name == "loss"]

    assert rows("full") == rows("cut") and len(rows("full")) > 0
