"""Waveform music on the embedded chorales: bits per sample of the codec + codec-token LM against the
2nd-order context floor, and the real-time factor of generating 10 s, in one run.

    python bench/audio_codec.py [--codec-minutes 7] [--lm-minutes 3] [--threads 2] [--work /tmp/audio_codec]

Data: music21's Bach chorales rendered offline at 16 kHz (builtin:chorales_audio,
data/chorale_audio.py): the first 40 training and 10 held-out chorales in corpus order
(chorale_split). Only the 40 are written to WORK/train and trained on; the 10 are the test set.

The floor, counted in this run: a 2nd-order context model p(x_t | x_{t-1}, x_{t-2}) over 8-bit
mu-law levels (nn/mulaw.py, the alphabet the codec's per-sample head uses), counted on the 40
training chorales, additive smoothing (count + alpha) / (context count + 256 alpha) with alpha the
best of ALPHAS on 8 of the 40 held out from the counts (the chosen alpha is printed); a piece's
first two samples see silence before them. It is evaluated on the 10 test chorales.

The model: `genforge train codec/chorales` then `genforge train audio_lm/chorales` on WORK/train,
each on a CPU-time budget (train.max_minutes with train.budget_clock=cpu, torch threads 1), 4 of
the 40 pieces held out for their validation (data.val_fraction=0.1, by a hash of the file name).
Bits per sample on test = (bits of the codes under the LM + the codec's sample_bits, the samples
given the codes) / samples, over the test chorales' whole frames. The real-time factor: seconds of
generating 10 s of audio (1 clip, unconditional, codes then the codec's decoder) per second of
audio, median of 3 after a warm-up, on --threads torch threads, beside the CPU seconds per audio
second (which other processes on a shared machine do not inflate). The last line is
    bits_per_sample=... floor=... rtf=...
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.data.audio import write_audio
from genforge.data.chorale_audio import chorale_split
from genforge.nn.mulaw import LEVELS, mu_law_encode
from genforge.run_config import load_config
from genforge.sample.audio_lm import AudioLMModel
from genforge.train.run import run

RATE = 16000
ALPHAS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


def contexts(wav: np.ndarray) -> np.ndarray:
    """The (x_{t-2}, x_{t-1}, x_t) cell index of every sample of wav, silence before the first."""
    q = mu_law_encode(wav)
    silence = int(mu_law_encode(np.zeros(())))
    p = np.concatenate([[silence, silence], q])
    return (p[:-2] * LEVELS + p[1:-1]) * LEVELS + p[2:]


def counts(wavs: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(LEVELS ** 3, dtype=np.int64)
    for w in wavs:
        total += np.bincount(contexts(w), minlength=LEVELS ** 3)
    return total


def context_bits(table: np.ndarray, wavs: list[np.ndarray], alpha: float) -> tuple[float, int]:
    """(total bits, samples) of wavs under the smoothed 2nd-order model of the counts `table`."""
    per_context = table.reshape(-1, LEVELS).sum(1)  # (256 * 256,)
    bits, n = 0.0, 0
    for w in wavs:
        cells = contexts(w)
        p = (table[cells] + alpha) / (per_context[cells // LEVELS] + LEVELS * alpha)
        bits -= float(np.log2(p).sum())
        n += len(cells)
    return bits, n


def floor(train: list[np.ndarray], test: list[np.ndarray]) -> tuple[float, float]:
    """(bits per sample of the test pieces, alpha): alpha chosen on the last 8 training pieces with
    the first 32 counted, then the model counted on all 40."""
    fit = counts(train[:-8])
    scores = {a: context_bits(fit, train[-8:], a) for a in ALPHAS}
    alpha = min(ALPHAS, key=lambda a: scores[a][0] / scores[a][1])
    bits, n = context_bits(counts(train), test, alpha)
    return bits / n, alpha


def train_models(work: Path, train_dir: Path, codec_minutes: float, lm_minutes: float, codec: str | None) -> Path:
    """The audio_lm checkpoint trained on train_dir (after the codec, unless one is given)."""
    budget = ["train.budget_clock=cpu", "train.threads=1", "data.val_fraction=0.1"]
    if codec is None:
        t0 = time.process_time()
        cfg = load_config("codec/chorales", [f"data.source={train_dir}", "data.clips=0",
                                             f"train.max_minutes={codec_minutes}", *budget,
                                             f"train.out_dir={work / 'codec'}", "train.max_iters=1000000"])
        codec = str(run(cfg, progress=False))
        print(f"codec: {codec} in {time.process_time() - t0:.0f} CPU-s", flush=True)
    t0 = time.process_time()
    cfg = load_config("audio_lm/chorales", [f"model.codec={codec}", f"data.source={train_dir}",
                                            f"data.path={work / 'tokens'}", f"train.max_minutes={lm_minutes}", *budget,
                                            f"train.out_dir={work / 'audio_lm'}", "train.max_iters=1000000"])
    ckpt = run(cfg, progress=False)
    print(f"audio_lm: {ckpt} in {time.process_time() - t0:.0f} CPU-s (encoding included)", flush=True)
    return ckpt


def real_time_factor(model: AudioLMModel, seconds: float, repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per second of audio generated, medians."""
    model.generate(1, 1.0, seed=0)  # warm-up
    walls, cpus = [], []
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        [clip] = model.generate(1, seconds, seed=i)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls) / clip.seconds, statistics.median(cpus) / clip.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/audio_codec", help="where the training pieces and the runs go")
    p.add_argument("--codec-minutes", type=float, default=7.0, help="CPU-minutes of codec training")
    p.add_argument("--lm-minutes", type=float, default=3.0, help="CPU-minutes of audio_lm training")
    p.add_argument("--codec", help="a codec checkpoint trained on WORK/train (skips the codec's training)")
    p.add_argument("--lm", help="an audio_lm checkpoint trained on WORK/train (skips all training)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the real-time factor")
    p.add_argument("--seconds", type=float, default=10.0, help="audio generated per timing")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{isa.describe()}; torch threads 1 for training and bits, {args.threads} for the real-time factor", flush=True)
    work = Path(args.work)
    train, train_names, test, test_names = chorale_split(RATE, 40, 10)
    train_dir = work / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    for name, wav in zip(train_names, train):
        write_audio(train_dir / (name.replace("/", "_") + ".wav"), wav, RATE)
    n_test = sum(len(w) for w in test)
    print(f"data: {len(train)} training chorales ({sum(map(len, train)) / RATE / 60:.1f} min), {len(test)} test "
          f"({n_test / RATE / 60:.1f} min): {', '.join(test_names)}", flush=True)
    floor_bits, alpha = floor(train, test)
    print(f"floor: 2nd-order context model on 8-bit mu-law, add-{alpha:g} smoothing: {floor_bits:.3f} bits/sample", flush=True)
    ckpt = args.lm or train_models(work, train_dir, args.codec_minutes, args.lm_minutes, args.codec)
    model = AudioLMModel.load(ckpt, "cpu")
    m = model.model
    code_bits = sample_bits = samples = 0.0
    for wav in test:
        found = model.bits(wav)
        code_bits += found["code_bits"]
        sample_bits += found["sample_bits"]
        samples += found["samples"]
    bound = m.n_q * math.log2(m.codebook_size) / m.hop
    print(f"test: codes {code_bits / samples:.4f} bits/sample under the LM (uniform codes: {bound:.4f}), samples given "
          f"the codes {sample_bits / samples:.4f}; {m.n_q} levels x {m.codebook_size} codes at "
          f"{m.sample_rate / m.hop:g} frames/s; GPT {m.num_params() / 1e6:.2f}M parameters", flush=True)
    torch.set_num_threads(args.threads)
    rtf, cpu_rtf = real_time_factor(model, args.seconds, args.repeats)
    print(f"real-time factor: {rtf:.3f} generating {args.seconds:g} s on {args.threads} threads "
          f"({1 / rtf:.1f}x real time); CPU seconds per audio second {cpu_rtf:.3f} (all threads; "
          "other processes on a shared machine inflate the wall time, not this)", flush=True)
    print(f"bits_per_sample={(code_bits + sample_bits) / samples:.3f} floor={floor_bits:.2f} rtf={rtf:.3f}")


if __name__ == "__main__":
    main()
