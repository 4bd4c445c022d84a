"""Speaking text with a trained acoustic model: normalise the text, read it into phonemes with the
voice's espeak-ng accent, predict log-mel frames (durations scaled by 1/speed), and turn them into
a waveform with the neural vocoder bundled in the checkpoint or given, else Griffin-Lim.

Text is spoken sentence by sentence (the model trained on sentences; a sentence past MAX_CHUNK
characters is cut at a comma or a space), the pieces batched through the model and joined.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch

from genforge.data import espeak
from genforge.data.text_norm import normalize
from genforge.errors import DataError
from genforge.nn.mel import griffin_lim, mel_config_for

MAX_INPUT_CHARS = 400  # one request's text, as OpenAI's speech API limits `input` (theirs: 4096)
MAX_CHUNK = 160  # characters spoken at once
STRESS = str.maketrans("", "", "',")

Vocoder = Callable[[torch.Tensor], torch.Tensor]  # log-mel (B, n_mels, T) -> waveforms (B, N)


def check_input(text: object, limit: int = MAX_INPUT_CHARS) -> str:
    """text, stripped; DataError for a non-string, an empty text, or one past `limit` characters."""
    if not isinstance(text, str):
        raise DataError(f"input: expected text, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise DataError("input: empty text; give something to say")
    if len(text) > limit:
        raise DataError(f"input: {len(text)} characters; at most {limit} are spoken at once")
    return text


def voice_index(config, voice: str | None) -> int:
    """The id of voice in the model's voices ("default" or None: the first); DataError listing them."""
    voices = list(config.voices)
    if voice in (None, "", "default"):
        return 0
    if voice not in voices:
        raise DataError(f"voice {voice!r}: unknown; this model speaks {', '.join(['default', *voices])}")
    return voices.index(voice)


def chunks(text: str, limit: int = MAX_CHUNK) -> list[str]:
    """text split into sentences, each cut to at most `limit` characters at a comma or space."""
    out = []
    for sentence in re.split(r"(?<=[.!?;])\s+", text):
        while len(sentence) > limit:
            cut = max(sentence.rfind(",", 0, limit), sentence.rfind(" ", 0, limit))
            cut = cut if cut > 0 else limit
            out.append(sentence[:cut + 1].strip())
            sentence = sentence[cut + 1:].strip()
        if sentence:
            out.append(sentence)
    return [c for c in out if any(ch.isalnum() for ch in c)]


def phoneme_ids(config, text: str, voice: int) -> list[int]:
    """Inventory ids of the phonemes espeak-ng reads text with in voice's accent. A phoneme the
    model never saw falls back to its unstressed form; DataError where that is missing too."""
    inventory = {p: i + 1 for i, p in enumerate(config.phonemes)}
    bare = {p.translate(STRESS): i for p, i in reversed(inventory.items())}
    accent = config.accents[voice] if config.accents else "en-us"
    ids = []
    for p in espeak.phonemes(text, accent):
        i = inventory.get(p) or bare.get(p.translate(STRESS))
        if i is None:
            raise DataError(f"input: the phoneme {p!r} of {text[:40]!r} is not one this model learnt")
        ids.append(i)
    return ids


def griffin_lim_vocoder(sample_rate: int) -> Vocoder:
    cfg = mel_config_for(sample_rate)
    return lambda mel: griffin_lim(mel, cfg)


@torch.no_grad()
def speak(model, text: str, voice: str | None = None, speed: float = 1.0, vocoder: Vocoder | None = None,
          max_chars: int = MAX_INPUT_CHARS) -> tuple[np.ndarray, int]:
    """(waveform (N,) float32 in [-1, 1], sample rate) of model speaking text. DataError for empty
    or over-long text, an unknown voice, characters the phonemiser cannot read; ValueError for a
    speed outside [0.25, 4] (OpenAI's range)."""
    if not 0.25 <= speed <= 4.0:
        raise DataError(f"speed={speed}: expected 0.25 to 4.0")
    text = check_input(text, max_chars)
    config = model.config
    v = voice_index(config, voice)
    said = espeak.check_text(normalize(text), "input")
    pieces = chunks(said)
    if not pieces:
        raise DataError("input: nothing to say (no letters or digits)")
    device = next(model.parameters()).device
    rows = [phoneme_ids(config, piece, v) for piece in pieces]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
    mels, _ = model.synthesize(ids.to(device), torch.full((len(rows),), v, device=device), speed)
    vocode = vocoder or bundled_vocoder(model) or griffin_lim_vocoder(config.sample_rate)
    hop = config.hop_length
    wavs = [vocode(m[None])[0][: (m.shape[-1] - 1) * hop].float().cpu().numpy() for m in mels]
    wav = np.concatenate(wavs).astype(np.float32)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak > 0.99:  # a vocoder may overshoot; keep the waveform inside [-1, 1] without clipping
        wav = wav * (0.99 / peak)
    return wav, config.sample_rate


def bundled_vocoder(model) -> Vocoder | None:
    """The neural vocoder in the checkpoint (model.vocoder), or None."""
    vocoder = getattr(model, "vocoder", None)
    return None if vocoder is None else as_vocoder(vocoder)


def load_vocoder(path: str, sample_rate: int) -> Vocoder:
    """The vocoder of a trained vocoder checkpoint as mel (B, n_mels, T) -> waveforms (B, N);
    DataError when it is not one or works at another sample rate or hop."""
    from genforge import checkpoint

    loaded = checkpoint.load(path, "cpu")
    if loaded.family.kind != "vocode":
        raise DataError(f"{path}: a {loaded.config.get('family')} checkpoint; expected a vocoder")
    if loaded.model.mel_config != mel_config_for(sample_rate):
        raise DataError(f"{path}: the vocoder reads other mel frames ({loaded.model.mel_config}) than this speech "
                        f"model makes ({mel_config_for(sample_rate)})")
    return as_vocoder(loaded.model)


def as_vocoder(model) -> Vocoder:
    """mel (B, n_mels, T) -> (B, N) through a vocoder module (its .vocode, else its forward)."""
    run = getattr(model, "vocode", None) or model

    def vocode(mel: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wav = run(mel.to(next(model.parameters()).device))
        return wav.reshape(wav.shape[0], -1)

    return vocode


class SpeechModel:
    """A trained acoustic model ready to speak: .speak(text, voice, speed) -> (waveform, rate).
    The vocoder: `vocoder` (a vocoder checkpoint) if given, else the one bundled in the
    checkpoint, else Griffin-Lim."""

    def __init__(self, model, path, vocoder: Vocoder | None = None, vocoder_name: str = "", config: dict | None = None):
        self.model, self.path, self._vocoder = model, path, vocoder
        self.loaded_config = config or {}  # config.json
        self.vocoder_name = vocoder_name or ("bundled" if bundled_vocoder(model) else "griffin-lim")

    @classmethod
    def load(cls, ckpt, device: str = "auto", vocoder: str | None = None) -> SpeechModel:
        from genforge import checkpoint
        from genforge.device import resolve_device

        loaded = checkpoint.load(ckpt, "cpu")
        model = loaded.model.to(resolve_device(device)).eval()
        voc = load_vocoder(vocoder, model.config.sample_rate) if vocoder else None
        return cls(model, loaded.path, voc, str(vocoder or ""), loaded.config)

    @property
    def val_fraction(self) -> float:
        """The share of sentences its training held out (by a hash of the text: data/speech.py)."""
        return float(((self.loaded_config.get("run") or {}).get("data") or {}).get("val_fraction", 0.05))

    @property
    def config(self):
        return self.model.config

    @property
    def voices(self) -> list[str]:
        return list(self.model.config.voices)

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def vocoder(self) -> Vocoder:
        return self._vocoder or bundled_vocoder(self.model) or griffin_lim_vocoder(self.sample_rate)

    def speak(self, text: str, voice: str | None = None, speed: float = 1.0) -> tuple[np.ndarray, int]:
        """(waveform (N,) float32 in [-1, 1], sample rate) of text in voice ("default": the first)."""
        return speak(self.model, text, voice, speed, self.vocoder())

    generate = speak
