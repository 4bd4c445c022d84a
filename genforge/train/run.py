"""`genforge train`: from a RunConfig to a trained checkpoint, for each family."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from genforge import checkpoint as ckpt_io
from genforge.config import RunConfig
from genforge.data.batches import TokenBatches
from genforge.data.shards import TokenData
from genforge.device import resolve_device
from genforge.errors import ConfigError
from genforge.families import family, resolve
from genforge.objectives.lm import LMObjective
from genforge.train import dist as dist_mod
from genforge.train.loop import train


def run(cfg: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train the run described by cfg with the runner the family table names for its family (or
    its method); return the final checkpoint directory."""
    fam = family(cfg.family)
    ref = fam.methods[cfg.method].run if cfg.method else fam.run
    if not ref:
        raise ConfigError(f"family={cfg.family!r}: `genforge train` does not train this family "
                          "(`genforge finetune` fine-tunes its checkpoints)")
    return resolve(ref)(cfg, resume, progress)


RUN_FILES = ("latest", "best", "metrics.csv", "loss.png", "tensorboard")  # besides step-N/ and its temporaries


def claim_out_dir(out: str | Path, resume: bool, overwrite: bool) -> None:
    """Make sure a run may write into out: with resume it continues the run there; a directory
    that already holds a run's checkpoints is refused (ConfigError naming --resume and
    --overwrite) unless overwrite, which first removes that run's checkpoints and logs (the files
    genforge wrote there, nothing else)."""
    if resume and overwrite:
        raise ConfigError("--resume continues the run in train.out_dir, --overwrite replaces it: pass one of them")
    out = Path(out)
    ckpts = sorted(out.glob("step-*")) if out.is_dir() else []
    if resume or not (ckpts or (out / "latest").is_symlink()):
        return
    if not overwrite:
        latest = (out / "latest").resolve().name if (out / "latest").exists() else ckpts[-1].name
        raise ConfigError(f"{out}: already holds a run (latest: {latest}); pass --resume to continue it, "
                          "--overwrite to replace it, or choose another train.out_dir")
    for path in [*ckpts, *out.glob(".step-*.tmp-*"), *(out / name for name in RUN_FILES)]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_symlink() or path.exists():
            path.unlink()


def run_lm(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """A decoder language model on prepared token shards."""
    dist, device = dist_mod.init(resolve_device(cfg.train.device))  # under torchrun: one process per device
    if not dist.main:  # rank 0 prepares the data on first use; the others wait, then open it
        dist_mod.barrier(dist)
    data = open_token_data(cfg)
    if dist.main:
        dist_mod.barrier(dist)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = data.vocab_size
    elif cfg.model.vocab_size < data.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the data's vocabulary "
                          f"({data.vocab_size} tokens in {data.path / 'manifest.json'})")
    check_trainable(cfg, device, dist.world)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed, not whatever ran before
    model = family(cfg.family).build(cfg.model)
    batches = TokenBatches(data, cfg.data.batch_size, cfg.model.block_size, cfg.train.seed, device,
                           rank=dist.rank, world=dist.world)
    summary = {k: data.manifest[k] for k in ("dtype", "vocab_size", "eot_id", "tokenizer_kind", "source") if k in data.manifest}
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": "tokenizer.json",
              # absolute, so `genforge eval CKPT` finds the data from any working directory
              "data": {"path": str(data.path.resolve()), **summary}, "run": cfg.to_dict()}
    return train(LMObjective(model), batches, cfg.train, Path(cfg.train.out_dir), resume=resume,
                 config=config, tokenizer=data.tokenizer_path, progress=progress)


def open_token_data(cfg: RunConfig) -> TokenData:
    """Open data.path, preparing it from data.source first when it holds no data yet."""
    if not cfg.data.path:
        raise ConfigError("data.path: required (a directory made by `genforge prepare`)")
    path = Path(cfg.data.path)
    if not (path / "manifest.json").exists() and cfg.data.source:
        from genforge.data.prepare import prepare  # only here: training itself needs no tokenizer library

        print(f"preparing {cfg.data.source} -> {path} (tokenizer {cfg.data.tokenizer})", flush=True)
        from genforge.data.cda import load_swaps

        cda = load_swaps(cfg.data.cda) if getattr(cfg.data, "cda", None) else None
        prepare(cfg.data.source, cfg.data.tokenizer, path, cda=cda, cda_mode=getattr(cfg.data, "cda_mode", "augment"))
    return TokenData(path, verify=cfg.data.verify)


def check_trainable(cfg: RunConfig, device: torch.device, world: int = 1) -> None:
    """ConfigError before anything is allocated when the model's weights, gradients and optimizer
    state (16 bytes a parameter with AdamW, 12 with Muon's one moment; FSDP splits them over the
    ranks) exceed the device's memory."""
    per_param = 12 if cfg.train.optimizer == "muon" else 16
    if cfg.train.fsdp:
        per_param = max(1, per_param // max(world, 1))
    ckpt_io.check_fits(family(cfg.family), cfg.model, device, per_param, "train")
