"""Sampling a music checkpoint: unconditional pieces, pieces in a given key / meter / tempo /
instrument / style, and continuations of a MIDI prompt (or its first N bars), each as a symusic
Score with its MIDI bytes, its waveform (sample/render.py) and a piano roll.

The conditioning prefix is filled position by position: a condition given is written, one not
given is drawn from the model among that condition's tokens only, so every sequence starts as the
training sequences did. The events after it are drawn with the text sampler (KV cache, sliding
context past block_size), never a conditioning token, until EOS or max_new_tokens.

Infilling a gap is not offered: the model reads left to right, and REMI/TSD events carry no
marker of where a later part starts; it needs fill-in-the-middle training (sequences reordered as
prefix, suffix, middle with sentinels), which this family does not do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genforge import checkpoint as ckpt_io
from genforge.data.music import MusicVocab, first_bars, key_of
from genforge.data.music_sources import read_midi
from genforge.device import resolve_device
from genforge.errors import CheckpointError, ConfigError, DataError
from genforge.sample import render
from genforge.sample.text import stream_ids


@dataclass
class MusicSample:
    """One generated piece: its score (symusic), the conditions it was made under, its token ids."""
    score: object
    conditions: dict
    ids: list[int]
    sample_rate: int = render.SAMPLE_RATE
    _wav: np.ndarray | None = field(default=None, repr=False)

    @property
    def wav(self) -> np.ndarray:
        """The waveform (N,) float32 at sample_rate, rendered on first use."""
        if self._wav is None:
            self._wav = render.render(self.score, self.sample_rate)
        return self._wav

    @property
    def notes(self) -> int:
        return sum(len(t.notes) for t in self.score.tracks)

    def midi_bytes(self) -> bytes:
        return bytes(self.score.dumps_midi())

    def save(self, stem: str | Path) -> dict[str, Path]:
        """Write STEM.mid, STEM.wav and STEM.png; their paths."""
        from genforge.data.audio import write_audio

        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = {"mid": stem.with_suffix(".mid"), "wav": stem.with_suffix(".wav"), "png": stem.with_suffix(".png")}
        paths["mid"].write_bytes(self.midi_bytes())
        write_audio(paths["wav"], self.wav, self.sample_rate)
        if self.notes:
            render.piano_roll(self.score, paths["png"])
        else:
            del paths["png"]
        return paths


class MusicModel:
    """A music checkpoint's GPT and its vocabulary, ready to generate."""

    def __init__(self, model, vocab: MusicVocab, path: Path, config: dict):
        self.model, self.vocab, self.path, self.config = model, vocab, path, config

    @classmethod
    def load(cls, ckpt: str | Path, device: str = "auto", dtype: str = "auto") -> MusicModel:
        loaded = ckpt_io.load(ckpt)
        music = loaded.config.get("music")
        tok_file = loaded.path / "tokenizer.json"
        if not music or not tok_file.is_file():
            raise CheckpointError(f"{loaded.path}: no music vocabulary (config.json 'music' and tokenizer.json)")
        vocab = MusicVocab.from_files(tok_file, music)
        if len(vocab) > loaded.model.config.vocab_size:
            raise CheckpointError(f"{tok_file}: {len(vocab)} tokens but the model has vocab_size={loaded.model.config.vocab_size}")
        dev = resolve_device(device)
        torch_dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
        return cls(loaded.model.to(dev, torch_dtype).eval(), vocab, loaded.path, loaded.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt(self, prompt_midi: str | Path | None = None, bars: int | None = None, **conditions) -> tuple[list, list]:
        """(the conditions to write, None where the model draws them; the prompt's event ids)."""
        given = {k: conditions.get(k) for k in ("key", "meter", "tempo", "instrument", "style")}
        body: list[int] = []
        if prompt_midi is not None:
            piece = read_midi(Path(prompt_midi), "")
            if bars is not None:
                if bars < 1:
                    raise ConfigError(f"--bars {bars}: must be >= 1")
                piece = first_bars(piece, bars)
            found = {"key": key_of(piece.notes), "meter": piece.meter, "tempo": piece.tempo, "instrument": piece.program}
            given = {k: v if v is not None else found.get(k) for k, v in given.items()}
            if given["meter"] not in self.vocab.meters:
                given["meter"] = None  # a meter the model has no token for: it chooses
            body = self.vocab.encode_body(piece)
            if not body:
                raise DataError(f"{prompt_midi}: no notes in the prompt")
        elif bars is not None:
            raise ConfigError("--bars: needs --prompt-midi (the bars of which file?)")
        self.vocab.prefix(**given)  # ConfigError for an unknown key, meter or style, before sampling
        slots = [given[name] for name in self.vocab.order]
        n = 2 + len(slots) + len(body)
        if n >= self.model.config.block_size:
            where = f"{prompt_midi}" + (f" (first {bars} bars)" if bars else "")
            raise DataError(f"{where}: the prompt is {n} tokens but the model's context is "
                            f"{self.model.config.block_size}; pass --bars with fewer bars")
        return slots, body

    def generate(self, num_samples: int = 1, max_new_tokens: int = 512, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 prompt_midi: str | Path | None = None, bars: int | None = None, key: str | None = None,
                 meter: str | None = None, tempo: float | None = None, instrument: int | None = None,
                 style: str | None = None) -> list[MusicSample]:
        """num_samples pieces (with a prompt: the prompt and its continuation). One seed gives the
        same pieces. ConfigError for an unknown key, meter or style; DataError for an unreadable
        prompt or one longer than the model's context."""
        if num_samples < 1:
            raise ConfigError(f"num_samples={num_samples}: must be >= 1")
        slots, body = self.prompt(prompt_midi, bars, key=key, meter=meter, tempo=tempo, instrument=instrument, style=style)
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        idx = self._prefix(slots, num_samples, temperature, gen)
        idx = torch.cat([idx, torch.tensor([[self.vocab.begin, *body]] * num_samples, device=self.device)], dim=1)
        ban = torch.zeros(self.model.config.vocab_size, dtype=torch.bool, device=self.device)
        ban[self.vocab.base:] = True
        ban[[self.vocab.bos, self.vocab.pad]] = True

        def no_conditions(logits, _ids):
            return logits.masked_fill(ban, float("-inf"))

        rows = idx.tolist()
        done = [False] * num_samples
        for step in stream_ids(self.model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               generator=gen, processors=[no_conditions]):
            for r, token in enumerate(step.tolist()):
                if not done[r]:
                    rows[r].append(token)
                    done[r] = token == self.vocab.eos
            if all(done):
                break
        out = []
        for row in rows:
            score, found = self.vocab.decode(row)
            out.append(MusicSample(score, found, row))
        return out

    def _prefix(self, slots: list, n: int, temperature: float, gen: torch.Generator | None) -> torch.Tensor:
        """(n, 1 + len(slots)) ids: BOS, then each condition given, or drawn among its own tokens."""
        ids = torch.full((n, 1), self.vocab.bos, dtype=torch.long, device=self.device)
        for name, value in zip(self.vocab.order, slots):
            if value is not None:
                token = self.vocab.prefix(**{name: value})[1]
                ids = torch.cat([ids, torch.full((n, 1), token, dtype=torch.long, device=self.device)], dim=1)
                continue
            allowed = torch.tensor([i for t, i in self.vocab.ids.items() if t.split("_")[0].lower() == name],  # (K,)
                                   device=self.device)
            with torch.inference_mode():
                logits = self.model(ids)[0][:, -1, :].float()  # (n, V)
            logits = logits[:, allowed] / max(temperature, 1e-6)
            pick = torch.multinomial(logits.softmax(-1), 1, generator=gen)  # (n, 1)
            ids = torch.cat([ids, allowed[pick]], dim=1)
        return ids


def save_samples(samples: list[MusicSample], out: str | Path, stem: str = "sample") -> list[dict[str, Path]]:
    """Write each sample as OUT/STEM-I.mid, .wav, .png; the paths of each."""
    return [s.save(Path(out) / f"{stem}-{i}") for i, s in enumerate(samples)]

