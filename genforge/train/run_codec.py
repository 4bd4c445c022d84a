"""The training runner of the audio codec (the table's codec): open the clips at the model's sample
rate and train the codec objective in the one loop; its evaluation reports reconstruction, bits per
sample and codebook usage on held-out clips (objectives/codec.py's `measure`)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from genforge.config import RunConfig
from genforge.data.audio_batches import AudioBatches, open_audio
from genforge.device import resolve_device
from genforge.families import family, resolve
from genforge.train.loop import train
from genforge.train.run import check_trainable


def run_codec(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train cfg.family (a codec) on the audio of cfg.data; return the final checkpoint directory."""
    fam = family(cfg.family)
    device = resolve_device(cfg.train.device)
    check_trainable(cfg, device)
    rate, hop = cfg.model.sample_rate, cfg.model.hop
    train_set, val_set = open_audio(cfg.data, rate)
    print(f"audio: {len(train_set)} training clips ({train_set.seconds() / 60:.1f} min), {len(val_set)} held out, "
          f"{rate} Hz, {rate / hop:g} frames/s", file=sys.stderr, flush=True)
    batches = AudioBatches(train_set, val_set, cfg.data.batch_size, cfg.data.segment, hop, cfg.train.seed, device,
                           cfg.data.val_seconds)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    objective = resolve(fam.objective)(fam.build(cfg.model))
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": None,
              "data": {"source": cfg.data.source, "sample_rate": rate, "train_clips": len(train_set),
                       "val_clips": len(val_set), "train_seconds": round(train_set.seconds(), 1),
                       "val_names": val_set.names[:cfg.train.eval_iters]},
              "run": cfg.to_dict()}
    return train(objective, batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config, progress=progress)
