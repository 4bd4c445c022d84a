"""The acoustic model: the length regulator and the predicted durations add up to the frame count,
padding never changes a row's output, a tiny model overfits a few teacher sentences (and then
speaks them nearer to their own references than to each other's), training resumes exactly, and
fine-tuning adds a new voice to a trained one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genforge.cli import main
from genforge.models.tts import AcousticModel, TTSConfig, length_regulate

SENTENCES = ["Hello world, this is a small test.", "The quick brown fox jumps over the lazy dog.",
             "Now is the winter of our discontent.", "She sells sea shells by the sea shore."]
TINY = ["model.n_embd=32", "model.n_head=2", "model.n_enc_layer=1", "model.n_dec_layer=1", "model.dur_filter=32",
        "model.ffn_mult=2", "model.conv_kernel=3", "model.dropout=0.0", "data.batch_size=4", "data.val_fraction=0.0",
        "train.max_minutes=null", "train.warmup_iters=5", "train.log_interval=10", "train.eval_iters=1",
        "train.device=cpu", "train.dtype=float32", "train.weight_decay=0.0"]


def test_length_regulator_sums_to_the_frames():
    h = torch.randn(2, 4, 8)
    d = torch.tensor([[1, 0, 3, 2], [2, 2, 0, 0]])
    out, mask = length_regulate(h, d)
    assert out.shape == (2, 6, 8) and mask.sum(1).tolist() == [6, 4]
    assert torch.equal(out[0, :4], h[0, [0, 2, 2, 2]]) and torch.equal(out[0, 4:6], h[0, [3, 3]])
    assert torch.equal(out[1, :4], h[1, [0, 0, 1, 1]]) and (out[1, 4:] == 0).all()


def _model():
    torch.manual_seed(0)
    return AcousticModel(TTSConfig(phonemes=["a", "b", "c"], voices=["v0", "v1"], n_embd=16, n_head=2,
                                   n_enc_layer=1, n_dec_layer=1, dur_filter=16, dropout=0.0)).eval()


def test_predicted_durations_give_the_frame_count_and_speed_scales_them():
    model = _model()
    ids = torch.tensor([[1, 2, 3, 1, 0, 0]])
    mels, d = model.synthesize(ids, torch.tensor([0]), durations=torch.tensor([[2, 3, 1, 4, 0, 0]]))
    assert mels[0].shape == (80, 10)
    with torch.no_grad():
        model.duration.proj.bias.fill_(float(np.log1p(6.0)))  # about 6 frames per phoneme
        model.duration.proj.weight.zero_()
    mels, d = model.synthesize(ids, torch.tensor([1]))
    assert d.tolist() == [[6, 6, 6, 6, 0, 0]] and mels[0].shape[1] == int(d.sum())
    _, fast = model.synthesize(ids, torch.tensor([1]), speed=2.0)
    assert fast.tolist() == [[3, 3, 3, 3, 0, 0]]


def test_padding_does_not_change_a_row():
    model = _model()
    ids = torch.tensor([[1, 2, 3, 0, 0], [3, 3, 2, 1, 2]])
    d = torch.tensor([[2, 1, 3, 0, 0], [1, 1, 1, 1, 1]])
    both, _ = model.synthesize(ids, torch.tensor([0, 1]), durations=d)
    alone, _ = model.synthesize(ids[:1, :3], torch.tensor([0]), durations=d[:1, :3])
    torch.testing.assert_close(both[0], alone[0], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts")
    text = root / "lines.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    out = root / "run"
    args = ["train", "tts/espeak", *TINY, f"data.text={text}", "data.sentences=4", f"data.cache={root / 'cache'}",
            "data.voices=[en-us]", "train.max_iters=300", "train.eval_interval=300", "train.lr=3e-3",
            "train.min_lr=3e-4", f"train.out_dir={out}", "--no-progress"]
    assert main(args) == 0
    return out, args, root


def test_a_tiny_model_overfits_a_few_sentences(overfit):
    from genforge.data.speech import SpeechDataConfig, open_speech
    from genforge.eval.tts import dtw_distance
    from genforge.sample.speech import SpeechModel, phoneme_ids

    out, _, root = overfit
    model = SpeechModel.load(out, "cpu")
    data, _ = open_speech(SpeechDataConfig(text=str(root / "lines.txt"), sentences=4, cache=str(root / "cache"),
                                           voices=["en-us"], val_fraction=0.0), 22050)
    c = model.config
    made = []
    for i in range(len(data)):
        mel_ref = data.item(i)[2]
        ids = torch.tensor([phoneme_ids(c, data.texts[i], 0)])
        mels, d = model.model.synthesize(ids, torch.tensor([0]))
        assert abs(int(d.sum()) - len(mel_ref)) <= 0.15 * len(mel_ref)  # the durations were learnt
        made.append(mels[0].T.numpy())
    # each sentence's output is nearest to its own reference
    refs = [data.item(i)[2] for i in range(len(data))]
    for i, mel in enumerate(made):
        assert int(np.argmin([dtw_distance(mel, r) for r in refs])) == i


def test_training_resumes_exactly(tmp_path, overfit):
    _, args, _ = overfit
    base = [a for a in args if not a.startswith(("train.max_iters", "train.eval_interval", "train.out_dir"))]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main([*base, "train.max_iters=12", "train.eval_interval=6", f"train.out_dir={whole}"]) == 0
    assert main([*base, "train.max_iters=6", "train.eval_interval=6", f"train.out_dir={part}"]) == 0
    assert main([*base, "train.max_iters=12", "train.eval_interval=6", f"train.out_dir={part}", "--resume"]) == 0
    from safetensors.torch import load_file

    a, b = load_file(whole / "step-0000012" / "model.safetensors"), load_file(part / "step-0000012" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fine_tuning_adds_a_new_voice(tmp_path, overfit):
    out, args, _ = overfit
    new = tmp_path / "tuned"
    base = [a for a in args if not a.startswith(("train.max_iters", "train.out_dir", "data.voices", "model."))]
    assert main([*base, f"model.init={out}", "data.voices=[en+f3]", "train.max_iters=5", f"train.out_dir={new}"]) == 0
    config = json.loads((new / "step-0000005" / "config.json").read_text())["model"]
    assert config["voices"] == ["en-us", "en+f3"] and config["n_embd"] == 32
    from genforge.sample.speech import SpeechModel

    wav, rate = SpeechModel.load(new, "cpu").speak("Now is the winter.", "en+f3")
    assert rate == 22050 and len(wav) > 0.3 * rate


def test_a_trained_vocoder_is_bundled_frozen_and_speaks(tmp_path, overfit):
    from audio_clips import vowels
    from safetensors.torch import load_file

    from genforge.data.audio import write_audio
    from genforge.sample.speech import SpeechModel

    clips = tmp_path / "clips"
    for i in range(3):
        write_audio(clips / f"c{i}.wav", vowels(seconds=0.4, seed=i), 22050)
    (tmp_path / "vocoder.yaml").write_text("family: vocoder\n")
    voc = tmp_path / "voc"
    assert main(["train", str(tmp_path / "vocoder.yaml"), f"data.source={clips}", "data.segment=2048",
                 "data.batch_size=2", "model.dim=16", "model.hidden=32", "model.n_layer=1", "model.d_width=0",
                 "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1",
                 "train.device=cpu", "train.dtype=float32", f"train.out_dir={voc}", "--no-progress"]) == 0
    _, args, _ = overfit
    out = tmp_path / "bundled"
    base = [a for a in args if not a.startswith(("train.max_iters", "train.out_dir", "train.eval_interval"))]
    assert main([*base, f"model.vocoder={voc}", "train.max_iters=3", "train.eval_interval=3", f"train.out_dir={out}"]) == 0
    weights = load_file(out / "step-0000003" / "model.safetensors")
    generator = load_file(next(voc.glob("step-*")) / "g.safetensors")
    assert all(torch.equal(weights[f"vocoder.{k}"], v) for k, v in generator.items())  # copied in, never trained
    speaker = SpeechModel.load(out, "cpu")
    assert speaker.vocoder_name == "bundled"
    wav, rate = speaker.speak("Hello world.")
    assert rate == 22050 and np.isfinite(wav).all() and len(wav) > 0


@pytest.mark.parametrize("extra, words", [
    (["--text", "Now is the winter.", "--voice", "alloy"], "voice 'alloy': unknown; this model speaks default, en-us"),
    (["--text", "   "], "input: empty text"),
    (["--text", "a" * 401], "input: 401 characters; at most 400"),
    (["--text", "Hello 🙂"], "cannot read '🙂'"),
    (["--text", "Hello.", "--speed", "0"], "speed=0.0: expected 0.25 to 4.0"),
    (["--text", "Hello.", "--out", "say.mp3"], "audio is written as .wav or .flac"),
])
def test_speak_refuses_bad_input_in_one_line(overfit, tmp_path, capsys, extra, words):
    out, _, _ = overfit
    if "--out" not in extra:
        extra = [*extra, "--out", str(tmp_path / "say.wav")]
    assert main(["speak", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_speak_and_the_python_api(overfit, tmp_path, capsys):
    import soundfile as sf

    import genforge

    out, _, _ = overfit
    assert main(["speak", str(out), "--text", "Now is the winter of our discontent.", "--out", str(tmp_path / "a.wav")]) == 0
    assert "griffin-lim vocoder" in capsys.readouterr().out
    wav, rate = sf.read(tmp_path / "a.wav")
    tts = genforge.load(out)
    again, rate2 = tts.speak("Now is the winter of our discontent.", voice="default")
    assert rate == rate2 == 22050 and tts.voices == ["en-us"] and again.dtype == np.float32
    assert abs(len(again) - len(wav)) <= 256 and 1.0 < len(wav) / rate < 4.0


def test_sample_rate_is_a_choice(tmp_path):
    from genforge.sample.speech import SpeechModel

    (tmp_path / "lines.txt").write_text("Now is the winter of our discontent.\n")
    out = tmp_path / "run16k"
    assert main(["train", "tts/espeak", *TINY, "model.sample_rate=16000", f"data.text={tmp_path / 'lines.txt'}",
                 "data.sentences=2", f"data.cache={tmp_path / 'cache'}", "data.voices=[en-us]", "train.max_iters=2",
                 "train.eval_interval=2", f"train.out_dir={out}", "--no-progress"]) == 0
    wav, rate = SpeechModel.load(out, "cpu").speak("Now is the winter of our discontent.")
    assert rate == 16000 and wav.dtype == np.float32
