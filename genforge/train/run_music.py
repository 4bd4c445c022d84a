"""The training runner of the music family: read the pieces, tokenize them with miditok after
their conditioning tokens, fill model.vocab_size from the vocabulary, and train the same GPT with
the language-model objective in the one loop. miditok's own tokenizer file is saved in each
checkpoint (tokenizer.json) and config.json's "music" section names the conditioning tokens, so
`genforge generate` rebuilds the exact vocabulary.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from genforge.config import RunConfig
from genforge.data.music import MusicBatches, open_music
from genforge.device import resolve_device
from genforge.errors import ConfigError
from genforge.families import family
from genforge.objectives.lm import LMObjective
from genforge.train.loop import train


def run_music(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train a GPT on the music of cfg.data; return the final checkpoint directory."""
    vocab, train_set, val_set, _ = open_music(cfg.data)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = len(vocab)
    elif cfg.model.vocab_size < len(vocab):
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the music vocabulary "
                          f"({len(vocab)} tokens); leave it at 0")
    print(f"music: {len(train_set)} training pieces ({train_set.tokens} tokens), {len(val_set)} validation, "
          f"{len(vocab)} tokens in the vocabulary ({cfg.data.tokenizer})", flush=True)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = family(cfg.family).build(cfg.model)
    batches = MusicBatches(vocab, train_set, val_set, cfg.data.batch_size, cfg.model.block_size, cfg.data.transpose,
                           cfg.train.seed, resolve_device(cfg.train.device))
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model),
              "music": {**vocab.to_config(), "train_pieces": train_set.names, "source": cfg.data.source},
              "data": {"source": cfg.data.source, "train_pieces": len(train_set), "val_pieces": len(val_set),
                       "train_tokens": train_set.tokens},
              "run": cfg.to_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        vocab.tok.save(tmp)  # miditok's file, as miditok reloads it
        return train(LMObjective(model), batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config,
                     tokenizer=Path(tmp) / "tokenizer.json", progress=progress)
