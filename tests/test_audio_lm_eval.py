"""`genforge eval` of waveform checkpoints: an audio_lm prints the bits per sample of its held-out
clips, equal to AudioLMModel.bits on the same clips, and the Fréchet audio distance of its samples
(--metrics fad, with a tiny judge); a codec prints eval/codec.py's groups; an unknown metric, or
--file, is one line naming what the kind has."""
from __future__ import annotations

import json

import numpy as np
import pytest
from audio_lm_helpers import RATE, audio_lm_config, tiny_codec, tone
from fad_helpers import tiny_judge

from genforge.cli import main
from genforge.data.audio import write_audio


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An audio_lm trained 4 steps on eight 4 s tones (half held out by the path's hash), its codec, a tiny judge."""
    from genforge.train.log import RunLog
    from genforge.train.run import run

    root = tmp_path_factory.mktemp("audio_lm_eval")
    for i in range(8):
        write_audio(root / "tones" / f"tone{i}.wav", tone(4.0, 150 + 40 * i), RATE)
    codec = tiny_codec(root / "codec")
    with pytest.MonkeyPatch.context() as mp:  # no loss PNG (a matplotlib subprocess) for a fixture
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        ckpt = run(audio_lm_config(codec, root / "tones", root / "run", "data.val_fraction=0.5", max_iters=4),
                   progress=False)
    return {"ckpt": ckpt, "codec": codec, "tones": root / "tones", "judge": tiny_judge(root / "judge")}


def _eval(capsys, *args) -> dict:
    assert main(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bits_per_sample_are_the_models_bits_on_the_held_out_clips(setup, capsys):
    from genforge.eval.codec import heldout_clips
    from genforge.sample.audio_lm import AudioLMModel

    out = _eval(capsys, setup["ckpt"])
    model = AudioLMModel.load(setup["ckpt"], "cpu")
    clips = heldout_clips(model.config, RATE, model.model.hop, 10, 3600.0)
    found = [model.bits(c.numpy()) for c in clips]
    samples = sum(f["samples"] for f in found)
    code, sample = sum(f["code_bits"] for f in found) / samples, sum(f["sample_bits"] for f in found) / samples
    assert out["clips"] == len(clips) >= 2 and out["seconds"] == pytest.approx(samples / RATE, abs=0.01)
    assert out["code_bits_per_sample"] == pytest.approx(code, rel=1e-6)
    assert out["sample_bits_per_sample"] == pytest.approx(sample, rel=1e-6)
    assert out["bits_per_sample"] == pytest.approx(code + sample, rel=1e-6)
    assert main(["eval", str(setup["ckpt"]), "--num-samples", "1"]) == 0
    assert "bits_per_sample" in capsys.readouterr().out


def test_fad_compares_generated_clips_with_the_held_out_ones(setup, capsys):
    out = _eval(capsys, setup["ckpt"], "--metrics", "bits,fad", "--judge", setup["judge"], "--num-samples", "3")
    assert out["fad_windows"] == 3 and out["generated_clips"] == 1 and out["clips"] == 3
    assert np.isfinite(out["fad"]) and out["fad"] >= 0 and out["fad_halves"] >= 0
    assert 0 <= out["judge_chroma_f1"] <= 1 and out["judge_windows"] > 0


def test_a_codec_prints_the_groups_asked(setup, capsys):
    out = _eval(capsys, setup["codec"], "--data", setup["tones"], "--metrics", "reconstruction,codes")
    assert {"mel_l1", "snr_db", "used_0", "perplexity_1", "clips"} <= set(out)
    assert not {"bits_per_sample", "decode_rtf"} & set(out)
    out = _eval(capsys, setup["codec"], "--data", setup["tones"], "--metrics", "bits", "--num-samples", "2")
    assert out["clips"] == 2 and out["bits_per_sample"] == pytest.approx(out["head_bits"] + out["code_bits"])


@pytest.mark.parametrize("which,args,message", [
    ("ckpt", ["--metrics", "bits,nope"], "--metrics nope: an audio_lm model has bits, fad"),
    ("codec", ["--metrics", "fad"], "--metrics fad: a codec has reconstruction, bits, codes, rtf"),
    ("ckpt", ["--file", "x.txt"], "--file scores text; a waveform model is measured on audio"),
])
def test_a_bad_metric_or_input_is_one_line(setup, capsys, which, args, message):
    assert main(["eval", str(setup[which]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genforge eval: error: ") and message in err and "\n" not in err
