"""The codec trained: a tiny one overfits a sine sweep (reconstruction within a stated error, the
per-sample head far below 8 bits a sample, codebooks in use), `genforge train` resumes exactly
(weights, EMA codebooks and all), and the evaluation measures a run's held-out clips."""
import itertools
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genforge import checkpoint as ckpt_io
from genforge.cli import main
from genforge.data.audio import write_audio
from genforge.models.codec import Codec, CodecConfig
from genforge.objectives.codec import CodecObjective, measure

RATE = 8000


def sweep(n: int = 2048, lo: float = 200.0, hi: float = 2000.0) -> torch.Tensor:
    """An exponential sine sweep from lo to hi Hz over n samples at RATE, amplitude 0.5."""
    t = torch.arange(n, dtype=torch.float64) / RATE
    f = lo * (hi / lo) ** (t / t[-1])
    return (0.5 * torch.sin(2 * math.pi * torch.cumsum(f, 0) / RATE)).float()


def test_a_tiny_codec_overfits_a_sine_sweep():
    wav = sweep(1024)[None]
    torch.manual_seed(0)
    model = Codec(CodecConfig(sample_rate=RATE, channels=8, strides=[2, 4], dilations=[1, 3], code_dim=16, n_q=4,
                              codebook_size=32, context=4, head_hidden=32, head_positions=0))
    objective = CodecObjective(model)
    before = measure(model.eval(), [wav])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        loss, _ = objective.loss((wav.repeat(2, 1), torch.tensor(step)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = measure(model.eval(), [wav])
    # the stated error: the decoder's copy within 3 dB SNR (error energy under half the signal's),
    # log-mel L1 down by a third; the head's bits under 3.5 of the 8 a uniform guess needs
    assert before["snr_db"] < 0 < 3.0 < after["snr_db"], (before, after)
    assert after["mel_l1"] < 0.67 * before["mel_l1"], (before, after)
    assert before["head_bits"] > 7.5 and after["head_bits"] < 3.5, (before, after)
    assert after["bits_per_sample"] == pytest.approx(after["head_bits"] + math.log2(32) * 4 / 8)
    assert all(after[f"used_{i}"] > 0.5 for i in range(4)), after
    # each residual level leaves less than the one before
    out = model(wav)
    left = [float(out["stats"][f"residual_{i}"]) for i in range(4)]
    assert all(b < a for a, b in itertools.pairwise(left)), left


@pytest.fixture
def wav_folder(tmp_path):
    folder = tmp_path / "clips"
    for i in range(4):
        wav = sweep(4000, 100.0 * (i + 1), 1500.0).numpy() + 0.01 * np.random.default_rng(i).standard_normal(4000)
        write_audio(folder / f"s{i}.wav", wav.astype(np.float32), RATE)
    return folder


def _args(folder, out, iters):
    config = folder.parent / "codec.yaml"
    config.write_text("family: codec\n")
    return [str(config), f"data.source={folder}", "data.segment=512", "data.batch_size=2", "data.val_fraction=0.3",
            f"model.sample_rate={RATE}", "model.channels=4", "model.strides=[2,4]", "model.dilations=[1]",
            "model.code_dim=8", "model.n_q=2", "model.codebook_size=16", "model.context=4", "model.head_hidden=16",
            "model.head_positions=64", "model.quantizer_dropout=true", f"train.max_iters={iters}",
            "train.lr_decay_iters=6", "train.warmup_iters=1", "train.eval_interval=3", "train.eval_iters=1",
            "train.log_interval=1", "train.device=cpu", "train.dtype=float32", f"train.out_dir={out}", "--no-progress"]


def test_trains_through_genforge_train_resumes_exactly_and_evaluates(tmp_path, wav_folder, capsys):
    assert main(["train", *_args(wav_folder, tmp_path / "run", 6)]) == 0
    assert main(["train", *_args(wav_folder, tmp_path / "cut", 3)]) == 0
    assert main(["train", *_args(wav_folder, tmp_path / "cut", 6), "--resume"]) == 0
    a, b = (load_file(str(ckpt_io.resolve(tmp_path / d) / "model.safetensors")) for d in ("run", "cut"))
    assert {"quantizer.levels.0.codebook", "quantizer.levels.1.cluster_size"} <= set(a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    for name in ("head_bits", "val_snr_db", "val_bits_per_sample", "val_used_1", "perplexity_0"):
        assert name in metrics, name

    from genforge.eval.codec import evaluate_codec

    loaded = ckpt_io.load(tmp_path / "run")
    assert loaded.family.kind == "codec" and loaded.model.hop == 8
    values = evaluate_codec(loaded.model, loaded.config, n=1, seconds=0.25, sample_seconds=0.01)
    assert values["clips"] == 1 and values["seconds"] == 0.25
    assert 0 < values["head_bits"] < 9 and values["code_bits"] == pytest.approx(4 * 2 / 8)
    assert values["decode_rtf"] > 0 and values["sample_rtf"] > 0 and 0 < values["used_0"] <= 1
