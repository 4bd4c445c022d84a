"""POST /v1/audio/generations: audio from an audio_lm checkpoint (a transformer over codec tokens),
unconditional or continuing an audio prompt, as base64 WAV.

Request (JSON): `model`; `n` clips (1 to 4); `seconds` of new audio each (default 5, at most
MAX_SECONDS); `temperature` (default: the model's), `top_k`, `top_p`, `seed`; `prompt_audio` (a
base64 audio file, WAV/FLAC/OGG, resampled to the model's rate) to continue.

Answer: {"created": ..., "data": [{"b64_wav", "sample_rate", "seconds", "prompt_seconds"}, ...]}:
each clip is the prompt's audio (through the codec) followed by its continuation. A prompt that
is not base64, unreadable or longer than the model's context is a 400 naming prompt_audio,
answered before any work is queued.
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
from genforge.errors import DataError
from genforge.serve.errors import APIError

MAX_CLIPS = 4
MAX_SECONDS = 30.0


class AudioRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    n: int = Field(1, ge=1, le=MAX_CLIPS)
    seconds: float = Field(5.0, gt=0, le=MAX_SECONDS)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    prompt_audio: str | None = None  # base64 audio file


def clip_json(sample) -> dict:
    return {"b64_wav": base64.b64encode(encode_audio(sample.wav, sample.sample_rate, "wav")).decode("ascii"),
            "sample_rate": sample.sample_rate, "seconds": round(sample.seconds, 3),
            "prompt_seconds": round(sample.prompt_seconds, 3)}


def add_audio_lm_route(r: APIRouter, state, find_model, one_shot) -> None:
    """Register /v1/audio/generations on r (find_model(state, id, kind) -> Served, one_shot: the
    routes' runner of one guarded generation)."""

    @r.post("/v1/audio/generations")
    async def audio(req: AudioRequest, request: Request):
        model = find_model(state, req.model, "audio").model
        prompt_file = None
        if req.prompt_audio is not None:
            try:
                data = base64.b64decode(req.prompt_audio, validate=True)
            except (binascii.Error, ValueError):
                raise APIError(400, "prompt_audio: not base64", "prompt_audio") from None
            with tempfile.NamedTemporaryFile(suffix=".wav", delete=False) as tmp:
                tmp.write(data)
            prompt_file = Path(tmp.name)
        try:  # what the request alone decides is answered before any work is queued
            try:
                prompt = model.prompt_codes(prompt_file)
            except DataError as e:
                raise APIError(400, str(e).replace(str(prompt_file), "prompt_audio"), "prompt_audio") from None

            def make(guard):
                samples = model.generate(req.n, req.seconds, None, req.temperature, req.top_k, req.top_p, req.seed,
                                         check=guard.check, prompt=prompt)
                return [clip_json(s) for s in samples]

            return await one_shot(state, request, make, lambda clips: {"created": int(time.time()), "data": clips})
        finally:
            if prompt_file is not None:
                prompt_file.unlink(missing_ok=True)
