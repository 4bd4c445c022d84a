"""Sampling an audio_lm checkpoint (models/audio_lm.py): unconditional audio and continuations of an
audio prompt, each an AudioSample (the waveform, its codes, a spectrogram PNG), and the bits of a
waveform under the model (the benchmark's bits per sample).

Generation is the text sampler (sample/text.py stream_ids: KV cache, and past block_size a
sliding context that keeps the last half of the window and prefills it again) over the flattened
codes, after EOT and the prompt's codes. A processor allows each step only the codes of the level
whose turn it is (the token after the prompt's last is level (n - 1) mod n_q), so the tokens
always unflatten into whole frames, however far the window has slid. The codec decodes the codes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genforge import checkpoint as ckpt_io
from genforge.data.audio import read_audio, write_audio
from genforge.device import resolve_device
from genforge.errors import CheckpointError, ConfigError, DataError
from genforge.models.audio_lm import encode_clip, flatten, unflatten
from genforge.sample.text import stream_ids

MAX_SECONDS = 600.0


@dataclass
class AudioSample:
    """One generated clip: the waveform (N,) float32 at sample_rate (the prompt's audio, decoded
    from its codes, then the continuation), its codes (n_q, F), and where the prompt ends."""
    wav: np.ndarray
    sample_rate: int
    codes: np.ndarray
    prompt_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate

    def save(self, stem: str | Path) -> dict[str, Path]:
        """Write STEM.wav and STEM.png (its spectrogram); their paths."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = {"wav": stem.with_suffix(".wav"), "png": stem.with_suffix(".png")}
        write_audio(paths["wav"], self.wav, self.sample_rate)
        spectrogram_png(self.wav, self.sample_rate, paths["png"], self.prompt_seconds)
        return paths


class AudioLMModel:
    """An audio_lm checkpoint's model (GPT and frozen codec), ready to generate."""

    def __init__(self, model, path: Path, config: dict):
        self.model, self.path, self.config = model, path, config

    @classmethod
    def load(cls, ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> AudioLMModel:
        loaded = ckpt_io.load(ckpt)
        if loaded.family.kind != "audio":
            raise CheckpointError(f"{loaded.path}: a {loaded.config.get('family')} checkpoint, not a codec-token audio model")
        torch_dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
        return cls(loaded.model.to(resolve_device(device), torch_dtype).eval(), loaded.path, loaded.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    def prompt_codes(self, prompt_audio: str | Path | None) -> np.ndarray:
        """The codes (n_q, F) of an audio prompt (resampled to the model's rate with a warning), or
        none (n_q, 0). DataError naming the file for a missing, unreadable or empty one, or one
        longer than the model's context."""
        m = self.model
        if prompt_audio is None:
            return np.zeros((m.n_q, 0), dtype=np.int64)
        wav, _ = read_audio(prompt_audio, m.sample_rate)
        if len(wav) < m.hop:
            raise DataError(f"{prompt_audio}: the prompt is {len(wav)} samples, shorter than one codec frame "
                            f"({m.hop} samples at {m.sample_rate} Hz)")
        frames = len(wav) // m.hop  # whole frames: a partial last frame would continue from padding
        if frames > m.frames_in_context - 1:  # room for at least one new frame in the window
            most = (m.frames_in_context - 1) * m.hop / m.sample_rate
            raise DataError(f"{prompt_audio}: the prompt is {len(wav) / m.sample_rate:.2f} s but the model's context "
                            f"holds {m.frames_in_context * m.hop / m.sample_rate:.2f} s; give at most {most:.2f} s")
        return encode_clip(m, wav[:frames * m.hop])

    def generate(self, num_samples: int = 1, seconds: float = 10.0, prompt_audio: str | Path | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, check: Callable[[], None] | None = None,
                 prompt: np.ndarray | None = None) -> list[AudioSample]:
        """num_samples clips of `seconds` new audio each (after the prompt's, with a prompt: a file,
        or its codes from prompt_codes). One seed gives the same clips bitwise. `check` is called
        after each frame (a server's timeout). ConfigError for a bad setting; DataError for a bad prompt."""
        m = self.model
        if num_samples < 1:
            raise ConfigError(f"num_samples={num_samples}: must be >= 1")
        if not 0 < seconds <= MAX_SECONDS:
            raise ConfigError(f"seconds={seconds:g}: must be in (0, {MAX_SECONDS:g}]")
        temperature = m.config.temperature if temperature is None else temperature
        top_k = (m.config.top_k or None) if top_k is None else top_k
        if not 0 <= temperature <= 10:
            raise ConfigError(f"temperature={temperature} must be in [0, 10] (0: greedy)")
        if top_k is not None and not 1 <= top_k <= m.codebook_size:
            raise ConfigError(f"top_k={top_k} must be in [1, {m.codebook_size}] (the codes of a level)")
        if prompt is None:
            prompt = self.prompt_codes(prompt_audio)
        new_frames = math.ceil(seconds * m.sample_rate / m.hop)
        start = torch.tensor([m.eot, *flatten(torch.from_numpy(prompt), m.codebook_size).tolist()], device=self.device)
        idx = start.repeat(num_samples, 1)  # (B, 1 + P * n_q)
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        out = torch.empty(num_samples, new_frames * m.n_q, dtype=torch.long, device=self.device)
        steps = stream_ids(m.gpt, idx, new_frames * m.n_q, temperature=temperature, top_k=top_k, top_p=top_p,
                           generator=gen, processors=[level_mask(m, self.device)])
        for i, step in enumerate(steps):
            out[:, i] = step
            if check is not None and i % m.n_q == m.n_q - 1:
                check()
        codes = torch.cat([torch.from_numpy(prompt).to(self.device).expand(num_samples, -1, -1),
                           unflatten(out, m.n_q, m.codebook_size)], dim=2)  # (B, n_q, P + new)
        with torch.inference_mode():
            wav = m.decode(codes).cpu().numpy()  # (B, F * hop)
        prompt_s = prompt.shape[1] * m.hop / m.sample_rate
        return [AudioSample(np.ascontiguousarray(w, dtype=np.float32), m.sample_rate, c.cpu().numpy(), prompt_s)
                for w, c in zip(wav, codes)]

    def bits(self, wav: np.ndarray) -> dict:
        """The bits of a waveform (N,) at the model's rate, its whole frames (the tail under one hop
        is left out): {"code_bits": the codes under the LM, "sample_bits": the samples given the
        codes (the codec's per-sample head), "samples": how many}."""
        m = self.model
        frames = len(wav) // m.hop
        if frames < 1:
            raise DataError(f"a clip of {len(wav)} samples is shorter than one codec frame ({m.hop} samples)")
        wav = np.ascontiguousarray(wav[:frames * m.hop], dtype=np.float32)
        codes = encode_clip(m, wav)  # (n_q, F)
        tokens = torch.cat([torch.tensor([m.eot]), flatten(torch.from_numpy(codes), m.codebook_size)])
        with torch.inference_mode():
            x = torch.from_numpy(wav)[None].to(self.device)
            sample_bits = float(m.codec.sample_bits(x, torch.from_numpy(codes)[None].to(self.device))[0])
        return {"code_bits": token_bits(m.gpt, tokens.to(self.device)), "sample_bits": sample_bits,
                "samples": len(wav)}


def level_mask(model, device: torch.device):
    """The processor that leaves each step only the codes of its level: the step after a sequence
    of n tokens (EOT first) draws level (n - 1) mod n_q."""
    n_q, size, vocab = model.n_q, model.codebook_size, model.gpt.config.vocab_size
    banned = torch.ones(n_q, vocab, dtype=torch.bool, device=device)  # (n_q, V)
    for q in range(n_q):
        banned[q, q * size:(q + 1) * size] = False

    def only_level(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(banned[(ids.size(1) - 1) % n_q], float("-inf"))

    return only_level


def token_bits(gpt, tokens: torch.Tensor) -> float:
    """-log2 p of tokens[1:] given the tokens before each (T,), in windows of block_size: the first
    window scores all its tokens, each next one slides by half a window and scores its last half,
    so every token has at least half a window of context (as generation's sliding context)."""
    block = gpt.config.block_size
    stride = max(1, block // 2)
    total, done = 0.0, 1  # tokens[:done] are scored (the first one starts the stream and is never scored)
    with torch.inference_mode():
        while done < len(tokens):
            end = min(len(tokens), block + 1 if done == 1 else done + stride)  # score targets [done, end)
            begin = max(0, end - 1 - block)  # the window: inputs tokens[begin:end - 1], at most block of them
            logp = F.log_softmax(gpt(tokens[None, begin:end - 1])[0][0].float(), -1)  # (T, V)
            nll = -logp.gather(1, tokens[begin + 1:end, None])[:, 0]  # (T,)
            total += float(nll[done - begin - 1:].sum()) / math.log(2)
            done = end
    return total


def spectrogram_png(wav: np.ndarray, sample_rate: int, path: str | Path, mark_seconds: float = 0.0,
                    height: int = 256, max_width: int = 2400) -> Path:
    """A log-magnitude spectrogram PNG of wav (low frequencies at the bottom, an 80 dB range, about
    100 columns a second), with a red line where the prompt ends (mark_seconds > 0)."""
    import librosa
    from PIL import Image, ImageDraw

    wav = np.asarray(wav, dtype=np.float32)
    if wav.size < 2:
        raise DataError(f"{path}: no audio to draw")
    n_fft = 1024
    width = int(np.clip(len(wav) / sample_rate * 100, 200, max_width))  # 100 columns a second
    hop = max(1, len(wav) // width)
    spec = np.abs(librosa.stft(np.pad(wav, (0, max(0, n_fft - len(wav)))), n_fft=n_fft, hop_length=hop))
    db = 20 * np.log10(np.maximum(spec, 1e-5))
    db = np.clip((db - (db.max() - 80)) / 80, 0, 1)[::-1]  # (freqs, frames), high on top
    rows = np.linspace(0, db.shape[0] - 1, height).astype(int)
    shade = (db[rows] * 255).astype(np.uint8)
    rgb = np.stack([shade, (shade * 0.8).astype(np.uint8), (255 - shade) // 3 + shade // 2], -1)
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if mark_seconds > 0:
        x = int(mark_seconds * sample_rate / hop)
        ImageDraw.Draw(img).line([x, 0, x, img.height], fill=(255, 0, 0), width=2)
    img.save(path)
    return Path(path)


def save_samples(samples: list[AudioSample], out: str | Path, stem: str = "sample") -> list[dict[str, Path]]:
    """Write each sample as OUT/STEM-I.wav and .png; the paths of each."""
    return [s.save(Path(out) / f"{stem}-{i}") for i, s in enumerate(samples)]
