"""The audio codec's interface (what an audio LM over its codes relies on): shapes of encode /
decode, bits of the samples given the codes against a hand computation from the head's logits, the
head's causality in the samples, exact sampling consistent with those logits, loading through the
one checkpoint loader, bad input."""
import math

import pytest
import torch

from genforge import checkpoint as ckpt_io
from genforge.errors import ConfigError, DataError
from genforge.models.codec import Codec, CodecConfig
from genforge.nn.mulaw import mu_law_decode, mu_law_encode

TINY = dict(channels=4, strides=[2, 4], dilations=[1], code_dim=8, n_q=2, codebook_size=16, context=4,
            head_hidden=16, head_layers=2)


def tiny(**kw) -> Codec:
    torch.manual_seed(0)
    return Codec(CodecConfig(**{**TINY, **kw})).eval()


def sine(n: int, rate: int = 16000, f: float = 440.0) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * f * torch.arange(n) / rate)


def test_encode_decode_shapes_and_attributes():
    model = tiny()
    assert (model.sample_rate, model.hop, model.n_q, model.codebook_size) == (16000, 8, 2, 16)
    wav = torch.stack([sine(100), sine(100, f=300.0)])  # 100 samples: 13 frames, padded with silence
    codes = model.encode(wav)
    assert codes.shape == (2, 2, 13) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    out = model.decode(codes)
    assert out.shape == (2, 13 * 8) and float(out.abs().max()) <= 1.0
    assert model.decode(codes[:, :1]).shape == (2, 104)  # the first level alone decodes
    assert CodecConfig().hop == 320 and CodecConfig().sample_rate / CodecConfig().hop == 50


def test_sample_bits_sum_the_heads_log_probabilities():
    model = tiny()
    wav = sine(64)[None]
    codes = model.encode(wav)
    bits = model.sample_bits(wav, codes)
    levels = mu_law_encode(wav)
    with torch.no_grad():
        out, feats = model.decoder(model.quantizer.decode(codes))
        logits = model.head_logits(out, feats, levels)  # (1, 64, 256)
    by_hand = -sum(math.log2(float(torch.softmax(logits[0, t].double(), 0)[levels[0, t]])) for t in range(64))
    assert bits.shape == (1,) and bits.dtype == torch.float64
    assert float(bits[0]) == pytest.approx(by_hand, rel=1e-5)
    # an untrained head: a Laplace around the linear extrapolation 2 x[t-1] - x[t-2], a few bits a sample
    assert 1.0 < float(bits[0]) / 64 < 16.0


def test_the_head_is_causal_in_the_samples():
    model = tiny()
    wav = sine(64)[None]
    codes = model.encode(wav)
    levels = mu_law_encode(wav)
    changed = levels.clone()
    changed[0, 40:] = 255 - changed[0, 40:]
    with torch.no_grad():
        out, feats = model.decoder(model.quantizer.decode(codes))
        a, b = model.head_logits(out, feats, levels), model.head_logits(out, feats, changed)
    assert torch.equal(a[:, :41], b[:, :41])  # sample 40's own value is not an input to its logits
    assert not torch.equal(a[:, 41:45], b[:, 41:45])  # the next `context` samples see it


def test_greedy_sampling_follows_the_teacher_forced_logits():
    model = tiny()
    codes = model.encode(sine(48)[None])
    drawn = model.sample(codes, temperature=0)
    assert drawn.shape == (1, 48)
    levels = mu_law_encode(drawn)
    assert torch.equal(mu_law_decode(levels), drawn)
    with torch.no_grad():
        out, feats = model.decoder(model.quantizer.decode(codes))
        logits = model.head_logits(out, feats, levels)
    assert torch.equal(logits.argmax(-1), levels)  # each sample was the argmax given the ones before it
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(model.sample(codes, generator=gen()), model.sample(codes, generator=gen()))


def test_mu_law_round_trip():
    x = torch.linspace(-1, 1, 1001)
    q = mu_law_encode(x)
    assert int(q.min()) == 0 and int(q.max()) == 255 and int(mu_law_encode(torch.zeros(()))) in (127, 128)
    assert torch.equal(mu_law_encode(mu_law_decode(torch.arange(256))), torch.arange(256))
    assert (mu_law_decode(q) - x).abs().max() < 0.0215  # half the coarsest step (0.0426, at full scale)
    assert (mu_law_encode(x.numpy()) == q.numpy()).all()


def test_a_codec_checkpoint_loads_through_the_one_loader(tmp_path):
    import dataclasses

    model = tiny()
    ckpt = ckpt_io.save_checkpoint(tmp_path / "codec", {"family": "codec", "model": dataclasses.asdict(model.config)},
                                   {"model": model})
    loaded = ckpt_io.load(ckpt)
    assert isinstance(loaded.model, Codec) and loaded.family.kind == "codec"
    wav = sine(80)[None]
    assert torch.equal(loaded.model.encode(wav), model.encode(wav))
    assert torch.equal(loaded.model.decode(model.encode(wav)), model.decode(model.encode(wav)))


def test_bad_input_is_a_one_line_error():
    model = tiny()
    with pytest.raises(DataError, match=r"expected a batch of waveforms \(B, N\)"):
        model.encode(torch.zeros(10))
    with pytest.raises(DataError, match="NaN or infinite"):
        model.encode(torch.full((1, 16), float("nan")))
    with pytest.raises(DataError, match="holds no samples"):
        model.encode(torch.zeros(1, 0))
    with pytest.raises(DataError, match=r"codes: values must be in \[0, 16\)"):
        model.decode(torch.full((1, 2, 3), 16))
    with pytest.raises(DataError, match="n_q <= 2"):
        model.decode(torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(DataError, match="the codes span 24"):
        model.sample_bits(torch.zeros(1, 20), torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="model.strides"):
        CodecConfig(strides=[])
    with pytest.raises(ConfigError, match="model.context=-1"):
        CodecConfig(context=-1)
