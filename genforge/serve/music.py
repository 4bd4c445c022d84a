"""POST /v1/music/generations: pieces from a music checkpoint as base64 WAV and MIDI.

Request (JSON): `model`; `n` pieces (1 to 4); `max_tokens` events at most (1 to 4096, default
1024); `temperature` (default 1), `top_k`, `top_p`, `seed`; the conditions `key` ("C", "F#m",
"Bb major"), `meter` ("3/4"), `tempo` (quarter notes per minute), `instrument` (General MIDI
program 0..127) and `style`, each the model's choice when left out; `prompt_midi` (a base64 MIDI
file to continue) with `bars` (continue only its first N bars).

Answer: {"created": ..., "data": [{"b64_wav", "b64_midi", "sample_rate", "seconds", "notes",
"conditions"}, ...]}. An unknown key, meter or style, an unreadable MIDI prompt or one longer
than the model's context is a 400 naming the field, answered before any work is queued.
"""
from __future__ import annotations

import base64
import binascii
import tempfile
import time
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from genforge.data.audio import encode_audio
from genforge.errors import ConfigError, DataError
from genforge.serve.errors import APIError

MAX_PIECES = 4
MAX_TOKENS = 4096


class MusicRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    n: int = Field(1, ge=1, le=MAX_PIECES)
    max_tokens: int = Field(1024, ge=1, le=MAX_TOKENS)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    key: str | None = None
    meter: str | None = None
    tempo: float | None = Field(None, gt=0, le=400)
    instrument: int | None = Field(None, ge=0, le=127)
    style: str | None = None
    prompt_midi: str | None = None  # base64 MIDI file
    bars: int | None = Field(None, ge=1)


def piece_json(sample) -> dict:
    wav = sample.wav
    return {"b64_wav": base64.b64encode(encode_audio(wav, sample.sample_rate, "wav")).decode("ascii"),
            "b64_midi": base64.b64encode(sample.midi_bytes()).decode("ascii"),
            "sample_rate": sample.sample_rate, "seconds": round(len(wav) / sample.sample_rate, 3),
            "notes": sample.notes, "conditions": sample.conditions}


def conditions_of(prompt: str) -> dict:
    """The conditions a reviewer prompt names, "key=D meter=3/4 style=chorale" (commas or spaces
    between; tempo and instrument as numbers; "any": the model's choice of all); DataError naming
    an unknown field or a bad number."""
    out: dict = {}
    for item in prompt.replace(",", " ").split():
        if item == "any":
            continue
        name, sep, value = item.partition("=")
        if not sep or name not in ("key", "meter", "tempo", "instrument", "style"):
            raise DataError(f"music prompt {item!r}: expected NAME=VALUE with NAME one of key, meter, tempo, "
                            "instrument, style (e.g. key=D meter=3/4)")
        try:
            out[name] = float(value) if name == "tempo" else int(value) if name == "instrument" else value
        except ValueError:
            raise DataError(f"music prompt {item!r}: {name} takes a number") from None
    return out


def _param(message: str) -> str:
    for name in ("key", "meter", "style", "instrument", "bars"):
        if message.startswith((f"--{name}", name)):
            return name
    return "prompt_midi"


def add_music_route(r: APIRouter, state, find_model, one_shot) -> None:
    """Register /v1/music/generations on r (find_model(state, id, kind) -> Served, one_shot: the
    routes' runner of one guarded generation)."""

    @r.post("/v1/music/generations")
    async def music(req: MusicRequest, request: Request):
        served = find_model(state, req.model, "music")
        model = served.model
        prompt_file = None
        if req.prompt_midi is not None:
            try:
                data = base64.b64decode(req.prompt_midi, validate=True)
            except (binascii.Error, ValueError):
                raise APIError(400, "prompt_midi: not base64", "prompt_midi") from None
            with tempfile.NamedTemporaryFile(suffix=".mid", delete=False) as tmp:
                tmp.write(data)
            prompt_file = Path(tmp.name)
        conditions = dict(key=req.key, meter=req.meter, tempo=req.tempo, instrument=req.instrument, style=req.style)
        try:  # what the request alone decides is answered before any work is queued
            try:
                model.prompt(prompt_file, req.bars, **conditions)
            except (ConfigError, DataError) as e:
                text = str(e).replace(str(prompt_file), "prompt_midi") if prompt_file else str(e)
                raise APIError(400, text, _param(text)) from None

            def make(guard):
                samples = model.generate(req.n, req.max_tokens, req.temperature, req.top_k, req.top_p, req.seed,
                                         prompt_file, req.bars, **conditions)
                return [piece_json(s) for s in samples]

            return await one_shot(state, request, make, lambda pieces: {"created": int(time.time()), "data": pieces})
        finally:
            if prompt_file is not None:
                prompt_file.unlink(missing_ok=True)
