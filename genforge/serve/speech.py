"""POST /v1/audio/speech, OpenAI's text-to-speech route: `model`, `input` (at most 400 characters),
`voice` ("default" names the model's first voice), `response_format` (wav, flac or pcm: raw 16-bit
little-endian mono at the model's rate; mp3, opus and aac need encoders genforge does not ship and
get a 400 naming the formats), `speed` (0.25 to 4). The answer is the audio bytes, so the official
client's `audio.speech.create(...)` works. OpenAI's default format is mp3; genforge's is wav."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from genforge.data.audio import FORMATS, encode_audio
from genforge.errors import DataError
from genforge.serve.errors import APIError

MEDIA = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str
    voice: str = "default"
    response_format: str = "wav"
    speed: float = 1.0
    instructions: str | None = None  # gpt-4o-mini-tts's steering prompt: not something these models read


def add_speech_route(r: APIRouter, state, find_model, one_shot) -> None:
    """Register /v1/audio/speech on r (find_model(state, id, kind) -> Served, one_shot: the routes'
    runner of one guarded generation)."""

    @r.post("/v1/audio/speech")
    async def speech(req: SpeechRequest, request: Request):
        served = find_model(state, req.model, "speech")
        if req.response_format not in FORMATS:
            raise APIError(400, f"response_format={req.response_format!r}: genforge writes {', '.join(FORMATS)}",
                           "response_format")
        if req.instructions:
            raise APIError(400, "instructions: these speech models take no steering prompt", "instructions")
        model = served.model
        try:  # what the request alone decides is answered before any work is queued
            from genforge.data.espeak import check_text
            from genforge.data.text_norm import normalize
            from genforge.sample.speech import check_input, voice_index

            check_text(normalize(check_input(req.input)), "input")
            voice_index(model.config, req.voice)
            if not 0.25 <= req.speed <= 4.0:
                raise DataError(f"speed={req.speed}: expected 0.25 to 4.0")
        except DataError as e:
            param = "voice" if str(e).startswith("voice") else "speed" if str(e).startswith("speed") else "input"
            raise APIError(400, str(e), param) from None

        def make(guard):
            wav, rate = model.speak(req.input, req.voice, req.speed)
            return encode_audio(wav, rate, req.response_format)

        return await one_shot(state, request, make,
                              lambda data: Response(data, media_type=MEDIA[req.response_format]))
