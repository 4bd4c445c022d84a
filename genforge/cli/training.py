"""The `quickstart` and `train` verbs."""
from __future__ import annotations

import argparse
import os


def add_quickstart(sub):
    from genforge.quickstart import STEPS

    p = sub.add_parser("quickstart", help="one short run per modality on embedded data: "
                       + "; ".join(f"{s.name}: {s.what}" for s in STEPS.values()))
    p.add_argument("--out", default="runs/quickstart", help="output directory (default runs/quickstart)")
    names = ",".join(STEPS)
    p.add_argument("--only", type=lambda v: v.split(","), metavar="STEP[,STEP]", help=f"run only these steps ({names})")
    p.add_argument("--skip", type=lambda v: v.split(","), default=[], metavar="STEP[,STEP]", help="skip these steps")
    for step in STEPS.values():
        p.add_argument(step.flag, type=float, default=step.minutes, dest=f"minutes_{step.name}", metavar="M",
                       help=f"the {step.name} step's training time budget in minutes (default {step.minutes:g})")
    p.add_argument("--no-image", action="store_true", help=argparse.SUPPRESS)  # before --skip image existed
    p.add_argument("--no-progress", action="store_true", help="log lines instead of progress bars (for piped logs)")

    def run(a):
        from genforge.quickstart import quickstart

        minutes = {name: getattr(a, f"minutes_{name}") for name in STEPS}
        quickstart(a.out, a.only, a.skip + (["image"] if a.no_image else []), minutes, progress=not a.no_progress)

    p.set_defaults(func=run)


def add_train(sub):
    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="a YAML file of config overrides, or a named recipe shipped with genforge (e.g. lm/shakespeare_char)")
    p.add_argument("overrides", nargs="*", help="dotted overrides: model.n_layer=6 train.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in train.out_dir (its checkpoints and logs); without it, or "
                        "--resume, an existing run is refused")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--verify", action="store_true", help="check each data shard's sha256 against the manifest")

    def run(a):
        from genforge.run_config import load_config
        from genforge.train.run import claim_out_dir
        from genforge.train.run import run as train_run

        overrides = a.overrides + (["data.verify=true"] if a.verify else [])
        cfg = load_config(a.config, overrides)
        if os.environ.get("RANK", "0") == "0" or not a.overwrite:  # under torchrun, rank 0 clears the old run
            claim_out_dir(cfg.train.out_dir, a.resume, a.overwrite)
        ckpt = train_run(cfg, resume=a.resume, progress=not a.no_progress)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
            print(f"checkpoint: {ckpt}")

    p.set_defaults(func=run)
