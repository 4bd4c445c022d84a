"""Request bodies of the OpenAI routes. Fields OpenAI defines that genforge cannot honour are
refused with a 400 naming them, rather than silently ignored; unknown extra fields are ignored."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genforge.serve.logprobs import MAX_LOGPROBS


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)                 # vLLM's extension
    repetition_penalty: float = Field(1.0, gt=0)          # vLLM's extension
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict | None = None  # {token id: bias in [-100, 100]}, checked against the model's vocabulary
    user: str | None = None
    # generation controls beyond OpenAI's (docs/bias.md; the openai client sends them as extra_body)
    blocklist: list[str] | None = None  # words and phrases never generated
    self_debias: list[str] | None = None  # bias-describing prefixes (Schick et al. 2021)
    debias_decay: float = Field(50.0, ge=0)
    reject_below: float | None = None  # redraw a completion the server's reward model scores below this
    reject_tries: int = Field(4, ge=1, le=16)  # draws at most (the last is kept)

    def unsupported(self) -> str | None:
        """The first field set to something genforge cannot do, or None."""
        if self.presence_penalty or self.frequency_penalty:
            return "presence_penalty" if self.presence_penalty else "frequency_penalty"
        return None

    def controls(self) -> dict:
        """TextModel.controls' keywords of this request."""
        return dict(logit_bias=self.logit_bias or None, blocklist=self.blocklist or (),
                    self_debias=self.self_debias or (), debias_decay=self.debias_decay)

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False  # the prompt's text (and with logprobs its tokens' log-probabilities) first
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # top-k log-probabilities per token
    best_of: int | None = None
    suffix: str | None = None

    def unsupported(self) -> str | None:
        if self.suffix:
            return "suffix"
        if self.best_of is not None and self.best_of != self.n:
            return "best_of"
        return super().unsupported()


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict]
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, v):
        if isinstance(v, list):  # content parts: only text parts can be read by a text model
            if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in v):
                raise ValueError("only text content parts are supported")
            return "".join(p["text"] for p in v)
        return v


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    tools: list | None = None
    response_format: dict | None = None

    def unsupported(self) -> str | None:
        if self.logprobs or self.tools:
            return "logprobs" if self.logprobs else "tools"
        if self.response_format and self.response_format.get("type") != "text":
            return "response_format"
        return super().unsupported()


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str = ""
    n: int = Field(1, ge=1)
    response_format: Literal["b64_json"] = "b64_json"
    seed: int | None = None
    size: str | None = None
    # text-to-image models (genforge's extensions; OpenAI's own client passes them as extra_body)
    guidance_scale: float | None = None
    steps: int | None = None
    sampler: str | None = None
    negative_prompt: str | None = None
    rerank: int | None = None  # keep the best of N candidates per image by the server's CLIP (--clip)
