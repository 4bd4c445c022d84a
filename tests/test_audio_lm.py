"""The audio_lm family: codes flatten into level-tagged tokens and back; the sampler's sliding
context equals full forwards (where the window fits and after it slides); a fixed seed gives the
same audio bitwise; a prompt's codes start the sample; training resumes exactly; the bits of a
clip add up; bad prompts and codecs are one-line errors naming the file."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from audio_lm_helpers import RATE, audio_lm_config, tiny_codec, tone, tones
from safetensors.torch import load_file

from genforge.data.audio import write_audio
from genforge.errors import ConfigError, DataError
from genforge.models.audio_lm import AudioLM, AudioLMConfig, flatten, unflatten
from genforge.models.codec import CodecConfig
from genforge.sample.audio_lm import AudioLMModel, level_mask, save_samples, token_bits
from genforge.sample.text import stream_ids
from genforge.train.log import read_metrics
from genforge.train.run import run


@pytest.fixture(scope="module", autouse=True)
def no_loss_plots():
    """The loss PNG is drawn in a subprocess that imports matplotlib; these tests do not look at it."""
    from genforge.train.log import RunLog

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunLog, "plot", lambda self, path=None, wait=False: None)
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, no_loss_plots):
    """A tiny audio_lm trained 20 steps on five one-second tones through a random tiny codec."""
    root = tmp_path_factory.mktemp("audio_lm")
    codec = tiny_codec(root / "codec")
    source = tones(root / "tones")
    ckpt = run(audio_lm_config(codec, source, root / "run"), progress=False)
    return AudioLMModel.load(ckpt, "cpu"), root


def test_tokens_round_trip_through_the_flattening():
    codes = torch.randint(0, 16, (3, 4, 7))  # (B, n_q, F)
    tokens = flatten(codes, 16)  # (B, F * n_q)
    assert tokens.shape == (3, 28)
    assert tokens[0, :4].tolist() == [codes[0, q, 0].item() + 16 * q for q in range(4)]  # frame 0, level by level
    assert torch.equal(unflatten(tokens, 4, 16), codes)
    with pytest.raises(ValueError, match="whole frames"):
        unflatten(tokens[:, :-1], 4, 16)
    with pytest.raises(ValueError, match="level"):
        unflatten(tokens.roll(1, -1), 4, 16)  # every token one place late: not its position's level


def tiny_lm(block: int = 24) -> AudioLM:
    torch.manual_seed(1)
    codec = CodecConfig(sample_rate=RATE, channels=4, strides=[4, 5], dilations=[1], code_dim=8, n_q=2, codebook_size=16)
    return AudioLM(AudioLMConfig(codec_config=dataclasses.asdict(codec), block_size=block, n_layer=2, n_head=2,
                                 n_embd=32)).eval()


@pytest.mark.parametrize("steps", [20, 70])
def test_the_sliding_context_equals_full_forwards(steps):
    """Greedy tokens of the cached sampler equal those of a full forward over the same window at
    every step: all of it while it fits (20 steps < block 24), and the last half kept and
    prefilled again each time it fills (70 steps)."""
    model = tiny_lm()
    block, keep = 24, 12
    start = torch.tensor([[model.eot, 3, 16 + 5, 7]])
    mask = level_mask(model, torch.device("cpu"))
    cached = torch.stack(list(stream_ids(model.gpt, start, steps, temperature=0.0, processors=[mask])), 1)[0]
    seq, window = start[0].tolist(), start[0].tolist()
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([window]))[0][0, -1]
            nxt = int(mask(logits[None], torch.tensor([seq]))[0].argmax())
            seq.append(nxt)
            window = window + [nxt]
            if len(window) > block:
                window = window[-keep:]
    assert cached.tolist() == seq[4:]
    assert all(token // 16 == i % 2 for i, token in enumerate(seq[1:]))  # the levels alternate throughout


def test_a_fixed_seed_reproduces_a_sample_bitwise_and_another_seed_does_not(trained):
    model, _ = trained
    a = model.generate(2, 0.5, seed=7)
    b = model.generate(2, 0.5, seed=7)
    c = model.generate(2, 0.5, seed=8)
    for x, y in zip(a, b):
        assert np.array_equal(x.wav, y.wav) and np.array_equal(x.codes, y.codes)
    assert not np.array_equal(a[0].codes, c[0].codes)
    assert a[0].codes.shape == (2, 100) and a[0].wav.shape == (100 * 20,) and a[0].sample_rate == RATE


def test_generation_runs_past_the_context_and_continues_a_prompt(trained, tmp_path):
    model, _ = trained
    prompt = tmp_path / "p.wav"
    write_audio(prompt, tone(0.1, 300), RATE)  # 20 frames of the context's 31
    [sample] = model.generate(1, 2.0, prompt_audio=prompt, seed=1)  # 400 new frames: the window slides ~50 times
    want = model.prompt_codes(prompt)
    assert want.shape == (2, 20)
    assert np.array_equal(sample.codes[:, :20], want)  # the prompt's codes start the sample
    assert sample.codes.shape == (2, 420) and sample.prompt_seconds == pytest.approx(0.1)
    assert np.isfinite(sample.wav).all() and sample.seconds == pytest.approx(2.1)
    [paths] = save_samples([sample], tmp_path / "out")
    import soundfile as sf
    from PIL import Image

    wav, rate = sf.read(paths["wav"])
    assert rate == RATE and len(wav) == 420 * 20
    assert abs(Image.open(paths["png"]).size[0] - 210) <= 1  # ~100 columns a second


def test_training_resumes_exactly(tmp_path):
    codec = tiny_codec(tmp_path / "codec")
    source = tones(tmp_path / "tones")
    common = ("model.dropout=0.1", "train.lr_decay_iters=20")  # dropout: the RNG state must resume too
    straight = run(audio_lm_config(codec, source, tmp_path / "straight", *common, max_iters=20), progress=False)
    run(audio_lm_config(codec, source, tmp_path / "resumed", *common, max_iters=10), progress=False)
    resumed = run(audio_lm_config(codec, source, tmp_path / "resumed", *common, max_iters=20), resume=True,
                  progress=False)
    losses = [[v for _, name, v in read_metrics(d.parent / "metrics.csv") if name == "loss"] for d in (straight, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    a, b = (load_file(d / "model.safetensors") for d in (straight, resumed))
    assert a.keys() == b.keys() and any(k.startswith("codec.") for k in a)  # the codec is bundled
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_token_cache_is_reused_and_rebuilt_for_another_codec(tmp_path, capsys):
    codec = tiny_codec(tmp_path / "codec")
    source = tones(tmp_path / "tones")
    run(audio_lm_config(codec, source, tmp_path / "a", max_iters=1), progress=False)
    assert "encoding" in capsys.readouterr().err
    run(audio_lm_config(codec, source, tmp_path / "b", max_iters=1), progress=False)
    assert "encoding" not in capsys.readouterr().err
    run(audio_lm_config(codec, source, tmp_path / "c", "data.clips=3", max_iters=1), progress=False)
    assert "encoding" in capsys.readouterr().err


def test_the_bits_of_a_clip_are_the_codes_under_the_lm_and_the_samples_under_the_codec(trained):
    model, _ = trained
    wav = tone(0.5, 250)
    found = model.bits(np.concatenate([wav, wav[:7]]))  # the tail under one hop is left out
    assert found["samples"] == len(wav)
    m = model.model
    codes = torch.from_numpy(m.encode(torch.from_numpy(wav)[None])[0].numpy())
    tokens = torch.cat([torch.tensor([m.eot]), flatten(codes, m.codebook_size)])  # 201 tokens: windows slide
    with torch.no_grad():
        by_hand = 0.0
        for t in range(1, len(tokens)):  # each token after at most block_size earlier ones, by a full forward
            end = min(len(tokens), 65 + 32 * ((t - 65) // 32 + 1))  # windows of 64 inputs slide by 32
            ctx = tokens[:t] if t <= 64 else tokens[end - 65:t]
            logp = torch.log_softmax(m.gpt(ctx[None])[0][0, -1], -1)
            by_hand -= float(logp[tokens[t]]) / np.log(2)
    assert found["code_bits"] == pytest.approx(by_hand, rel=1e-5)
    assert token_bits(m.gpt, tokens) == pytest.approx(by_hand, rel=1e-5)
    want = float(m.codec.sample_bits(torch.from_numpy(wav)[None], codes[None])[0])
    assert found["sample_bits"] == pytest.approx(want)


def test_bad_prompts_are_one_line_errors_naming_the_file(trained, tmp_path):
    model, _ = trained
    long = tmp_path / "long.wav"
    write_audio(long, tone(1.0, 300), RATE)
    with pytest.raises(DataError, match=r"long\.wav: the prompt is 1\.00 s but the model's context holds 0\.15 s"):
        model.generate(1, 0.5, prompt_audio=long)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(DataError, match=r"corrupt\.wav: unreadable audio"):
        model.generate(1, 0.5, prompt_audio=corrupt)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.wav"):
        model.generate(1, 0.5, prompt_audio=empty)
    silent_frame = tmp_path / "short.wav"
    write_audio(silent_frame, tone(0.001, 300), RATE)
    with pytest.raises(DataError, match=r"short\.wav: the prompt is 4 samples, shorter than one codec frame"):
        model.generate(1, 0.5, prompt_audio=silent_frame)
    with pytest.raises(DataError, match=r"missing\.wav: no such audio file"):
        model.generate(1, 0.5, prompt_audio=tmp_path / "missing.wav")
    for kw, msg in [(dict(seconds=0), "seconds=0"), (dict(num_samples=0), "num_samples=0"),
                    (dict(top_k=17), "top_k=17"), (dict(temperature=-1), "temperature=-1")]:
        with pytest.raises(ConfigError, match=msg):
            model.generate(**{"seconds": 0.5, **kw})


def test_a_prompt_at_another_rate_is_resampled_with_a_warning(trained, tmp_path):
    model, _ = trained
    other = tmp_path / "8k.wav"
    write_audio(other, tone(0.1, 300, 8000), 8000)
    with pytest.warns(UserWarning, match=r"8k\.wav: resampling 8000 Hz to 4000 Hz"):
        [sample] = model.generate(1, 0.2, prompt_audio=other, seed=0)
    assert sample.codes.shape[1] == 20 + 40


def test_a_codec_that_is_missing_or_not_a_codec_is_a_config_error(trained, tmp_path):
    model, root = trained
    source = root / "tones"
    with pytest.raises(ConfigError, match="model.codec: required"):
        run(_no_codec(source, tmp_path), progress=False)
    with pytest.raises(ConfigError, match=r"model.codec=.*: an audio_lm checkpoint, not a codec"):
        run(audio_lm_config(model.path, source, tmp_path / "b"), progress=False)
    with pytest.raises(ConfigError, match=r"model.codec=.*nowhere"):
        run(audio_lm_config(tmp_path / "nowhere", source, tmp_path / "c"), progress=False)


def _no_codec(source, tmp_path):
    cfg = audio_lm_config(tmp_path / "x", source, tmp_path / "a")
    cfg.model.codec = ""
    return cfg
