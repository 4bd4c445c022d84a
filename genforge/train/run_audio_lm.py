"""The training runner of the audio_lm family: load the frozen codec model.codec names, encode the
audio source with it once into token shards (data/audio_tokens.py, cached by the codec's weights
and the data settings), then train the GPT over the flattened codes with the language-model
objective in the one loop (TokenBatches: exact resume comes with it). The codec's config is
copied into model.codec_config and its weights into the model's `codec` submodule, so the
checkpoint encodes prompts and decodes samples on its own (the bundling of run_tts's vocoder).
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import torch

from genforge import checkpoint
from genforge.config import RunConfig
from genforge.data.audio_batches import open_audio
from genforge.data.audio_tokens import cache_key, is_current, token_dir, write_tokens
from genforge.data.batches import TokenBatches
from genforge.data.shards import TokenData
from genforge.device import resolve_device
from genforge.errors import CheckpointError, ConfigError
from genforge.families import family
from genforge.models.audio_lm import encode_clip, flatten
from genforge.objectives.lm import LMObjective
from genforge.train.loop import train
from genforge.train.run import check_trainable


def run_audio_lm(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train a GPT over the codec tokens of cfg.data; return the final checkpoint directory."""
    codec = load_codec(cfg.model.codec)
    cfg.model = dataclasses.replace(cfg.model, codec_config=codec.config["model"])
    device = resolve_device(cfg.train.device)
    check_trainable(cfg, device)
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = family(cfg.family).build(cfg.model)
    model.codec.load_state_dict(codec.model.state_dict())
    data = open_tokens(cfg, model, codec.path)
    m = data.manifest["audio_tokens"]
    seconds = m["frames"]["train"] * model.hop / model.sample_rate
    print(f"audio_lm: {len(m['clips']['train'])} training clips ({seconds / 60:.1f} min, "
          f"{data.tokens('train')} tokens), {len(m['clips']['val'])} held out; {model.n_q} levels x "
          f"{model.codebook_size} codes at {model.sample_rate / model.hop:g} frames/s", file=sys.stderr, flush=True)
    batches = TokenBatches(data, cfg.data.batch_size, cfg.model.block_size, cfg.train.seed, device)
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": None,
              "data": {"path": str(data.path.resolve()), "source": cfg.data.source, "sample_rate": model.sample_rate,
                       "train_clips": len(m["clips"]["train"]), "val_clips": len(m["clips"]["val"]),
                       "train_seconds": round(seconds, 1), "val_names": m["clips"]["val"][:64]},
              "run": cfg.to_dict()}
    return train(LMObjective(model), batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config,
                 progress=progress)


def load_codec(path: str) -> checkpoint.Loaded:
    """The codec checkpoint model.codec names; ConfigError when there is none or it is not a codec."""
    if not path:
        raise ConfigError("model.codec: required, a codec checkpoint (train one first: "
                          "`genforge train codec/chorales`, then model.codec=runs/codec_chorales/latest)")
    try:
        loaded = checkpoint.load(path, "cpu")
    except CheckpointError as e:
        raise ConfigError(f"model.codec={path}: {e}; train one: genforge train codec/chorales") from None
    if loaded.family.kind != "codec":
        name = loaded.config.get("family")
        raise ConfigError(f"model.codec={path}: {'an' if name[0] in 'aeiou' else 'a'} {name} checkpoint, not a codec")
    return loaded


def open_tokens(cfg: RunConfig, model, codec_path: Path) -> TokenData:
    """The token directory of cfg.data under this codec, encoded now when the cache lacks it."""
    sums = (codec_path / checkpoint.SUMS).read_bytes()
    key = cache_key(hashlib.sha256(sums).hexdigest(), cfg.data, cfg.model.codec_config)
    out = token_dir(cfg.data, key)
    if not is_current(out, key):
        print(f"audio_lm: encoding {cfg.data.source} with {cfg.model.codec} -> {out}", file=sys.stderr, flush=True)
        train_set, val_set = open_audio(cfg.data.audio(), model.sample_rate)
        splits, frames = {}, {}
        for split, clips in (("train", train_set), ("val", val_set)):
            codes = [encode_clip(model, clip) for clip in clips.clips]
            splits[split] = [(name, flatten(torch.from_numpy(c), model.codebook_size).numpy())
                             for name, c in zip(clips.names, codes)]
            frames[split] = sum(c.shape[1] for c in codes)
        meta = {"key": key, "codec": cfg.model.codec, "n_q": model.n_q, "codebook_size": model.codebook_size,
                "sample_rate": model.sample_rate, "hop": model.hop, "frames": frames,
                "clips": {split: [name for name, _ in clips] for split, clips in splits.items()}}
        write_tokens(out, splits, model.eot + 1, model.eot, meta)
    return TokenData(out, verify=cfg.data.verify)
