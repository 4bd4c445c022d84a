"""The training runner of waveform families (the table's vocoder): open the clips at the model's
sample rate, and train the family's objective (Family.objective) in the loop, its evaluation
scoring held-out clips by MCD-DTW beside Griffin–Lim."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from genforge.config import RunConfig
from genforge.data.audio_batches import AudioBatches, open_audio
from genforge.device import resolve_device
from genforge.eval.audio_metrics import mcd_dtw
from genforge.families import family, resolve
from genforge.train.loop import train
from genforge.train.run import check_trainable


def run_vocoder(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train cfg.family (a vocoder) on the audio of cfg.data; return the final checkpoint directory."""
    fam = family(cfg.family)
    device = resolve_device(cfg.train.device)
    check_trainable(cfg, device)
    mel = cfg.model.mel()
    train_set, val_set = open_audio(cfg.data, mel.sample_rate)
    print(f"audio: {len(train_set)} training clips ({train_set.seconds() / 60:.1f} min), {len(val_set)} held out, "
          f"{mel.sample_rate} Hz", file=sys.stderr, flush=True)
    batches = AudioBatches(train_set, val_set, cfg.data.batch_size, cfg.data.segment, mel.hop_length, cfg.train.seed,
                           device, cfg.data.val_seconds)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = fam.build(cfg.model)
    objective = resolve(fam.objective)(model)
    objective.mcd = mcd_dtw
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": None,
              "data": {"source": cfg.data.source, "sample_rate": mel.sample_rate, "train_clips": len(train_set),
                       "val_clips": len(val_set), "train_seconds": round(train_set.seconds(), 1),
                       "val_names": val_set.names[:cfg.train.eval_iters]},
              "run": cfg.to_dict()}
    return train(objective, batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config, progress=progress)
