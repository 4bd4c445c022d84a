"""The family table: everything genforge knows about each model family, in one place.

A family is an architecture whose checkpoints genforge reads (config.json's "family"). Per family:
its model config and builder, the data config its training reads, how `genforge train` trains it,
what it makes (`kind`: how it samples and how the server serves it), which of its modules samples,
its Hugging Face mapping, its fine-tuning task, and the other ways a run may train it (`methods`:
DPO, PPO, GRPO are ways to train a `gpt`, not families).

Callers ask this table and never compare family names. Training code sits above this module in
the layers (pyproject.toml's import-linter contracts), so runners, objectives and method settings
are named as "module:attribute" and imported only when used. A new family is a model file, an
objective file and one entry here (tests/test_families.py adds one from a test module).
"""
from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from genforge.config import DataConfig
from genforge.data.audio_batches import AudioDataConfig
from genforge.data.audio_tokens import AudioTokenDataConfig
from genforge.data.caption_batches import CaptionDataConfig
from genforge.data.image_batches import ImageDataConfig
from genforge.data.music import MusicDataConfig
from genforge.data.pairs import PreferenceDataConfig
from genforge.data.prompts import PromptDataConfig
from genforge.data.speech import SpeechDataConfig
from genforge.errors import ConfigError
from genforge.models import encoder_hf, gpt_hf
from genforge.models.audio_lm import AudioLM, AudioLMConfig
from genforge.models.classifier import Classifier, ClassifierConfig
from genforge.models.clip import CLIP, CLIPConfig
from genforge.models.codec import Codec, CodecConfig
from genforge.models.dalle import Dalle, DalleConfig
from genforge.models.diffusion import DiffusionConfig, DiT
from genforge.models.encoder import Encoder, EncoderConfig
from genforge.models.gan import GAN, GANConfig
from genforge.models.gpt import GPT, GPTConfig
from genforge.models.reward import RewardConfig, RewardModel
from genforge.models.tts import AcousticModel, TTSConfig
from genforge.models.vae import VAE, VAEConfig
from genforge.models.vocoder import Vocoder, VocoderConfig
from genforge.models.vqvae import VQVAE, VQVAEConfig

# what a family's checkpoints make, which decides how they sample and which routes serve them:
# text (a decoder LM: /v1/completions, chat), image (sample(n, cond, generator): /v1/images/generations),
# score (a reward model), label (an image classifier), encode (a text encoder),
# text_image (images from a written prompt: Family.generate; /v1/images/generations with a prompt),
# match (how well an image and a caption match, e.g. CLIP: eval/clipscore.py; it makes no samples),
# music (symbolic music: a decoder over miditok events after conditioning tokens; sample/music.py
# writes MIDI, WAV and a piano roll; /v1/music/generations)
# speech (a waveform spoken from text: genforge speak, /v1/audio/speech)
# vocode (a waveform from log-mel frames: genforge vocode; the last stage of a TTS)
# audio (waveforms from a decoder over a frozen codec's tokens, unconditional or continuing an audio
# prompt: sample/audio_lm.py; genforge generate --prompt-audio, /v1/audio/generations)
# codec (waveforms to discrete codes and back: encode(wav) -> codes, decode(codes) -> wav,
# sample_bits(wav, codes); the tokenizer an audio LM models)
Kind = Literal["text", "image", "score", "label", "encode", "text_image", "match", "music", "speech", "vocode", "audio",
               "codec"]


@dataclass(frozen=True)
class Method:
    """A way to train a family other than its own: its settings (the run config's section named
    after the method), the data config it reads and its runner."""
    settings: str  # "module:Class" of the settings dataclass
    data: type
    run: str  # "module:function" (cfg, resume, progress) -> final checkpoint directory


@dataclass(frozen=True)
class Family:
    config: type  # the model config dataclass (the run config's `model:` section)
    build: Callable[[Any], nn.Module]  # model config -> the model
    kind: Kind
    run: str = ""  # "module:function" (cfg, resume, progress) -> checkpoint dir; "" when `genforge train` cannot
    data: type = DataConfig  # the data config dataclass (the `data:` section)
    objective: str = ""  # "module:Class" the family's runner trains (model) -> objective, where the runner is generic
    part: str = ""  # the submodule that samples, saved as PART.safetensors (a GAN's generator); "" the whole model
    hf: Any = None  # a module with to_hf(model) and from_hf(hf_config, state) for the Hugging Face layout
    hf_types: tuple[str, ...] = ()  # the HF config.json model_types it imports
    finetune: str = ""  # "module:function" making its `genforge finetune` task
    methods: dict[str, Method] = field(default_factory=dict)
    # text_image: "module:function" (model, caption ids (B, T), generator, guidance, negative ids, check,
    # **family options) -> images (B, C, H, W) in [0, 1]
    generate: str = ""


_PREFS = PreferenceDataConfig
FAMILIES: dict[str, Family] = {
    "gpt": Family(GPTConfig, GPT, "text", run="genforge.train.run:run_lm", hf=gpt_hf, hf_types=("gpt2", "llama"),
                  finetune="genforge.finetune.tasks:decoder_task",
                  methods={"dpo": Method("genforge.objectives.dpo:DPOConfig", _PREFS, "genforge.align.runs:run_dpo"),
                           "ppo": Method("genforge.objectives.ppo:PPOConfig", PromptDataConfig, "genforge.align.ppo_run:run_ppo"),
                           "grpo": Method("genforge.objectives.grpo:GRPOConfig", PromptDataConfig,
                                          "genforge.align.ppo_run:run_grpo")}),
    "encoder": Family(EncoderConfig, Encoder, "encode", hf=encoder_hf, hf_types=("bert",),
                      finetune="genforge.finetune.tasks:classify_task"),
    "vae": Family(VAEConfig, VAE, "image", "genforge.train.run_images:run_images", ImageDataConfig,
                  "genforge.objectives.vae:VAEObjective"),
    "vqvae": Family(VQVAEConfig, VQVAE, "image", "genforge.train.run_images:run_images", ImageDataConfig,
                    "genforge.objectives.vqvae:VQVAEObjective"),
    "gan": Family(GANConfig, GAN, "image", "genforge.train.run_images:run_images", ImageDataConfig,
                  "genforge.objectives.gan:GANObjective", part="g"),
    "classifier": Family(ClassifierConfig, Classifier, "label", "genforge.train.run_images:run_images", ImageDataConfig,
                         "genforge.objectives.classify:ClassifierObjective"),
    # text to image: a diffusion transformer over pixels, conditioned on the caption
    "diffusion": Family(DiffusionConfig, DiT, "text_image", "genforge.train.run_t2i:run_t2i", CaptionDataConfig,
                        "genforge.objectives.denoise:DenoiseObjective", generate="genforge.sample.t2i:generate"),
    # text to image, DALL·E-style: a frozen vqvae's image codes after the caption, modelled by a gpt
    "dalle": Family(DalleConfig, Dalle, "text_image", "genforge.train.run_t2i:run_t2i", CaptionDataConfig,
                    "genforge.objectives.dalle:DalleObjective", generate="genforge.sample.t2i_dalle:generate"),
    "clip": Family(CLIPConfig, CLIP, "match", "genforge.train.run_t2i:run_t2i", CaptionDataConfig, "genforge.objectives.clip:CLIPObjective"),
    # symbolic music: the same GPT over miditok's REMI/TSD/Structured events after conditioning tokens
    "music": Family(GPTConfig, GPT, "music", "genforge.train.run_music:run_music", MusicDataConfig),
    # text to speech: a FastSpeech-style acoustic model, phonemes -> log-mel frames (a vocoder speaks them)
    "tts": Family(TTSConfig, AcousticModel, "speech", "genforge.train.run_tts:run_tts", SpeechDataConfig,
                  "genforge.objectives.tts:TTSObjective"),
    # waveforms: the same GPT over a frozen codec's flattened residual-VQ codes (AudioLM / MusicGen style)
    "audio_lm": Family(AudioLMConfig, AudioLM, "audio", "genforge.train.run_audio_lm:run_audio_lm", AudioTokenDataConfig),
    # log-mel frames to waveforms (Vocos), trained with HiFi-GAN's discriminators
    "vocoder": Family(VocoderConfig, Vocoder, "vocode", "genforge.train.run_audio:run_vocoder", AudioDataConfig,
                      "genforge.objectives.vocoder:VocoderObjective", part="g"),
    # a neural audio codec: conv encoder, residual VQ, conv decoder and a per-sample mu-law head
    "codec": Family(CodecConfig, Codec, "codec", "genforge.train.run_codec:run_codec", AudioDataConfig,
                    "genforge.objectives.codec:CodecObjective"),
    # a gpt trunk with a scalar head: its own checkpoints, which score text rather than generate it
    "reward": Family(RewardConfig, RewardModel, "score", run="genforge.align.runs:run_reward", data=_PREFS),
}


def family(name: str | None, where: str = "family") -> Family:
    """The table's entry for name; ConfigError naming `where` and the families there are."""
    if name in FAMILIES:
        return FAMILIES[name]
    owners = [f for f, fam in FAMILIES.items() if name in fam.methods]
    if owners:
        raise ConfigError(f"{where}={name!r}: {name} is a way to train a {owners[0]}, not a family; "
                          f"use family: {owners[0]} with method: {name}")
    close = difflib.get_close_matches(str(name), list(FAMILIES), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{where}={name!r}: unknown model family{hint}; expected one of {', '.join(sorted(FAMILIES))}")


def of_kind(kind: str) -> list[str]:
    """The families whose checkpoints make `kind`."""
    return [name for name, fam in FAMILIES.items() if fam.kind == kind]


def hf_family(model_type: str | None) -> tuple[str, Family] | None:
    """(name, entry) of the family that imports Hugging Face checkpoints of model_type, or None."""
    for name, fam in FAMILIES.items():
        if model_type in fam.hf_types:
            return name, fam
    return None


def resolve(ref: str) -> Any:
    """The object a "module:attribute" reference names, imported now."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
