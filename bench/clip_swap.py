"""The clip family's swap test at recipe scale: train clip/scenes on a scene vocabulary with and
without swapped hard negatives (model.swap_negatives), the same CPU-time budget each, then score
held-out relation scenes: how often the true caption ("a red circle above a blue square") beats
its swapped one ("a blue square above a red circle"), and the in-batch retrieval accuracy.

    python bench/clip_swap.py [--vocab digits] [--minutes 5] [--threads 1]

Last line: `swap_plain=… swap_negatives=… vocab=…`.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from genforge.eval.clipscore import load_clip, swap_accuracy
from genforge.families import family, resolve
from genforge.run_config import load_config


def train_and_score(vocab: str, negatives: bool, minutes: float, threads: int, out: str) -> float:
    cfg = load_config("clip/scenes", [f"data.source=builtin:scenes:{vocab}", f"model.swap_negatives={str(negatives).lower()}",
                                      f"train.max_minutes={minutes}", "train.max_iters=100000", "train.budget_clock=cpu",
                                      "train.eval_interval=100000", "train.log_interval=200", "train.device=cpu",
                                      f"train.threads={threads}", f"train.out_dir={out}"])
    ckpt = resolve(family("clip").run)(cfg, False, False)
    model, tokenizer = load_clip(ckpt)
    swap = swap_accuracy(model, tokenizer, vocab, n=1024, seed=0)
    print(f"vocab={vocab} swap_negatives={negatives}: held-out swap accuracy {swap:.3f} ({ckpt})", flush=True)
    return swap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", default="digits", choices=["shapes", "digits", "all"])
    p.add_argument("--minutes", type=float, default=5.0, help="CPU minutes of training per model")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        plain = train_and_score(args.vocab, False, args.minutes, args.threads, f"{tmp}/plain")
        negs = train_and_score(args.vocab, True, args.minutes, args.threads, f"{tmp}/negatives")
    print(f"swap_plain={plain:.3f} swap_negatives={negs:.3f} vocab={args.vocab}")


if __name__ == "__main__":
    main()
