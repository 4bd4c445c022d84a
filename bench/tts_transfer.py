"""Fine-tuning a trained speech model to a new voice vs training the same model from scratch, on
the same few minutes of that voice, for the same number of steps, in one process.

    python bench/tts_transfer.py --base runs/tts_espeak --voice en-us+m7 [--minutes 3] [--steps 300] [--n 20]

Both arms read the embedded teacher speaking sentences in --voice only, the first --minutes of its
training audio (data.minutes), and train --steps steps with the base's recipe and architecture;
the transfer arm starts from --base's weights (model.init: its new voice's embedding at the mean of
the trained ones), the scratch arm from a random initialisation. Both are scored on held-out
sentences in --voice (eval/tts.py, Griffin-Lim): MCD-DTW against the teacher, duration error and
discrimination. Last line: mcd_transfer_db=... mcd_scratch_db=... discrim_transfer=... discrim_scratch=...
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge import checkpoint
from genforge.cpu import isa
from genforge.eval.tts import evaluate_speech
from genforge.run_config import build_run_config
from genforge.sample.speech import griffin_lim_vocoder
from genforge.train.run import run


def arm(base_cfg: dict, out: Path, voice: str, minutes: float, steps: int, init: str) -> Path:
    # about 3 s a sentence: enough sentences for the minutes, not the base's thousands
    data = {**base_cfg["data"], "voices": [voice], "minutes": minutes, "sentences": max(40, int(minutes * 60 / 2))}
    raw = {**base_cfg, "data": data,
           "train": {**base_cfg["train"], "max_iters": steps, "max_minutes": None, "eval_interval": steps,
                     "warmup_iters": min(50, steps // 10), "out_dir": str(out), "threads": 1}}
    if init:
        raw["model"] = {**raw["model"], "init": init}
    model = {k: v for k, v in raw["model"].items() if k not in ("phonemes", "voices", "accents", "vocoder_config")}
    raw["model"] = model
    return run(build_run_config(raw), progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--voice", default="en-us+m7")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"{isa.describe()}; torch threads 1", flush=True)
    base = checkpoint.load(args.base)
    cfg = dict(base.config["run"])
    cfg.pop("method", None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, init in (("transfer", str(base.path)), ("scratch", "")):
            t0 = time.process_time()
            ckpt = arm(cfg, Path(tmp) / name, args.voice, args.minutes, args.steps, init)
            seconds = time.process_time() - t0
            model = checkpoint.load(ckpt).model
            found = evaluate_speech(model, {"griffinlim": griffin_lim_vocoder(model.config.sample_rate)},
                                    ("mcd", "duration", "discrim"), args.n, voices=[args.voice])
            results[name] = found
            print(f"{name:>8}: {args.steps} steps in {seconds / 60:.1f} CPU-min; mcd_dtw {found['mcd_db']:.2f} dB  "
                  f"discrim {found['discrim']:.3f}  duration error {found['dur_err_ms']:.1f} ms  oov {found['oov']:.3f}",
                  flush=True)
    t, s = results["transfer"], results["scratch"]
    print(f"mcd_transfer_db={t['mcd_db']:.2f} mcd_scratch_db={s['mcd_db']:.2f} "
          f"discrim_transfer={t['discrim']:.3f} discrim_scratch={s['discrim']:.3f}")


if __name__ == "__main__":
    main()
