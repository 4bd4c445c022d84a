"""The neural vocoder vs Griffin–Lim on held-out clips, side by side in one process.

    python bench/vocoder.py --ckpt runs/vocoder_espeak [--clips 20] [--threads 2] [--repeats 3]

Both invert the same log-mel frames of each held-out clip of the checkpoint's own data (for
builtin:espeak, teacher sentences its training never saw): the vocoder checkpoint's generator,
and Griffin–Lim (nn/mel.py: NNLS mel -> linear magnitude, 32 fast iterations, momentum 0.99).
Quality: MCD-DTW in dB against the original clip (eval/audio_metrics.py), the mean over clips.
Speed: the real-time factor, generation seconds per second of audio (median of --repeats timings
per clip, clips alternating vocoder / Griffin–Lim), on --threads torch threads, beside the CPU
seconds per audio second (which other processes on a shared machine do not inflate). The last line is
    mcd_vocoder_db=... mcd_griffinlim_db=... rtf=... (rtf: the vocoder's)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge import checkpoint as ckpt_io
from genforge.config import from_dict
from genforge.cpu import isa
from genforge.data.audio_batches import AudioDataConfig, open_audio
from genforge.eval.audio_metrics import mcd_dtw
from genforge.nn.mel import griffin_lim
from genforge.sample.vocode import load_vocoder


def timed(fn, repeats: int):
    """(fn's result, median wall seconds, median CPU seconds of this process: all its threads)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return out, statistics.median(walls), statistics.median(cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="runs/vocoder_espeak", help="a vocoder checkpoint or run directory")
    p.add_argument("--clips", type=int, default=20, help="held-out clips to score (at most the data's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    p.add_argument("--repeats", type=int, default=3, help="timings per clip and side (the median is kept)")
    p.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"{isa.describe()}; torch threads {a.threads}", flush=True)
    path = ckpt_io.resolve(a.ckpt)
    g = load_vocoder(path)
    cfg = g.mel_config
    run = ckpt_io.read_config(path).get("run", {})
    data = from_dict(AudioDataConfig, run.get("data") or {}, "data")
    _, val = open_audio(data, cfg.sample_rate)
    clips = [c[: len(c) // cfg.hop_length * cfg.hop_length] for c in val.clips[: a.clips]]
    print(f"{path}: {sum(p.numel() for p in g.parameters()) / 1e6:.2f} M parameters, {cfg.sample_rate} Hz; "
          f"{len(clips)} held-out clips of {data.source}, {sum(map(len, clips)) / cfg.sample_rate:.1f} s", flush=True)
    rows = []
    for clip in clips:
        wav = torch.from_numpy(clip)
        with torch.no_grad():
            mel = g.feats(wav)
        ours, t_ours, c_ours = timed(lambda: g.vocode(mel), a.repeats)  # noqa: B023
        gl, t_gl, c_gl = timed(lambda: griffin_lim(mel, cfg, n_iter=a.gl_iters), a.repeats)  # noqa: B023
        rows.append((mcd_dtw(clip, ours.numpy(), cfg), mcd_dtw(clip, gl.numpy(), cfg), t_ours, t_gl,
                     len(clip) / cfg.sample_rate, c_ours, c_gl))
    seconds = sum(r[4] for r in rows)
    mcd_ours, mcd_gl = (statistics.mean(r[i] for r in rows) for i in (0, 1))
    rtf_ours, rtf_gl, cpu_ours, cpu_gl = (sum(r[i] for r in rows) / seconds for i in (2, 3, 5, 6))
    # on a shared machine the wall clock counts other processes' turns too; CPU seconds do not
    print(f"CPU seconds per audio second (all threads): vocoder {cpu_ours:.4f}, griffin-lim {cpu_gl:.4f} "
          f"({cpu_gl / cpu_ours:.1f}x); load average {os.getloadavg()[0]:.1f}")
    print(f"vocoder:     MCD {mcd_ours:.3f} dB (per clip {min(r[0] for r in rows):.2f}..{max(r[0] for r in rows):.2f}), "
          f"RTF {rtf_ours:.4f} ({1 / rtf_ours:.0f}x faster than real time)")
    print(f"griffin-lim: MCD {mcd_gl:.3f} dB (per clip {min(r[1] for r in rows):.2f}..{max(r[1] for r in rows):.2f}), "
          f"RTF {rtf_gl:.4f} ({1 / rtf_gl:.0f}x faster than real time)")
    print(f"mcd_vocoder_db={mcd_ours:.3f} mcd_griffinlim_db={mcd_gl:.3f} rtf={rtf_ours:.4f}")


if __name__ == "__main__":
    main()
