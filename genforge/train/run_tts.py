"""The training runner of the speech family (kind "speech"): open the speech data at the model's
sample rate, fill the model config from it (the phoneme inventory, the voices and the espeak voice
that reads each one's text, the mel settings), set the model's mel statistics, and train the
acoustic objective in the loop.

Fine-tuning (model.init: a trained speech checkpoint): the architecture, inventory and voices are
the checkpoint's, its weights are loaded; the data's new voices get embeddings initialised at the
mean of the trained voices', and phonemes it never saw get new rows. So a new voice is learnt from
minutes of its speech instead of hours.

Bundled vocoder (model.vocoder: a trained vocoder checkpoint): its family and model config are
stored in the vocoder_family / vocoder_config twins and its weights loaded into the `vocoder`
submodule, so the checkpoint speaks without the vocoder's own (the PRETRAINED pattern of run_t2i).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from genforge import checkpoint
from genforge.config import RunConfig
from genforge.data.speech import open_speech
from genforge.data.speech_batches import SpeechBatches
from genforge.device import resolve_device
from genforge.errors import CheckpointError, ConfigError
from genforge.families import family, resolve
from genforge.nn.mel import mel_config_for
from genforge.train.loop import train


def run_tts(cfg: RunConfig, resume: bool, progress: bool) -> Path:
    """Train cfg.family on the speech of cfg.data; return the final checkpoint directory."""
    fam = family(cfg.family)
    base = load_base(cfg.model.init) if cfg.model.init else None
    if base is not None:  # the trained model's architecture and audio settings
        keep = {k: getattr(cfg.model, k) for k in ("init", "dropout", "vocoder") if hasattr(cfg.model, k)}
        cfg.model = dataclasses.replace(type(cfg.model)(**base.config["model"]), **keep)
    mel = mel_config_for(cfg.model.sample_rate)
    train_set, val_set = open_speech(cfg.data, cfg.model.sample_rate)
    accent = cfg.data.accent if not cfg.data.source.startswith("builtin:") else None
    phonemes = list(cfg.model.phonemes) + sorted({p for ps in train_set.phonemes + val_set.phonemes for p in ps}
                                                  - set(cfg.model.phonemes))
    voices, accents = list(cfg.model.voices), list(cfg.model.accents)
    for name in train_set.voices:
        if name not in voices:
            voices.append(name)
            accents.append(accent or name)
    cfg.model = dataclasses.replace(cfg.model, phonemes=phonemes, voices=voices, accents=accents,
                                    n_mels=mel.n_mels, hop_length=mel.hop_length)
    vocoder = load_vocoder(cfg.model) if cfg.model.vocoder else None
    if vocoder is not None:
        cfg.model = dataclasses.replace(cfg.model, vocoder_config=vocoder.config["model"])
    torch.manual_seed(cfg.train.seed)  # the initial weights follow train.seed
    model = fam.build(cfg.model)
    frames = torch.from_numpy(train_set.mel.astype(np.float32))
    model.mel_mean.copy_(frames.mean(0))
    model.mel_std.copy_(frames.std(0).clamp(min=1e-3))
    if base is not None:
        transfer(base.model, model)
    if vocoder is not None:
        model.vocoder.load_state_dict(vocoder.model.state_dict())
    objective = resolve(fam.objective)(model)
    batches = SpeechBatches(train_set, val_set, {p: i + 1 for i, p in enumerate(phonemes)},
                            {v: i for i, v in enumerate(voices)}, cfg.data.batch_size, cfg.train.seed,
                            resolve_device(cfg.train.device))
    config = {"family": cfg.family, "model": dataclasses.asdict(cfg.model), "tokenizer": None,
              "data": {"source": cfg.data.source, "train_utterances": len(train_set), "val_utterances": len(val_set),
                       "train_seconds": round(train_set.seconds(mel.hop_length, mel.sample_rate), 1),
                       "val_texts": val_set.texts[:64]},
              "run": cfg.to_dict()}
    return train(objective, batches, cfg.train, Path(cfg.train.out_dir), resume=resume, config=config, progress=progress)


def load_base(path: str):
    """The speech checkpoint model.init names; ConfigError when it is not one."""
    try:
        loaded = checkpoint.load(path, "cpu")
    except CheckpointError as e:
        raise ConfigError(f"model.init={path}: {e}") from None
    if loaded.family.kind != "speech":
        raise ConfigError(f"model.init={path}: a {loaded.config.get('family')} checkpoint; expected a speech model")
    return loaded


def load_vocoder(model_cfg):
    """The vocoder checkpoint model.vocoder names, checked against the model's mel frames;
    ConfigError when it is not a vocoder or reads other frames."""
    try:
        loaded = checkpoint.load(model_cfg.vocoder, "cpu")
    except CheckpointError as e:
        raise ConfigError(f"model.vocoder={model_cfg.vocoder}: {e}; train one: genforge train vocoder/espeak") from None
    if loaded.family.kind != "vocode":
        raise ConfigError(f"model.vocoder={model_cfg.vocoder}: a {loaded.config.get('family')} checkpoint; expected a vocoder")
    if loaded.model.mel_config != mel_config_for(model_cfg.sample_rate):
        raise ConfigError(f"model.vocoder={model_cfg.vocoder}: reads other mel frames ({loaded.model.mel_config}) than "
                          f"this model makes ({mel_config_for(model_cfg.sample_rate)})")
    return loaded


def transfer(base: torch.nn.Module, model: torch.nn.Module) -> None:
    """Copy base's weights into model (same architecture, as many or more phonemes and voices): the
    embedding rows it has, the others at the mean of its rows."""
    state = model.state_dict()
    for name, value in base.state_dict().items():
        if name in ("phoneme_emb.weight", "voice_emb.weight"):
            rows = state[name]
            rows[len(value):] = value[1:].mean(0) if name == "phoneme_emb.weight" else value.mean(0)
            rows[:len(value)] = value
        elif name in state:
            state[name] = value
    model.load_state_dict(state)
